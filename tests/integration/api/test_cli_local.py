"""The acceptance flow by hand: `easel local up` in one process, `easel submit/status` in others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TWO_RUNTIMES_CONFIG

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _easel(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "easel.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_local_up_submit_status_down(tmp_path: Path) -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EASEL_"))}
    base_env["PYTHONPATH"] = str(ROOT)
    state = tmp_path / ".easel" / "local.json"
    up = subprocess.Popen(
        [sys.executable, "-m", "easel.cli", "local", "up", "--no-workers", "--port", "0",
         "--config", str(TWO_RUNTIMES_CONFIG), "--state", str(state)],
        cwd=tmp_path, env=base_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not state.exists():
            assert up.poll() is None, up.stdout.read() if up.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        data = json.loads(state.read_text())
        acme = data["tenants"]["acme"]
        env = {
            **base_env,
            "EASEL_ENDPOINT": data["endpoint"],
            "AWS_ACCESS_KEY_ID": acme["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": acme["secret_access_key"],
            "AWS_REGION": data["region"],
        }
        submitted = _easel("submit", "--model", "sd15", "--prompt", "a dog", "--json", env=env, cwd=tmp_path)
        assert submitted.returncode == 0, submitted.stderr
        task = json.loads(submitted.stdout)
        assert task["status"] == "queued"
        shown = _easel("status", task["id"], "--json", env=env, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["status"] == "queued"
        # The other tenant cannot see it.
        globex = data["tenants"]["globex"]
        other = {
            **env,
            "AWS_ACCESS_KEY_ID": globex["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": globex["secret_access_key"],
        }
        assert _easel("status", task["id"], env=other, cwd=tmp_path).returncode == 1
        down = _easel("local", "down", "--state", str(state), env=base_env, cwd=tmp_path)
        assert down.returncode == 0, down.stderr
        assert up.wait(30) == 0
        assert not state.exists()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
