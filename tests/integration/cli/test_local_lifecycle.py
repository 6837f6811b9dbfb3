"""`easel local up` beside a running stack, `local env` for `eval`, and keys that survive a restart."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TWO_RUNTIMES_CONFIG
from tests.integration.cli.conftest import clean_env, easel, start_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_second_local_up_leaves_the_first_stack_and_its_state_intact(tmp_path: Path) -> None:
    first = start_up(tmp_path)
    try:
        before = first.state.read_bytes()
        assert _mode(first.state) == 0o600
        # Same state file: refused before anything is written, naming where the first one runs.
        again = easel("local", "up", "--no-workers", "--port", "0", "--config", str(TWO_RUNTIMES_CONFIG),
                      "--state", str(first.state), env=clean_env(), cwd=tmp_path)  # fmt: skip
        assert again.returncode == 2
        assert "already runs at " + str(first.ready["endpoint"]) in again.stderr
        # Another state file but the first one's port: refused too, and that state file never appears.
        port = str(first.ready["endpoint"]).rsplit(":", 1)[1]
        other = tmp_path / "other" / "local.json"
        busy = easel("local", "up", "--no-workers", "--port", port, "--config", str(TWO_RUNTIMES_CONFIG),
                     "--state", str(other), env=clean_env(), cwd=tmp_path)  # fmt: skip
        assert busy.returncode == 2 and f"port {port}" in busy.stderr
        assert not other.exists()
        assert first.state.read_bytes() == before
        assert first.proc.poll() is None
        # The first stack still answers, with the keys `local env` prints ...
        assert easel("tasks", "--json", env=first.env(), cwd=tmp_path).returncode == 0
        # ... and `local down` still stops it.
        down = easel("local", "down", "--state", str(first.state), env=clean_env(), cwd=tmp_path)
        assert down.returncode == 0, down.stderr
        assert first.proc.wait(30) == 0
        assert not first.state.exists()
    finally:
        first.stop()


def test_local_env_is_eval_able_and_keys_survive_a_restart_unless_rotated(tmp_path: Path) -> None:
    up = start_up(tmp_path)
    try:
        # What the README says: eval "$(easel local env)", then use easel.
        script = f'eval "$({sys.executable} -m easel.cli local env --tenant globex)" && ' \
                 f'{sys.executable} -m easel.cli tasks --json && echo "$AWS_REGION"'  # fmt: skip
        shell = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=clean_env(), capture_output=True,
                               text=True, timeout=120)  # fmt: skip
        assert shell.returncode == 0, shell.stderr
        assert json.loads(shell.stdout.rsplit("\n", 2)[0])["tasks"] == []
        assert shell.stdout.strip().endswith(str(up.ready["region"]))
        keys = up.env("acme")["AWS_ACCESS_KEY_ID"]
    finally:
        up.stop()
    creds = tmp_path / ".easel" / "credentials.json"
    assert _mode(creds) == 0o600
    restarted = start_up(tmp_path)
    try:
        assert restarted.env("acme")["AWS_ACCESS_KEY_ID"] == keys
    finally:
        restarted.stop()
    rotated = start_up(tmp_path, "--rotate-credentials")
    try:
        assert rotated.env("acme")["AWS_ACCESS_KEY_ID"] != keys
    finally:
        rotated.stop()
