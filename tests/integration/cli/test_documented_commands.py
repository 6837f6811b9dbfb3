"""Every command in README.md and docs/deploy.md that can run on this machine is run here, as written.

The commands are read from the documents' fenced code blocks (``text``/``json``/``yaml``/``python`` blocks
are not commands). Each one is either run (through ``bash -c``, so quoting works as in a user's shell, with
this checkout's ``easel`` on PATH) or listed in :data:`ELSEWHERE` with the reason it cannot run here (it
needs an AWS account, Docker or the npm CDK CLI) or the test that runs it. A new command in either document
fails :func:`test_every_documented_command_is_classified` until it is classified here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_CONFIG, ROOT
from tests.integration.cli.conftest import clean_env

DOCS = (ROOT / "README.md", ROOT / "docs" / "deploy.md")
NOT_COMMANDS = {"text", "json", "yaml", "python"}

# (pattern, why it does not run here): matched against each documented command.
ELSEWHERE: list[tuple[str, str]] = [
    (r"^make (setup|test)$", "the CI's own entry points (`make test` runs this very test)"),
    (r"^make synth$", "tests/infra/test_compliance.py::test_python_m_infra_app_writes_the_cloud_assembly"),
    (r"^\. \.venv/bin/activate$", "shell setup (the test puts .venv/bin on PATH)"),
    (r"^export AWS_REGION=", "shell setup for the AWS commands below it"),
    (r"^(aws|awscurl|kubectl|helm) ", "needs an AWS account"),
    (r"^npx aws-cdk", "needs the CDK CLI from npm and, except synth, an AWS account (synth: see make synth)"),
    (r"^docker ", "needs a Docker engine"),
    (r'^eval "\$\(aws ', "needs an AWS account"),
    (r"^for \w+ in [^;]*; do (aws|kubectl|helm) ", "needs an AWS account"),
    (r"<ApiEndpoint>|execute-api\.<region>|--secret-arn <", "needs a deployed stack"),
    (r"^easel deploy ", "checks a deployed stack (needs an AWS account)"),
    (
        r"^easel keys (create|list|revoke) (?!.*--local)",
        "manages a deployed stack's API keys (the --local forms: tests/integration/api/test_api_keys.py)",
    ),
]


@dataclass(frozen=True)
class Command:
    doc: str
    text: str


def documented_commands() -> list[Command]:
    out = []
    for doc in DOCS:
        for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", doc.read_text(), re.S | re.M):
            if lang in NOT_COMMANDS:
                continue
            for line in body.replace("\\\n", " ").splitlines():
                line = re.split(r"\s{2,}#", line)[0].strip()  # aligned trailing comments
                if not line or line.startswith("#"):
                    continue
                # A shell loop is one command; other `a; b` lines are several.
                parts = [line] if line.startswith("for ") else line.split("; ")
                for part in parts:
                    out.append(Command(doc.name, " ".join(part.split())))
    return out


def elsewhere(command: str) -> str | None:
    return next((why for pattern, why in ELSEWHERE if re.search(pattern, command)), None)


def runs_here(command: str) -> bool:
    return elsewhere(command) is None and (command.startswith("easel ") or command in LOCAL_SPECIALS)


LOCAL_SPECIALS = {'eval "$(easel local env)"', "make demo"}


def test_every_documented_command_is_classified() -> None:
    commands = documented_commands()
    assert len(commands) > 15  # the parser found the blocks
    unclassified = [c for c in commands if not runs_here(c.text) and elsewhere(c.text) is None]
    assert unclassified == [], "classify these in tests/integration/cli/test_documented_commands.py"


def _bash(
    command: str, *, env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _user_env() -> dict[str, str]:
    env = clean_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _start(command: str, cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    """A documented `easel local up ...` on a free port; returns once it printed its "ready:" line."""
    proc = subprocess.Popen(["bash", "-c", f"exec {command} --port 0"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    banner = []
    for line in proc.stdout:
        banner.append(line)
        if line.startswith("ready: "):
            return proc, banner
    proc.wait()
    raise AssertionError(f"{command} ended with {proc.returncode} before its ready line:\n{''.join(banner)}")


def _stop(proc: subprocess.Popen[str], cwd: Path, env: dict[str, str]) -> None:
    down = _bash("easel local down", env=env, cwd=cwd)
    assert down.returncode == 0, down.stderr
    assert proc.wait(60) == 0


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_local_commands_run_as_documented(tmp_path: Path) -> None:
    commands = [c.text for c in documented_commands() if runs_here(c.text)]
    ups = [c for c in commands if c.startswith("easel local up")]
    others = [
        c
        for c in commands
        if not c.startswith("easel local up") and c not in ("easel local down", "make demo")
    ]
    assert ups and others and "easel local down" in commands
    shutil.copy(EXAMPLE_CONFIG, tmp_path / "config.yaml")
    env = _user_env()
    # Each documented way to start the stack starts it (and `easel local down` stops it) ...
    for up in ups[:-1]:
        proc, banner = _start(up, tmp_path, env)
        assert any('eval "$(easel local env)"' in line for line in banner)
        _stop(proc, tmp_path, env)
    # ... and the last one serves the rest of the documented commands, in the documents' order.
    proc, _ = _start(ups[-1], tmp_path, env)
    try:
        exported = _bash('eval "$(easel local env)" && env', env=env, cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
        env = {**env, **dict(line.split("=", 1) for line in exported.stdout.splitlines() if "=" in line)}
        assert env["EASEL_ENDPOINT"].startswith("http://127.0.0.1:")
        ran: list[str] = []
        for command in others:
            if command == 'eval "$(easel local env)"':
                continue  # done above: its variables are in env
            if command == "easel cancel <id>":
                # Something left to cancel: a long task, still queued or processing.
                long = _bash("easel submit --model sd15 --prompt x --steps 100 --width 256 --height 256 --json",
                             env=env, cwd=tmp_path)  # fmt: skip
                command = command.replace("<id>", json.loads(long.stdout)["id"])
            elif "<id>" in command:
                listed = json.loads(_bash("easel tasks --json", env=env, cwd=tmp_path).stdout)["tasks"]
                command = command.replace("<id>", listed[-1]["id"])
            result = _bash(command, env=env, cwd=tmp_path)
            assert result.returncode == 0, (command, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr
            ran.append(command)
        assert sorted(p.name for p in (tmp_path / "outputs").glob("*.png"))  # submit --out wrote images
        assert any(c.startswith("easel webhooks secret") for c in ran)
    finally:
        if proc.poll() is None:
            _stop(proc, tmp_path, env)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1500)  # a whole stack with workers, from model generation to two images
def test_make_demo_runs_the_pipeline_and_prints_one_json_document(tmp_path: Path) -> None:
    """`make demo` is `easel local demo --out outputs` once .venv exists; --json must print one document."""
    assert "make demo" in [c.text for c in documented_commands()]
    makefile = (ROOT / "Makefile").read_text()
    assert "$(BIN)/easel local demo --out outputs" in makefile
    shutil.copy(EXAMPLE_CONFIG, tmp_path / "config.yaml")
    result = _bash("easel local demo --out outputs --json", env=_user_env(), cwd=tmp_path, timeout=1400)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)  # exactly one JSON document: nothing else on stdout
    assert doc["ok"] is True and len(doc["tasks"]) == 2
    assert all((tmp_path / f).is_file() for f in doc["files"]) and len(doc["files"]) == 2
    assert "noise by design" in doc["note"]
    assert "Traceback" not in result.stderr
