"""PNG plots of a simulation (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from easel.plan.sim import SimResult


def write_plots(result: SimResult, out_dir: Path, stem: str) -> list[Path]:
    """``<stem>-timeline.png`` (queue depth, replicas, nodes over time) and ``<stem>-latency-cdf.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    s = result.samples
    minutes = [x.t / 60 for x in s]
    paths = []

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    ax1.plot(minutes, [x.high + x.normal for x in s], label="visible messages", lw=1)
    ax1.plot(minutes, [x.in_flight for x in s], label="in flight", lw=1)
    ax1.plot(minutes, [x.oldest_age for x in s], label="oldest message age (s)", lw=1, ls=":")
    ax1.set_ylabel("messages / seconds")
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_title(f"{result.plan.name}: queue, replicas and nodes ({result.plan.instance_type})")
    ax2.step(minutes, [x.replicas for x in s], where="post", label="replicas (KEDA/HPA)")
    ax2.step(minutes, [x.ready for x in s], where="post", label="pods ready")
    ax2.step(minutes, [x.nodes_spot for x in s], where="post", label="nodes spot", ls="--")
    ax2.step(minutes, [x.nodes_on_demand for x in s], where="post", label="nodes on-demand", ls="--")
    ax2.set_xlabel("minutes")
    ax2.set_ylabel("count")
    ax2.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = out_dir / f"{stem}-timeline.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    lat = sorted(t.done - t.submit for t in result.tasks if t.done is not None)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if lat:
        ax.plot(lat, [(i + 1) / len(lat) for i in range(len(lat))], lw=1.5)
        ax.set_xscale("log")
    ax.set_xlabel("latency, submit to result (s, log)")
    ax.set_ylabel("fraction of tasks")
    ax.set_title(f"{result.plan.name}: latency CDF ({len(lat)} tasks)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = out_dir / f"{stem}-latency-cdf.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths
