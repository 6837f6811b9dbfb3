"""The deploy guide's SigV4 examples, run as written (awscurl) against the signed local gateway."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local.stack import LocalStack
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

AWSCURL = Path(sys.executable).parent / "awscurl"


def _awscurl_commands(doc: Path) -> list[list[str]]:
    """Every ``awscurl ...`` command in the doc's code blocks (backslash continuations joined)."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", doc.read_text(), flags=re.S | re.M)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("awscurl "):
                commands.append(shlex.split(line))
    return commands


def _run(
    argv: list[str], *, stack: LocalStack, tenant: str, task_id: str = ""
) -> subprocess.CompletedProcess[str]:
    base = "https://<id>.execute-api.<region>.amazonaws.com/prod"
    args = [
        a.replace(base, stack.endpoint.rstrip("/"))
        .replace("<region>", stack.region)
        .replace("<task_id>", task_id)
        for a in argv[1:]
    ]
    cred = stack.tenant_credentials(tenant)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        "AWS_ACCESS_KEY_ID": cred.access_key_id,
        "AWS_SECRET_ACCESS_KEY": cred.secret_access_key,
    }
    exe = str(AWSCURL) if AWSCURL.exists() else (shutil.which("awscurl") or "awscurl")
    return subprocess.run(
        [exe, "--fail-with-body", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_deploy_guide_awscurl_examples_work_as_written(fresh: LocalStack) -> None:
    submit, get = _awscurl_commands(ROOT / "docs" / "deploy.md")
    assert "-X" in submit and get[-1].endswith("/v1/tasks/<task_id>")
    done = _run(submit, stack=fresh, tenant="acme")
    assert done.returncode == 0, done.stdout + done.stderr
    task = json.loads(done.stdout)
    assert (task["status"], task["task_type"], task["tenant"]) == ("queued", "text-to-image", "acme")
    shown = _run(get, stack=fresh, tenant="acme", task_id=task["id"])
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["id"] == task["id"]
    # Another tenant's credentials, same command: not found.
    other = _run(get, stack=fresh, tenant="globex", task_id=task["id"])
    assert other.returncode != 0 and json.loads(other.stdout)["error"]["code"].endswith("not_found")
