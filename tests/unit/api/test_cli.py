"""The client commands, against a fake API behind the SDK's transport."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from easel.cli import app, client_cmds
from easel.cli.client_cmds import build_request
from easel.client import EaselClient


class FakeApi:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.polls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, body))
        path = request.url.path
        if path == "/v1/tasks" and request.method == "POST":
            if body["model"] == "nope":
                err = {"code": "invalid_field", "message": "model: unknown model 'nope'", "field": "model"}
                return httpx.Response(400, json={"error": err})
            return httpx.Response(202, json=self.task("queued"))
        if path == "/v1/tasks/t1":
            self.polls += 1
            return httpx.Response(200, json=self.task("succeeded" if self.polls > 1 else "processing"))
        if path.startswith("/out/"):
            return httpx.Response(200, content=b"PNGDATA")
        if path == "/v1/tasks":
            return httpx.Response(200, json={"tasks": [self.task("queued")], "next": "cur"})
        if path == "/v1/models":
            return httpx.Response(
                200, json={"models": [{"name": "sd15", "runtime": "sd15", "task_types": []}]}
            )
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})

    def task(self, status: str) -> dict[str, Any]:
        output = {"images": ["s3://b/tenants/acme/tasks/t1/0.png"], "urls": ["http://127.0.0.1:9/out/0.png"]}
        return {
            "id": "t1",
            "status": status,
            "task_type": "text-to-image",
            "model": "sd15",
            "created_at": "2026-01-01T00:00:00Z",
            "output": output if status == "succeeded" else None,
        }


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi()

    def make_client(endpoint: str | None, region: str | None) -> EaselClient:
        return EaselClient(
            endpoint or "http://127.0.0.1:9",
            region=region or "us-east-1",
            access_key_id="AKIA",
            secret_access_key="s",
            transport=httpx.MockTransport(fake),
        )

    monkeypatch.setattr(client_cmds, "make_client", make_client)
    import easel.cli.models_cmds as models_cmds

    monkeypatch.setattr(models_cmds, "make_client", make_client)
    return fake


def test_build_request_lays_flags_over_the_file() -> None:
    base = {"model": "a", "input": {"prompt": "file", "steps": 9}, "context": {"k": 1}}
    req = build_request(base, model="sd15", inputs={"prompt": "flag", "steps": None, "init_images": None})
    assert req == {
        "model": "sd15",
        "input": {"prompt": "flag", "steps": 9},
        "context": {"k": 1},
        "task_type": "text-to-image",
    }
    assert (
        build_request(None, inputs={"prompt": "p", "init_images": ["s3://b/k"]})["task_type"]
        == "image-to-image"
    )


def test_submit_json(api: FakeApi) -> None:
    result = CliRunner().invoke(
        app, ["submit", "--model", "sd15", "--prompt", "a dog", "--steps", "4", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "queued"
    assert api.requests[0][2] == {
        "task_type": "text-to-image",
        "model": "sd15",
        "input": {"prompt": "a dog", "steps": 4},
    }


def test_submit_from_file_wait_and_download(api: FakeApi, tmp_path: Path) -> None:
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"model": "sd15", "task_type": "text-to-image", "input": {"prompt": "x"}}))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["submit", "--file", str(req), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "succeeded"
    assert (out / "t1-0.png").read_bytes() == b"PNGDATA"


def test_api_error_exits_1_and_names_the_field(api: FakeApi) -> None:
    result = CliRunner().invoke(app, ["submit", "--model", "nope", "--prompt", "x"])
    assert result.exit_code == 1
    assert "invalid_field" in result.output and "model" in result.output


def test_bad_file_exits_2(api: FakeApi, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert CliRunner().invoke(app, ["submit", "--file", str(bad)]).exit_code == 2
    assert api.requests == []


def test_status_cancel_tasks_models(api: FakeApi) -> None:
    runner = CliRunner()
    assert json.loads(runner.invoke(app, ["status", "t1", "--json"]).stdout)["id"] == "t1"
    assert runner.invoke(app, ["cancel", "t9"]).exit_code == 1  # fake answers 404
    listed = runner.invoke(app, ["tasks", "--status", "queued", "--limit", "1", "--json"])
    assert json.loads(listed.stdout)["next"] == "cur"
    models = runner.invoke(app, ["models", "--json"])
    assert json.loads(models.stdout)["models"][0]["name"] == "sd15"
    assert [(m, p) for m, p, _ in api.requests] == [
        ("GET", "/v1/tasks/t1"),
        ("POST", "/v1/tasks/t9/cancel"),
        ("GET", "/v1/tasks"),
        ("GET", "/v1/models"),
    ]


def test_no_endpoint_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EASEL_ENDPOINT", raising=False)
    assert CliRunner().invoke(app, ["status", "t1"]).exit_code == 2


def test_models_make_tiny_calls_the_runtime_helper(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import runtime_image.server.tiny as tiny

    made: list[tuple[Path, str, int]] = []
    monkeypatch.setattr(tiny, "make_tiny", lambda path, arch, seed: made.append((path, arch, seed)))
    result = CliRunner().invoke(app, ["models", "make-tiny", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        app, ["models", "make-tiny", str(tmp_path / "x"), "--arch", "sdxl", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    assert made == [(tmp_path / "m", "sd15", 0), (tmp_path / "x", "sdxl", 3)]
    result = CliRunner().invoke(app, ["models", "make-tiny", str(tmp_path / "y"), "--arch", "sd9"])
    assert result.exit_code == 2
    assert "sd9" in result.output


def test_make_tiny_arch_list_matches_the_runtime() -> None:
    from easel.cli.models_cmds import TINY_ARCHS
    from runtime_image.server.tiny import TINY_ARCHS as RUNTIME_ARCHS

    assert TINY_ARCHS == RUNTIME_ARCHS


def test_submit_workload_options_build_a_valid_request(api: FakeApi) -> None:
    from easel.contract import parse_task_request

    img = "s3://b/tenants/acme/in/a.png"
    runs = [
        ["--prompt", "a cat", "--init-image", img, "--mask", img, "--mask-blur", "0", "--inpainting-fill", "1"],
        ["--prompt", "a cat", "--hires", "--hr-scale", "1.5", "--hr-upscaler", "Lanczos", "--hr-steps", "3"],
        ["--prompt", "a cat", "--controlnet", f"model=cn,image={img},module=canny,weight=0.5", "--controlnet",
         f"model=cn2,image={img},guidance_end=0.5,pixel_perfect=true"],
        ["--upscale", img, "--upscaler", "Nearest", "--scale", "3", "--format", "webp", "--quality", "90"],
        ["--prompt", "a cat", "--format", "jpeg"],
    ]  # fmt: skip
    for args in runs:
        result = CliRunner().invoke(app, ["submit", "--model", "sd15", *args])
        assert result.exit_code == 0, result.output
    bodies = [body for method, path, body in api.requests if method == "POST"]
    parsed = [parse_task_request(b) for b in bodies]
    assert [str(p.task_type) for p in parsed] == [
        "image-to-image",
        "text-to-image",
        "text-to-image",
        "upscale",
        "text-to-image",
    ]
    assert bodies[0]["input"]["mask"] == img and bodies[0]["input"]["mask_blur"] == 0
    assert bodies[1]["input"]["enable_hr"] is True and bodies[1]["input"]["hr_second_pass_steps"] == 3
    assert bodies[2]["input"]["controlnet"] == [
        {"model": "cn", "image": img, "module": "canny", "weight": 0.5},
        {"model": "cn2", "image": img, "guidance_end": 0.5, "pixel_perfect": True},
    ]
    assert bodies[3]["input"] == {
        "image": img,
        "upscaler": "Nearest",
        "upscaling_resize": 3.0,
        "output_format": "webp",
        "jpeg_quality": 90,
    }
    assert bodies[4]["input"]["output_format"] == "jpeg"


def test_submit_refuses_a_malformed_controlnet_unit(api: FakeApi) -> None:
    result = CliRunner().invoke(
        app, ["submit", "--model", "sd15", "--prompt", "x", "--controlnet", "model=cn"]
    )
    assert result.exit_code == 2
    assert "image=" in result.output
    assert api.requests == []
