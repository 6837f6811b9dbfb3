"""The worker "pods" of local mode: per runtime, the runtime server and its queue agent.

Commands and environment follow the process contracts in docs/development.md, so the same programs run
here as in the Helm chart's two containers.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from easel.config import EaselConfig, RuntimeSpec
from easel.contract.tasks import Lane
from infra.local.provision import Resources
from infra.local.supervisor import ChildSpec

log = logging.getLogger(__name__)

# moto accepts any credentials; these only have to exist so botocore signs.
DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def local_runtimes(config: EaselConfig, external: Mapping[str, str] | None = None) -> list[RuntimeSpec]:
    """The runtimes local mode runs: the Easel runtime stands in for a stock SD WebUI (a drop-in SD WebUI API,
    driven by the sdwebui adapter), but nothing here runs ComfyUI: comfyui pools are left out (logged) unless
    ``external`` names a running one for them (runtime name -> URL; only their agent is started)."""
    external = external or {}
    skipped = [r.name for r in config.runtimes if r.kind == "comfyui" and r.name not in external]
    if skipped:
        log.warning("local mode runs no ComfyUI; pipeline tasks of %s stay queued", ", ".join(skipped))
    return [r for r in config.runtimes if r.kind != "comfyui" or r.name in external]


def missing_models(
    config: EaselConfig, models_dir: Path, external: Mapping[str, str] | None = None
) -> list[Path]:
    """Store paths of the local runtimes' models that are not in ``models_dir`` (``external`` runtimes
    have their own)."""
    served = {r.name for r in config.runtimes if r.kind != "comfyui"} - set(external or {})
    return [
        models_dir / m.store_path
        for m in config.models
        if m.runtime in served and not (models_dir / m.store_path).exists()
    ]


def ensure_models(
    config: EaselConfig,
    models_dir: Path,
    make_model: Callable[[Path], object] | None = None,
    external: Mapping[str, str] | None = None,
) -> list[Path]:
    """Generate a tiny model at every missing store path (CPU-sized, for local runs). Returns what it made."""
    missing = missing_models(config, models_dir, external)
    make = make_model or make_tiny_model_process
    for path in missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
    return missing


def make_tiny_model_process(path: Path, python: str = sys.executable) -> None:
    """The runtime's tiny model, written by ``easel models make-tiny`` in a child process: infra runs the
    runtime's code (as it runs the runtime itself), it never imports it."""
    argv = [python, "-m", "easel.cli", "models", "make-tiny", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"could not generate the tiny model at {path}: {done.stderr.strip()[-500:]}")


def worker_specs(
    config: EaselConfig,
    resources: Resources,
    *,
    models_dir: Path,
    moto_endpoint: str,
    python: str = sys.executable,
    port: Callable[[], int] = free_port,
    extra_env: Mapping[str, str] | None = None,
    external: Mapping[str, str] | None = None,
) -> list[ChildSpec]:
    """The runtime and agent of each runtime; ``extra_env`` goes to both (e.g. ``EASEL_TRACES``). A runtime
    in ``external`` (name -> URL of one already running, e.g. a test's fake ComfyUI) gets its agent only."""
    specs: list[ChildSpec] = []
    external = external or {}
    runtimes = local_runtimes(config, external)
    cpu_threads = max(1, ((os.cpu_count() or 2) - 1) // max(1, len(runtimes)))
    for runtime in runtimes:
        models = config.models_of(runtime.name)
        runtime_port, agent_port = port(), port()
        runtime_url = external.get(runtime.name, f"http://127.0.0.1:{runtime_port}")
        argv = [
            python, "-m", "runtime_image.server",
            "--models-dir", str(models_dir), "--host", "127.0.0.1", "--port", str(runtime_port),
            # Leave a core to the agent, moto and the gateway: torch on every core starves them.
            "--cpu-threads", str(cpu_threads),
        ]  # fmt: skip
        if not runtime.dynamic_models:
            argv += ["--model", models[0].store_path]
        common = {
            "PYTHONUNBUFFERED": "1",
            "AWS_REGION": resources.region,
            "AWS_DEFAULT_REGION": resources.region,
            **(extra_env or {}),
        }
        if runtime.name not in external:
            specs.append(ChildSpec(name=f"{runtime.name}/runtime", argv=argv, env=common, port=runtime_port))
        lanes = resources.lanes[runtime.name]
        agent_env = {
            **common,
            **DUMMY_AWS,
            "AWS_ENDPOINT_URL": moto_endpoint,
            "EASEL_RUNTIME": runtime.name,
            "EASEL_RUNTIME_KIND": runtime.kind,
            "EASEL_HIGH_QUEUE_URL": lanes[str(Lane.HIGH)].queue_url,
            "EASEL_NORMAL_QUEUE_URL": lanes[str(Lane.NORMAL)].queue_url,
            "EASEL_TABLE_NAME": resources.table,
            "EASEL_OUTPUTS_BUCKET": resources.outputs_bucket,
            "EASEL_RESULTS_TOPIC_ARN": resources.results_topic_arn,
            "EASEL_MODELS": json.dumps({m.name: m.store_path for m in models}, sort_keys=True),
            "EASEL_INPUT_BUCKETS": resources.outputs_bucket,
            "EASEL_ALLOWED_HTTPS_HOSTS": ",".join(config.inputs.allowed_https_hosts),
            "EASEL_MAX_INPUT_BYTES": str(config.inputs.max_bytes),
            "EASEL_MAX_INPUT_PIXELS": str(config.inputs.max_pixels),
            "EASEL_RUNTIME_URL": runtime_url,
            "EASEL_TASK_TIMEOUT_SECONDS": str(runtime.task_timeout_seconds),
            "EASEL_VISIBILITY_TIMEOUT_SECONDS": str(runtime.visibility_timeout_seconds),
            "EASEL_MAX_RECEIVE_COUNT": str(runtime.max_receive_count),
            "EASEL_AGENT_PORT": str(agent_port),
            "EASEL_AGENT_BATCH_MAX_IMAGES": str(runtime.agent_batch_max_images),
            "EASEL_AGENT_BATCH_MAX_WAIT_SECONDS": str(runtime.batching.max_wait_seconds),
            # As deployed: a killed local agent's messages come back within this, not the queue's timeout.
            "EASEL_AGENT_RECEIVE_VISIBILITY_SECONDS": str(runtime.drain.receive_visibility_seconds),
        }
        specs.append(
            ChildSpec(
                name=f"{runtime.name}/agent",
                argv=[python, "-m", "queue_agent"],
                env=agent_env,
                port=agent_port,
            )
        )
    return specs


def webhooks_worker_spec(
    resources: Resources,
    *,
    moto_endpoint: str,
    master_b64: str,
    allow_origins: tuple[str, ...] = (),
    python: str = sys.executable,
    extra_env: Mapping[str, str] | None = None,
) -> ChildSpec:
    """The local stand-in for the webhooks Lambda (:mod:`infra.local.webhooks_worker`)."""
    env = {
        "PYTHONUNBUFFERED": "1",
        "AWS_REGION": resources.region,
        "AWS_DEFAULT_REGION": resources.region,
        **DUMMY_AWS,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "EASEL_WEBHOOKS_QUEUE_URL": resources.webhooks_queue_url,
        "EASEL_WEBHOOK_SECRET": master_b64,
        "EASEL_WEBHOOK_TEST_INSECURE_ORIGINS": ",".join(allow_origins),
        "POWERTOOLS_SERVICE_NAME": "easel-webhooks",
        "POWERTOOLS_TRACE_DISABLED": "1",
        **(extra_env or {}),
    }
    return ChildSpec(name="webhooks", argv=[python, "-m", "infra.local.webhooks_worker"], env=env)


_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]"}


def loopback_origin(value: str) -> str:
    """Normalize ``--webhook-allow-origin`` to the form DeliveryPolicy compares (``scheme://host:port``).

    Only loopback origins are accepted (no path, no user info): the option exists for receivers on this
    machine, never to open the SSRF guard to other addresses."""
    import httpx

    try:
        u = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"'{value}' is not a URL ({exc})") from None
    host = u.raw_host.decode("ascii")
    host_shown = f"[{host}]" if ":" in host else host
    if u.scheme not in ("http", "https") or host_shown not in _LOOPBACK_HOSTS:
        raise ValueError(
            f"'{value}' is not a loopback origin like http://127.0.0.1:PORT"
            " (host 127.0.0.1, localhost or [::1])"
        )
    if u.path not in ("", "/") or u.query or u.userinfo:
        raise ValueError(f"'{value}' must be an origin only (scheme://host:port, no path)")
    port = u.port or (443 if u.scheme == "https" else 80)  # as WebhookSender computes the origin
    return f"{u.scheme}://{host}:{port}"
