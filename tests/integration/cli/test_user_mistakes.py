"""The mistakes a person makes with the CLI, each run through the real `easel` as a subprocess.

Every row must end in one line naming what is wrong and what to do, a non-zero exit code and no traceback;
the same command with ``--json`` must print one JSON error document on stdout instead. Rows marked
``stack`` run beside a real `easel local up` (control plane only), so API refusals come from the real API
through the signed gateway.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_CONFIG, TWO_RUNTIMES_CONFIG
from tests.integration.cli.conftest import UpProcess, clean_env, easel

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = str(TWO_RUNTIMES_CONFIG)


@dataclass(frozen=True)
class Mistake:
    name: str
    args: tuple[str, ...]
    expect: str  # a piece of the one-line message (or hint) that must be there
    env: Callable[[UpProcess], dict[str, str]] = field(default=lambda _up: clean_env())
    code: int = 2


def stack_env(**override: str) -> Callable[[UpProcess], dict[str, str]]:
    return lambda up: {**up.env(), **override}


def _no_stack(_up: UpProcess) -> dict[str, str]:
    return clean_env()


MISTAKES = [
    # -- the command line itself ----------------------------------------------------------------------
    Mistake("misspelled command", ("sumbit",), "No such command"),
    Mistake("unknown option", ("submit", "--promt", "a dog"), "No such option"),
    Mistake("missing argument", ("status",), "TASK_ID is required"),
    Mistake("not a number", ("submit", "--steps", "many"), "--steps"),
    Mistake("no model", ("submit", "--prompt", "a dog"), "--model is required"),
    Mistake("no prompt", ("submit", "--model", "sd15"), "--prompt is required"),
    Mistake(
        "local file as init image",
        ("submit", "-m", "sd15", "-p", "x", "--init-image", "dog.png"),
        "a local file",
    ),
    Mistake(
        "image-to-image without an image",
        ("submit", "-m", "sd15", "-p", "x", "--task-type", "image-to-image"),
        "--init-image is required",
    ),
    Mistake("unknown priority", ("submit", "-m", "sd15", "-p", "x", "--priority", "urgent"), "--priority"),
    Mistake(
        "unknown task type", ("submit", "-m", "sd15", "-p", "x", "--task-type", "txt2img"), "--task-type"
    ),
    Mistake("request file missing", ("submit", "--file", "request.json"), "no such file"),
    Mistake("request file not JSON", ("submit", "--file", "broken.json"), "not JSON"),
    Mistake("request file not an object", ("submit", "--file", "list.json"), "JSON object"),
    Mistake("port out of range", ("local", "up", "--port", "99999", "--config", CONFIG), "--port"),
    Mistake("bad --since", ("costs", "--since", "yesterday", "--config", CONFIG), "--since"),
    # -- setup: endpoint, credentials, region, config, the local stack ------------------------------------
    Mistake("no endpoint", ("submit", "-m", "sd15", "-p", "a dog"), "easel local env"),
    Mistake("endpoint without scheme", ("status", "t1", "--endpoint", "127.0.0.1:8787"), "http(s) URL"),
    Mistake("no credentials", ("status", "t1", "--endpoint", "http://127.0.0.1:9"), "credentials"),
    Mistake(
        "nothing listens there",
        ("status", "t1"),
        "cannot reach the API",
        code=1,
        env=lambda _up: clean_env(
            EASEL_ENDPOINT="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="AKIAX", AWS_SECRET_ACCESS_KEY="s"
        ),
    ),
    Mistake("costs without a region", ("costs", "--config", CONFIG), "region"),  # no env.region there
    Mistake("costs without credentials", ("costs", "--config", str(EXAMPLE_CONFIG)), "credentials"),
    Mistake("config file missing", ("local", "up", "--config", "nope.yaml"), "nope.yaml"),
    Mistake("costs --local before local up", ("costs", "--local", "--config", CONFIG), "easel local up"),
    Mistake("local env before local up", ("local", "env"), "easel local up"),
    Mistake("local down before local up", ("local", "down"), "easel local up"),
    # -- against a running stack ----------------------------------------------------------------------
    Mistake(
        "second local up",
        ("local", "up", "--no-workers", "--config", CONFIG, "--port", "0", "--state", "STATE"),
        "already runs",
        env=_no_stack,
    ),
    Mistake("unknown task", ("status", "no-such-task"), "easel tasks", code=1, env=stack_env()),
    Mistake("cancel unknown task", ("cancel", "no-such-task"), "not_found", code=1, env=stack_env()),
    Mistake(
        "unknown model", ("submit", "-m", "nope", "-p", "a dog"), "easel models", code=1, env=stack_env()
    ),
    Mistake(
        "width not a multiple of 8",
        ("submit", "-m", "sd15", "-p", "a dog", "--width", "65"),
        "input.width",
        code=1,
        env=stack_env(),
    ),
    Mistake(
        "unknown sampler",
        ("submit", "-m", "sd15", "-p", "a dog", "--sampler", "Nope"),
        "input.sampler_name",
        code=1,
        env=stack_env(),
    ),
    Mistake(
        "keys from an older stack",
        ("tasks",),
        "easel local env",
        code=1,
        env=stack_env(AWS_ACCESS_KEY_ID="AKIAEASELOLDKEY00000"),
    ),
    Mistake("wrong region", ("tasks",), "AWS_REGION", code=1, env=stack_env(AWS_REGION="eu-west-1")),
    Mistake(
        "unknown local tenant",
        ("local", "env", "--tenant", "nobody", "--state", "STATE"),
        "acme",
        env=_no_stack,
    ),
]


def _prepare(work: Path) -> None:
    (work / "dog.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (work / "broken.json").write_text("{")
    (work / "list.json").write_text("[]")


def _run(mistake: Mistake, up: UpProcess, work: Path, as_json: bool) -> subprocess.CompletedProcess[str]:
    args = [str(up.state) if a == "STATE" else a for a in mistake.args]
    if as_json:
        args.append("--json")
    return easel(*args, env=mistake.env(up), cwd=work)


@pytest.fixture(scope="module")
def outcomes(
    local_up: UpProcess, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, bool], subprocess.CompletedProcess[str]]:
    """Every row, plain and --json, run two at a time (each is a fresh interpreter)."""
    work = tmp_path_factory.mktemp("mistakes")
    _prepare(work)
    runs = [(m, as_json) for m in MISTAKES for as_json in (False, True)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = pool.map(lambda run: _run(run[0], local_up, work, run[1]), runs)
        return {(m.name, as_json): result for (m, as_json), result in zip(runs, done, strict=True)}


def test_the_table_is_long_enough() -> None:
    assert len({m.name for m in MISTAKES}) == len(MISTAKES) >= 25


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.name)
def test_one_line_hint_and_an_exit_code(
    mistake: Mistake, outcomes: dict[tuple[str, bool], subprocess.CompletedProcess[str]]
) -> None:
    result = outcomes[(mistake.name, False)]
    assert result.returncode == mistake.code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert mistake.expect in lines[0]


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.name)
def test_the_same_error_as_json(
    mistake: Mistake, outcomes: dict[tuple[str, bool], subprocess.CompletedProcess[str]]
) -> None:
    result = outcomes[(mistake.name, True)]
    assert result.returncode == mistake.code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["code"] and error["message"]
    assert mistake.expect in f"{error['message']} {error['hint']}"
