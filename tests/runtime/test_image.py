"""The runtime image definition: hadolint-clean, pinned, non-root, health-checked, and its health command."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
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
    assert "--constraint constraints.txt --requirement requirements.txt" in text
    assert re.search(r"^USER 10001$", text, re.M)
    assert 'CMD ["python", "-m", "runtime_image.server", "--health"]' in text
    assert re.search(r"^EXPOSE 8080$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["python", "-m", "runtime_image.server"\]$', text, re.M)


def test_image_copies_only_the_runtime() -> None:
    """Every COPY brings the runtime package or its pin files, nothing else of the repository (no core, CLI,
    agent, lambdas or benchmarks), and the build context admits nothing else either."""
    copies = re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE.read_text(), re.M)
    sources = [src for line in copies for src in line.split()[:-1]]
    assert sources and all(src.startswith("runtime_image/") for src in sources), sources
    ignore = (ROOT / "runtime_image" / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = [line[1:] for line in ignore if line.startswith("!")]
    assert allowed and all(a.startswith("runtime_image/") for a in allowed), allowed


def test_requirements_are_the_runtime_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = (ROOT / "runtime_image" / "requirements.txt").read_text().splitlines()
    extra = project["optional-dependencies"]["runtime"]
    assert [ln for ln in lines if ln and not ln.startswith("#")] == extra


def test_runtime_imports_nothing_of_the_repository() -> None:
    """The server starts from its own files alone: a copy of runtime_image/ in an empty directory imports
    (what the image holds), with the repository not on the path."""
    import shutil

    # The venv's editable install would still find the repository's packages: refuse them outright.
    code = (
        "import sys, importlib.abc\n"
        "class Refuse(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'easel', 'queue_agent', 'lambdas', 'infra', 'bench', 'tests'}:\n"
        "            raise ImportError(f'the runtime imports {name}')\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "import runtime_image.server.__main__, runtime_image.server.http, runtime_image.server.runner\n"
        "print('ok')"
    )
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "runtime_image"
        dest.mkdir()
        shutil.copy(ROOT / "runtime_image" / "__init__.py", dest / "__init__.py")
        shutil.copytree(ROOT / "runtime_image" / "server", dest / "server")
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": tmp, "HOME": tmp}
        out = subprocess.run(
            [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {tmp!r})\n{code}"],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


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
