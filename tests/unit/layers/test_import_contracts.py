"""The layer contracts (pyproject's [tool.importlinter], also run by ``make imports``) hold for this tree,
and the checker does catch a forbidden import: a copy of the agent that imports the runtime breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("easel", "bench", "lambdas", "queue_agent", "runtime_image", "infra")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "lint-imports"
    # PYTHONPATH: the packages of ``cwd`` (not the editable install's) are the ones analysed.
    return subprocess.run(
        [str(exe), "--no-cache"],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_layer_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "5 kept, 0 broken" in result.stdout


def test_a_forbidden_import_breaks_a_contract(tmp_path: Path) -> None:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    settle = tmp_path / "queue_agent" / "settle.py"
    settle.write_text(
        settle.read_text() + "\nfrom runtime_image.server import errors as _forbidden  # noqa\n"
    )
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "queue_agent is not allowed to import runtime_image" in result.stdout
    assert "queue_agent.settle -> runtime_image.server" in result.stdout
