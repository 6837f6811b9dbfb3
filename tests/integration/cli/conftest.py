"""The CLI as a user runs it: `python -m easel.cli ...` subprocesses, and one `easel local up` beside them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, TWO_RUNTIMES_CONFIG


def clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment without AWS or Easel settings, and no way to find real credentials.

    The instance-metadata provider is switched off so that no test ever reaches for a link-local address.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EASEL_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        AWS_CONFIG_FILE="/nonexistent/aws-config",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/aws-credentials",
        AWS_EC2_METADATA_DISABLED="true",
        COLUMNS="200",
    )
    env.update(extra)
    return env


def easel(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "easel.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class UpProcess:
    """A running `easel local up --json`, its ready document and the directory it runs in."""

    proc: subprocess.Popen[str]
    ready: dict[str, object]
    cwd: Path
    state: Path

    def env(self, tenant: str | None = None) -> dict[str, str]:
        """What `eval "$(easel local env)"` sets, read the way a user would."""
        args = ["local", "env", "--json", "--state", str(self.state)] + (
            ["--tenant", tenant] if tenant else []
        )
        shown = easel(*args, env=clean_env(), cwd=self.cwd)
        assert shown.returncode == 0, shown.stderr
        return clean_env(**json.loads(shown.stdout))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_up(cwd: Path, *extra: str, state: Path | None = None) -> UpProcess:
    """`easel local up --no-workers --json` in ``cwd``; returns once it printed its ready line."""
    state = state or cwd / ".easel" / "local.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "easel.cli", "local", "up", "--no-workers", "--port", "0", "--json",
         "--config", str(TWO_RUNTIMES_CONFIG), "--state", str(state), *extra],
        cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until ready (or the process ends: then it is "")
    if not line:
        err = proc.stderr.read() if proc.stderr else ""
        proc.wait()
        raise AssertionError(f"local up ended with {proc.returncode}: {err}")
    return UpProcess(proc=proc, ready=json.loads(line), cwd=cwd, state=state)


@pytest.fixture(scope="module")
def local_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    up = start_up(tmp_path_factory.mktemp("cli"))
    yield up
    up.stop()
