"""Requests a client can get wrong: each is a 4xx naming the field, and none creates a task or a message.

Every case goes through the local gateway with a valid signature, so only the API's own checks decide.
After each one the table is scanned and every queue (lanes, DLQs, unroutable) is counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from easel.client import EaselClient
from infra.local.stack import LocalStack
from tests.integration.api.helpers import call, client_for, message_counts, table_items

pytestmark = pytest.mark.integration

JSON_CT = {"Content-Type": "application/json"}


def _req(**input_overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"task_type": "text-to-image", "model": "sd15", "input": {"prompt": "a dog"}}
    base["input"].update(input_overrides)
    return base


def _top(**overrides: Any) -> dict[str, Any]:
    return {**_req(), **overrides}


def _without(key: str) -> dict[str, Any]:
    body = _req()
    del body[key]
    return body


def _alpha(**meta: Any) -> dict[str, Any]:
    content = meta.pop("content", {"prompt": "A dog", "steps": 16})
    metadata = {"id": "a1", "runtime": "sd15", "tasktype": "text-to-image", "prefix": "out", **meta}
    return {"task": {"metadata": metadata, "content": content}}


def _nested(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    field: str | None
    method: str = "POST"
    path: str = "/v1/tasks"
    body: Any = None
    raw: bytes | None = None
    headers: tuple[tuple[str, str], ...] = tuple(JSON_CT.items())
    params: tuple[tuple[str, str], ...] = ()


CASES = [
    # -- the body as a whole
    Case("bad json", 400, "body", raw=b'{"task_type": '),
    Case("json array", 400, "body", raw=b"[]"),
    Case("json string", 400, "body", raw=b'"a dog"'),
    Case("empty body", 400, "body", raw=b""),
    Case("NaN literal", 400, "body", raw=b'{"task_type": "text-to-image", "x": NaN}'),
    Case("duplicate key", 400, "model", raw=b'{"model": "sd15", "model": "x", "task_type": "text-to-image"}'),
    Case("not utf-8", 400, "body", raw=b'{"model": "\xff\xfe"}'),
    Case("nested too deep", 400, "body", body=_top(context=_nested(60))),
    Case("oversized body", 413, "body", body=_req(prompt="a" * 70_000)),
    Case("no content type", 415, "content-type", body=_req(), headers=()),
    Case("text/plain", 415, "content-type", body=_req(), headers=(("Content-Type", "text/plain"),)),
    Case(
        "latin-1 charset",
        415,
        "content-type",
        body=_req(),
        headers=(("Content-Type", "application/json; charset=latin-1"),),
    ),
    # -- envelope fields
    Case("missing task_type", 400, "task_type", body=_without("task_type")),
    Case("unknown task_type", 400, "task_type", body=_top(task_type="video")),
    Case("missing model", 400, "model", body=_without("model")),
    Case("unknown model", 400, "model", body=_top(model="nope")),
    Case("model not a string", 400, "model", body=_top(model=123)),
    Case("missing input", 400, "input", body=_without("input")),
    Case("input not an object", 400, "input", body=_top(input="a dog")),
    Case("unknown top-level field", 400, "foo", body=_top(foo=1)),
    Case("unknown priority", 400, "priority", body=_top(priority="urgent")),
    Case("bad id characters", 400, "id", body=_top(id="a b!")),
    Case("id too long", 400, "id", body=_top(id="x" * 65)),
    Case("http webhook", 400, "webhook", body=_top(webhook="http://example.com/hook")),
    Case("bad webhook event", 400, "webhook_events_filter.0", body=_top(webhook_events_filter=["bogus"])),
    Case("context not an object", 400, "context", body=_top(context="ctx")),
    Case("context too large", 400, "context", body=_top(context={"k": "v" * 9000})),
    Case(
        "task type the model lacks",
        400,
        "task_type",
        body={
            "task_type": "train-lora",
            "model": "sd15",
            "input": {
                "images": ["s3://bucket-x/tenants/acme/a.png"],
                "instance_prompt": "sks dog",
                "output_name": "dog",
            },
        },
    ),
    # -- input fields
    Case(
        "missing prompt",
        400,
        "input.prompt",
        body={"task_type": "text-to-image", "model": "sd15", "input": {"steps": 4}},
    ),
    Case("blank prompt", 400, "input.prompt", body=_req(prompt="   ")),
    Case("prompt not a string", 400, "input.prompt", body=_req(prompt=["a", "dog"])),
    Case("prompt too long", 400, "input.prompt", body=_req(prompt="a" * 2001)),
    Case("width not multiple of 8", 400, "input.width", body=_req(width=500)),
    Case("width over max", 400, "input.width", body=_req(width=2048)),
    Case("width astronomically large", 400, "input.width", body=_req(width=10**30)),
    Case("height under min", 400, "input.height", body=_req(height=32)),
    Case("negative steps", 400, "input.steps", body=_req(steps=-5)),
    Case("zero steps", 400, "input.steps", body=_req(steps=0)),
    Case("steps as words", 400, "input.steps", body=_req(steps="twenty")),
    Case("fractional steps", 400, "input.steps", body=_req(steps=20.5)),
    Case("steps over max", 400, "input.steps", body=_req(steps=1000)),
    Case("zero batch", 400, "input.batch_size", body=_req(batch_size=0)),
    Case("batch over max", 400, "input.batch_size", body=_req(batch_size=64)),
    Case("cfg_scale too high", 400, "input.cfg_scale", body=_req(cfg_scale=100)),
    Case("unknown sampler", 400, "input.sampler_name", body=_req(sampler_name="Warp 9")),
    Case("seed below -1", 400, "input.seed", body=_req(seed=-2)),
    Case("unknown input field", 400, "input.guidance", body=_req(guidance=7)),
    Case(
        "init image on text-to-image",
        400,
        "input.init_images",
        body=_req(init_images=["s3://bucket-x/k.png"]),
    ),
    Case(
        "image-to-image without init",
        400,
        "input.init_images",
        body={**_req(), "task_type": "image-to-image"},
    ),
    Case(
        "two init images",
        400,
        "input.init_images",
        body={
            **_req(init_images=["s3://bucket-x/a.png", "s3://bucket-x/b.png"]),
            "task_type": "image-to-image",
        },
    ),
    Case("denoising over 1", 400, "input.denoising_strength", body=_req(denoising_strength=1.5)),
    Case(
        "lora weight out of range",
        400,
        "input.loras.0.weight",
        body=_req(loras=[{"name": "x", "weight": 10}]),
    ),
    # -- query and path
    Case("unknown status filter", 400, "status", method="GET", params=(("status", "bogus"),)),
    Case("zero limit", 400, "limit", method="GET", params=(("limit", "0"),)),
    Case("limit as words", 400, "limit", method="GET", params=(("limit", "ten"),)),
    Case("limit over max", 400, "limit", method="GET", params=(("limit", "100000"),)),
    Case("repeated limit", 400, "limit", method="GET", params=(("limit", "1"), ("limit", "2"))),
    Case("unknown query parameter", 400, "foo", method="GET", params=(("foo", "1"),)),
    Case("garbage cursor", 400, "next", method="GET", params=(("next", "!!!"),)),
    Case("bad task id in path", 400, "id", method="GET", path="/v1/tasks/bad%20id"),
    Case("unknown task", 404, "id", method="GET", path="/v1/tasks/nope"),
    Case("cancel unknown task", 404, "id", path="/v1/tasks/nope/cancel"),
    Case("unknown route", 404, "path", method="GET", path="/v2/things"),
    Case("wrong method on tasks", 405, "method", method="DELETE"),
    Case("wrong method on models", 405, "method", method="PUT", path="/v1/models", body=_req()),
    # -- v1alpha2
    Case("v1alpha2 missing metadata", 400, "task.metadata", path="/v1alpha2", body={"task": {"content": {}}}),
    Case(
        "v1alpha2 unknown runtime",
        400,
        "task.metadata.runtime",
        path="/v1alpha2",
        body=_alpha(runtime="ghost"),
    ),
    Case(
        "v1alpha2 unknown tasktype",
        400,
        "task.metadata.tasktype",
        path="/v1alpha2",
        body=_alpha(tasktype="pipeline"),
    ),
    Case(
        "v1alpha2 bad steps",
        400,
        "task.content.steps",
        path="/v1alpha2",
        body=_alpha(content={"prompt": "x", "steps": -1}),
    ),
    Case(
        "v1alpha2 unknown checkpoint",
        400,
        "task.content.alwayson_scripts.sd_model_checkpoint",
        path="/v1alpha2",
        body=_alpha(content={"prompt": "x", "alwayson_scripts": {"sd_model_checkpoint": "nope.safetensors"}}),
    ),
]


def test_there_are_at_least_40_distinct_malformed_requests_naming_a_field() -> None:
    named = [c for c in CASES if c.field is not None and 400 <= c.status < 500]
    assert len({c.name for c in named}) == len(named) >= 40


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> Iterator[EaselClient]:
    stack.reset()
    with client_for(stack, "acme") as c:
        yield c


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_request_is_a_4xx_naming_the_field_and_leaves_no_trace(
    case: Case, client: EaselClient, stack: LocalStack
) -> None:
    raw = case.raw
    if raw is None and case.body is not None:
        raw = json.dumps(case.body).encode()
    if case.params:
        reply = _query(client, case)
    else:
        headers = dict(case.headers) if raw is not None else {}
        reply = call(client, case.method, case.path, raw=raw, headers=headers)
    assert reply.status == case.status, reply.body
    error = reply.error
    assert error["code"] and error["message"]
    assert error.get("field") == case.field, error
    assert table_items(stack) == []
    assert sum(message_counts(stack).values()) == 0


def _query(client: EaselClient, case: Case) -> Any:
    from urllib.parse import quote, urlencode

    from easel.client import ApiError
    from tests.integration.api.helpers import Reply

    # Repeated names need a hand-built query string (dict params would collapse them).
    query = urlencode(list(case.params), quote_via=quote)
    try:
        return Reply(200, client.request(case.method, f"{case.path}?{query}"))
    except ApiError as exc:
        return Reply(exc.status, exc.body)
