"""State file round trip, worker process specs (docs/development.md contract), demo pieces."""

from __future__ import annotations

import json
import stat
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from easel.config import EaselConfig, load_config, parse_config
from easel.contract import parse_task_request
from infra.local import state as state_file
from infra.local.demo import DemoResult, demo_requests, run_demo, tiny_png
from infra.local.errors import StateError
from infra.local.provision import LaneResources, Resources
from infra.local.stack import generate_credentials, principal_arn, with_local_principals
from infra.local.state import ChildState, LocalState, TenantCredentials
from infra.local.workers import ensure_models, missing_models, worker_specs
from tests.conftest import ROOT


def _resources(config: EaselConfig) -> Resources:
    lanes = {
        r.name: {
            lane: LaneResources(
                f"http://q/{r.name}-{lane}", f"arn:{r.name}-{lane}", f"http://q/{r.name}-{lane}-dlq", "a"
            )
            for lane in ("high", "normal")
        }
        for r in config.runtimes
    }
    return Resources(
        "us-west-2", "arn:tasks", "arn:results", "http://q/unroutable", "tbl", "models-b", "outputs-b", lanes
    )


def _state(config: EaselConfig) -> LocalState:
    return LocalState(
        pid=123,
        endpoint="http://127.0.0.1:8787",
        region="us-west-2",
        moto_endpoint="http://127.0.0.1:5000",
        config_file="/x/local-config.json",
        models_dir="/x/models",
        started_at="2026-01-01T00:00:00+00:00",
        tenants={"acme": TenantCredentials("AKIA1", "s1", principal_arn("acme"))},
        resources=_resources(config),
        children={"sd15/agent": ChildState(pid=9, port=8081, restarts=2, log="/x/logs/sd15-agent.log")},
    )


def test_state_round_trips_privately(two_runtimes_config: EaselConfig, tmp_path: Path) -> None:
    path = tmp_path / "dir" / "local.json"
    original = _state(two_runtimes_config)
    state_file.save(original, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert state_file.load(path) == original
    assert (
        json.loads(path.read_text())["resources"]["lanes"]["sd15"]["high"]["queue_url"]
        == "http://q/sd15-high"
    )
    assert original.env_for() == {
        "EASEL_ENDPOINT": "http://127.0.0.1:8787",
        "AWS_ACCESS_KEY_ID": "AKIA1",
        "AWS_SECRET_ACCESS_KEY": "s1",
        "AWS_REGION": "us-west-2",
    }
    state_file.remove(path)
    with pytest.raises(StateError, match="no local stack"):
        state_file.load(path)


@pytest.mark.parametrize("text", ["{", "[]", '{"version": 99}', '{"version": 1}'])
def test_bad_state_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "local.json"
    path.write_text(text)
    with pytest.raises(StateError):
        state_file.load(path)


def test_local_credentials_extend_the_tenants_principals(two_runtimes_config: EaselConfig) -> None:
    creds = generate_credentials(two_runtimes_config)
    assert sorted(c.tenant for c in creds.values()) == ["acme", "globex"]
    assert len({c.secret_access_key for c in creds.values()}) == 2
    data = with_local_principals(two_runtimes_config, creds)
    acme = next(t for t in data["tenants"] if t["id"] == "acme")
    assert acme["principals"] == ["arn:aws:iam::123456789012:role/acme-*", principal_arn("acme")]
    assert generate_credentials(two_runtimes_config).keys().isdisjoint(creds.keys())  # fresh every start


def test_worker_specs_follow_the_process_contract(two_runtimes_config: EaselConfig, tmp_path: Path) -> None:
    ports = iter(range(9000, 9100))
    specs = {s.name: s for s in worker_specs(
        two_runtimes_config, _resources(two_runtimes_config), models_dir=tmp_path,
        moto_endpoint="http://127.0.0.1:5000", python="/py", port=lambda: next(ports),
    )}  # fmt: skip
    assert sorted(specs) == ["community/agent", "community/runtime", "sd15/agent", "sd15/runtime"]
    fixed = specs["sd15/runtime"].argv
    assert fixed[:3] == ["/py", "-m", "runtime_image.server"]
    assert fixed[fixed.index("--model") + 1] == "sd15"  # a fixed runtime preloads its one model
    assert "--model" not in specs["community/runtime"].argv
    agent = specs["community/agent"]
    assert agent.argv == ["/py", "-m", "queue_agent"]
    env = agent.env
    assert env["EASEL_RUNTIME"] == "community"
    assert env["EASEL_HIGH_QUEUE_URL"] == "http://q/community-high"
    assert env["EASEL_NORMAL_QUEUE_URL"] == "http://q/community-normal"
    assert json.loads(env["EASEL_MODELS"]) == {
        "dreamshaper": "dreamshaper-8.safetensors",
        "realvis": "realvis",
    }
    assert env["EASEL_RUNTIME_URL"] == f"http://127.0.0.1:{specs['community/runtime'].port}"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"
    assert env["EASEL_MAX_RECEIVE_COUNT"] == "5" and env["EASEL_TASK_TIMEOUT_SECONDS"] == "600"
    assert int(env["EASEL_AGENT_PORT"]) == agent.port
    assert len({s.port for s in specs.values()}) == 4
    # Batching is off unless the runtime's config turns it on.
    assert env["EASEL_AGENT_BATCH_MAX_IMAGES"] == "1"
    assert env["EASEL_AGENT_RECEIVE_VISIBILITY_SECONDS"] == "60"


def test_batching_config_reaches_the_agent(two_runtimes_config: EaselConfig, tmp_path: Path) -> None:
    data = two_runtimes_config.model_dump(mode="json")
    data["runtimes"][1]["batching"] = {"enabled": True, "max_images": 6, "max_wait_seconds": 0.5}
    config = parse_config(data)
    ports = iter(range(9000, 9100))
    specs = {s.name: s for s in worker_specs(
        config, _resources(config), models_dir=tmp_path,
        moto_endpoint="http://127.0.0.1:5000", python="/py", port=lambda: next(ports),
    )}  # fmt: skip
    env = specs["community/agent"].env
    assert env["EASEL_AGENT_BATCH_MAX_IMAGES"] == "6"
    assert env["EASEL_AGENT_BATCH_MAX_WAIT_SECONDS"] == "0.5"
    assert specs["sd15/agent"].env["EASEL_AGENT_BATCH_MAX_IMAGES"] == "1"


def test_local_mode_runs_the_kinds_it_can(tmp_path: Path) -> None:
    config = load_config(ROOT / "tests" / "configs" / "three-kinds.yaml")
    specs = {s.name: s for s in worker_specs(
        config, _resources(config), models_dir=tmp_path, moto_endpoint="http://127.0.0.1:5000", python="/py",
    )}  # fmt: skip
    # The Easel runtime stands in for the stock SD WebUI (driven by the sdwebui adapter); no ComfyUI locally.
    assert sorted(specs) == ["sd15/agent", "sd15/runtime", "webui/agent", "webui/runtime"]
    assert specs["webui/agent"].env["EASEL_RUNTIME_KIND"] == "sdwebui"
    assert specs["sd15/agent"].env["EASEL_RUNTIME_KIND"] == "diffusers"
    assert [p.name for p in missing_models(config, tmp_path)] == ["sd15", "v1-5-pruned-emaonly.safetensors"]


def test_ensure_models_makes_only_the_missing(two_runtimes_config: EaselConfig, tmp_path: Path) -> None:
    (tmp_path / "sd15").mkdir()
    made: list[Path] = []
    assert ensure_models(two_runtimes_config, tmp_path, made.append) == made
    assert made == [tmp_path / "dreamshaper-8.safetensors", tmp_path / "realvis"]


def test_tiny_png_is_a_valid_png() -> None:
    png = tiny_png(16, 8)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, colour = struct.unpack(">IIBB", png[16:26])
    assert (width, height, depth, colour) == (16, 8, 8, 2)
    idat_len = struct.unpack(">I", png[33:37])[0]
    raw = zlib.decompress(png[41 : 41 + idat_len])
    assert len(raw) == 8 * (1 + 16 * 3)


def test_demo_requests_are_valid_tasks(example_config: EaselConfig) -> None:
    reqs = demo_requests(example_config, "s3://outputs-b/tenants/acme/inputs/demo-init.png")
    parsed = [parse_task_request(r) for r in reqs]
    assert [str(p.task_type) for p in parsed] == ["text-to-image", "image-to-image"]


class _S3:
    def __init__(self) -> None:
        self.puts: list[dict[str, Any]] = []

    def put_object(self, **kw: Any) -> None:
        self.puts.append(kw)


class _Client:
    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []

    def submit(self, req: dict[str, Any]) -> dict[str, Any]:
        self.submitted.append(req)
        return {"id": f"t{len(self.submitted)}"}


@pytest.mark.parametrize(
    ("final", "ok"), [(("succeeded", "succeeded"), True), (("succeeded", "failed"), False)]
)
def test_run_demo(example_config: EaselConfig, tmp_path: Path, final: tuple[str, str], ok: bool) -> None:
    s3, client = _S3(), _Client()
    downloaded: list[str] = []

    def download(_: Any, task: dict[str, Any], out: Path) -> list[Path]:
        downloaded.append(task["id"])
        return [out / f"{task['id']}.png"]

    result: DemoResult = run_demo(
        client=client,  # type: ignore[arg-type]
        s3=s3,
        config=example_config,
        outputs_bucket="outputs-b",
        tenant="acme",
        out_dir=tmp_path,
        wait=lambda _, ids: {i: {"id": i, "status": s} for i, s in zip(ids, final, strict=True)},
        download=download,
    )
    assert s3.puts[0]["Key"] == "tenants/acme/inputs/demo-init.png"
    assert client.submitted[1]["input"]["init_images"] == ["s3://outputs-b/tenants/acme/inputs/demo-init.png"]
    assert result.ok is ok
    assert downloaded == [t for t, s in zip(["t1", "t2"], final, strict=True) if s == "succeeded"]
    assert set(result.timings) == {"submit_seconds", "wait_seconds", "total_seconds"}
