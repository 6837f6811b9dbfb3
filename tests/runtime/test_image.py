"""The runtime image definition: hadolint-clean, pinned, non-root, health-checked, and its health command."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from easel.cli import app
from tests.runtime.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "runtime_image" / "Dockerfile"


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_pinned_non_root_and_health_checked() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG CUDA_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-[a-z-]+-ubuntu\d+\.\d+", base.group(1))
    assert re.search(r"^ARG TORCH_VERSION=\d+\.\d+\.\d+$", text, re.M)
    assert "--constraint runtime_image/constraints.txt" in text
    assert re.search(r"^USER 10001$", text, re.M)
    assert 'CMD ["easel", "runtime", "health"]' in text
    assert re.search(r"^EXPOSE 8080$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["easel", "runtime", "serve"\]$', text, re.M)


def test_constraints_agree_with_pyproject_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    constraints = dict(
        line.split("==")
        for line in (ROOT / "runtime_image" / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    pins = [r for r in [*project["dependencies"], *project["optional-dependencies"]["runtime"]] if "==" in r]
    assert pins
    for pin in pins:
        name, version = pin.split("==")
        key = re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()
        assert constraints.get(key) == version, pin


def test_health_command_exit_codes(server: LiveServer, make_server, tiny_store: Path) -> None:
    port = server.url.rsplit(":", 1)[1]
    ready = CliRunner().invoke(app, ["runtime", "health", "--port", port])
    assert ready.exit_code == 0, ready.output
    assert '"status":"ready"' in ready.output

    failed = make_server(tiny_store, preload_model="nope")
    failed.wait_status("failed")
    result = CliRunner().invoke(app, ["runtime", "health", "--port", failed.url.rsplit(":", 1)[1]])
    assert result.exit_code == 1

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = str(s.getsockname()[1])
    assert CliRunner().invoke(app, ["runtime", "health", "--port", closed]).exit_code == 1
