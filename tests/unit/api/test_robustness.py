"""Regressions of issue 14: requests that once made the API answer 5xx, or accept what the schema refuses.

Each case goes through the real handler and the real task store (moto server): the answer is a 4xx naming
the field, and nothing is stored or published.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from lambdas.api.deps import Deps
from tests.unit.api.conftest import FakePublisher, event, invoke

BASE: dict[str, Any] = {
    "task_type": "text-to-image",
    "model": "sd15",
    "input": {"prompt": "a dog", "steps": 4},
}


def _body(**input_overrides: Any) -> dict[str, Any]:
    return {**BASE, "input": {**BASE["input"], **input_overrides}}


def _raw_with(placeholder_value: str, **top: Any) -> str:
    """A request body whose ``"@@"`` string is replaced by raw JSON text (numbers json.dumps can't write)."""
    return json.dumps({**BASE, **top}).replace('"@@"', placeholder_value)


def _nothing_stored(deps: Deps) -> None:
    items = deps.store._ddb.scan(TableName=deps.store._table)["Items"]
    assert items == []
    assert isinstance(deps.publisher, FakePublisher)
    assert deps.publisher.messages == []


def _refused(deps: Deps, ev: dict[str, Any], field: str, status: int = 400) -> dict[str, Any]:
    code, body = invoke(ev)
    assert code == status, body
    assert body["error"]["field"] == field, body
    assert body["error"]["message"]
    _nothing_stored(deps)
    return dict(body["error"])


HUGE = "1" + "0" * 5000

# (name, raw JSON body, field the 400 names)
NUMBER_CASES = [
    (
        "int over python's 4300-digit limit in input",
        _raw_with(HUGE, input={"prompt": "x", "steps": "@@"}),
        "input.steps",
    ),
    ("int over python's 4300-digit limit in context", _raw_with(HUGE, context={"n": "@@"}), "context.n"),
    ("negative huge int", _raw_with("-" + HUGE, context={"n": "@@"}), "context.n"),
    ("cfg_scale 1e-200", _raw_with("1e-200", input={"prompt": "x", "cfg_scale": "@@"}), "input.cfg_scale"),
    (
        "denoising_strength 5e-324",
        _raw_with("5e-324", input={"prompt": "x", "denoising_strength": "@@"}),
        "input.denoising_strength",
    ),
    (
        "lora weight 5e-324",
        _raw_with("5e-324", input={"prompt": "x", "loras": [{"name": "a", "weight": "@@"}]}),
        "input.loras.0.weight",
    ),
    ("39-digit int in context", _raw_with("1" + "0" * 38, context={"a": {"b": "@@"}}), "context.a.b"),
    ("1e200 in context", _raw_with("1e200", context={"a": ["@@"]}), "context.a.0"),
    ("1e-200 in context", _raw_with("1e-200", context={"x": "@@"}), "context.x"),
    ("float overflowing to inf", _raw_with("1e999", context={"x": "@@"}), "context.x"),
]


@pytest.mark.parametrize(("name", "raw", "field"), NUMBER_CASES, ids=[c[0] for c in NUMBER_CASES])
def test_numbers_the_store_cannot_hold_are_400(deps: Deps, name: str, raw: str, field: str) -> None:
    _refused(deps, event("POST", "/v1/tasks", raw=raw), field)


SURROGATE_CASES = [
    ("in the prompt", _raw_with('"a \\ud800 dog"', input={"prompt": "@@"}), "input.prompt"),
    ("in a context value", _raw_with('"\\udfff"', context={"k": "@@"}), "context.k"),
    ("in a context key", json.dumps({**BASE, "context": {"@@": 1}}).replace('"@@"', '"\\ud800"'), "context"),
    ("in the model", _raw_with('"\\ud83d"', model="@@"), "model"),
]


@pytest.mark.parametrize(("name", "raw", "field"), SURROGATE_CASES, ids=[c[0] for c in SURROGATE_CASES])
def test_lone_surrogates_are_400(deps: Deps, name: str, raw: str, field: str) -> None:
    _refused(deps, event("POST", "/v1/tasks", raw=raw), field)


def test_lone_surrogate_in_a_v1alpha2_context_is_400(deps: Deps) -> None:
    body = {
        "task": {
            "metadata": {"id": "a1", "runtime": "sd15", "tasktype": "text-to-image", "context": "@@"},
            "content": {"prompt": "x"},
        }
    }
    raw = json.dumps(body).replace('"@@"', '"\\ud800"')
    _refused(deps, event("POST", "/v1alpha2", raw=raw), "task.metadata.context")


@pytest.mark.parametrize("limit", ["²", "１", "٣", "1 ", "+1", "-1", "0x10", "1_0"])
def test_limit_in_other_digits_or_forms_is_400(deps: Deps, limit: str) -> None:
    _refused(deps, event("GET", "/v1/tasks", query={"limit": [limit]}), "limit")


STRICT_CASES = [
    ("steps as a string", _body(steps="1"), "input.steps"),
    ("steps as true", _body(steps=True), "input.steps"),
    ("steps as 1.0", _body(steps=1.0), "input.steps"),
    ("width as a string", _body(width="64"), "input.width"),
    ("seed as a string", _body(seed="7"), "input.seed"),
    ("batch_size as false", _body(batch_size=False), "input.batch_size"),
    ("cfg_scale as a string", _body(cfg_scale="7"), "input.cfg_scale"),
    ("cfg_scale as true", _body(cfg_scale=True), "input.cfg_scale"),
    ("lora weight as a string", _body(loras=[{"name": "a", "weight": "0.5"}]), "input.loras.0.weight"),
    ("prompt as a number", _body(prompt=5), "input.prompt"),
    ("priority as a number", {**BASE, "priority": 1}, "priority"),
]


@pytest.mark.parametrize(("name", "body", "field"), STRICT_CASES, ids=[c[0] for c in STRICT_CASES])
def test_types_are_strict_as_the_schema_publishes_them(
    deps: Deps, name: str, body: dict[str, Any], field: str
) -> None:
    _refused(deps, event("POST", "/v1/tasks", body=body), field)


def test_integral_float_for_a_float_field_and_int_for_a_float_field_still_pass(deps: Deps) -> None:
    code, body = invoke(event("POST", "/v1/tasks", body=_body(cfg_scale=7, denoising_strength=1)))
    assert code == 202, body


@pytest.mark.parametrize("suffix", ["%0A", "\n", "\r", "%0D%0A", "\t", "%00"])
def test_a_path_with_a_control_character_matches_no_task(deps: Deps, suffix: str) -> None:
    code, body = invoke(event("POST", "/v1/tasks", body={**BASE, "id": "abc"}))
    assert code == 202, body
    for path in (f"/v1/tasks/abc{suffix}", f"/v1/tasks/abc/cancel{suffix}"):
        method = "POST" if "cancel" in path else "GET"
        code, body = invoke(event(method, path))
        assert code in (400, 404), (path, body)
        assert body["error"].get("field") in ("id", "path"), body
    assert deps.store.get("acme", "abc").status == "queued"


# -- pagination cursors -------------------------------------------------------------------------------


def _page(deps: Deps, **query: str) -> tuple[int, dict[str, Any]]:
    return invoke(event("GET", "/v1/tasks", query={k: [v] for k, v in query.items()}))


def _two_tasks(deps: Deps) -> str:
    for i in range(2):
        assert invoke(event("POST", "/v1/tasks", body={**BASE, "id": f"t{i}"}))[0] == 202
    code, body = _page(deps, limit="1")
    assert code == 200
    assert body["next"]
    return str(body["next"])


def _b64(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


TAMPERED = [
    ("wrong attribute types", lambda _c: _b64({"tenant": {"N": "1"}, "pk": {"S": "x"}})),
    ("key of another table shape", lambda _c: _b64({"tenant": {"S": "acme"}, "zzz": {"S": "x"}})),
    ("values not strings", lambda _c: _b64({"tenant": {"S": ["acme"]}})),
    ("empty typed value", lambda _c: _b64({"tenant": {}})),
    ("unknown type tag", lambda _c: _b64({"tenant": {"Q": "acme"}, "pk": {"Q": 1}})),
    ("handmade key of this tenant", lambda _c: _b64({"tenant": {"S": "acme"}, "pk": {"S": "acme#t0"}})),
    ("one character flipped", lambda c: c[:-3] + ("A" if c[-3] != "A" else "B") + c[-2:]),
    ("truncated", lambda c: c[: len(c) // 2]),
    ("extended", lambda c: c + "AAAA"),
    ("not base64 at all", lambda _c: "@@@@"),
    ("huge", lambda _c: "A" * 20_000),
    ("surrogate", lambda _c: "\ud800"),
]


@pytest.mark.parametrize(("name", "tamper"), TAMPERED, ids=[t[0] for t in TAMPERED])
def test_tampered_cursor_is_400_invalid_cursor(deps: Deps, name: str, tamper: Any) -> None:
    cursor = _two_tasks(deps)
    code, body = _page(deps, limit="1", next=tamper(cursor))
    assert code == 400, body
    assert (body["error"]["code"], body["error"]["field"]) == ("invalid_cursor", "next")


def test_a_cursor_is_bound_to_its_query(deps: Deps) -> None:
    cursor = _two_tasks(deps)
    code, body = _page(deps, limit="1", status="queued", next=cursor)
    assert (code, body["error"]["code"]) == (400, "invalid_cursor")
    # and still good for the listing that issued it
    code, body = _page(deps, limit="1", next=cursor)
    assert code == 200
    assert [t["id"] for t in body["tasks"]] == ["t0"]


def test_another_tenants_cursor_is_400_invalid_cursor(deps: Deps) -> None:
    from tests.unit.api.conftest import GLOBEX_ARN

    cursor = _two_tasks(deps)
    code, body = invoke(event("GET", "/v1/tasks", query={"limit": ["1"], "next": [cursor]}, arn=GLOBEX_ARN))
    assert (code, body["error"]["code"], body["error"]["field"]) == (400, "invalid_cursor", "next")


# -- what a tenant reads about a failure ------------------------------------------------------------------

INTERNALS = ("arn:aws", "123456789012", "An error occurred", "botocore", "/sdapi/", "/work/", ".py")


def test_a_failed_dispatch_stores_no_arn_account_or_sdk_text(deps: Deps) -> None:
    from lambdas.api.deps import SnsPublisher

    # A real publish to a topic that does not exist: moto answers NotFound, naming the ARN and account.
    topic = deps.settings.tasks_topic_arn + "-gone"
    deps.publisher = SnsPublisher(_sns(), topic)
    code, body = invoke(event("POST", "/v1/tasks", body={**BASE, "id": "d1"}))
    assert (code, body["error"]["code"]) == (503, "dispatch_failed")
    stored = deps.store.get("acme", "d1")
    assert stored.status == "failed"
    assert stored.error is not None and stored.error.code == "dispatch_failed"
    for internal in INTERNALS:
        assert internal not in stored.error.message, stored.error.message
    for internal in INTERNALS:
        assert internal not in json.dumps(body), body
    # ... and what the tenant reads through the API is the same stable text.
    _, shown = invoke(event("GET", "/v1/tasks/d1"))
    assert shown["error"] == stored.error.model_dump()


def _sns() -> Any:
    import boto3

    return boto3.client("sns", region_name="us-west-2")


AGENT_DETAILS = [
    (
        "runtime_rejected",
        "runtime refused POST /sdapi/v1/txt2img (422): width must be a multiple of 8",
        "422",
    ),
    (
        "retries_exhausted",
        "gave up after 3 receives; last error: runtime POST http://127.0.0.1:7860/sdapi/v1/txt2img: HTTP 500",
        "HTTP 500",
    ),
    (
        "retries_exhausted",
        "gave up after 3 receives; last error: An error occurred (AccessDenied) when calling the PutObject "
        "operation: User: arn:aws:sts::123456789012:assumed-role/easel-agent/i-0 is not authorized",
        "AccessDenied",
    ),
    ("model_missing", "runtime has no model 'ghost': file /var/lib/easel/models/ghost not found", "ghost"),
    (
        "invalid_message",
        "queue message is malformed: input.steps: Input should be a valid integer",
        "input.steps",
    ),
]


@pytest.mark.parametrize(
    ("code", "detail", "kept"), AGENT_DETAILS, ids=[d[0] + str(i) for i, d in enumerate(AGENT_DETAILS)]
)
def test_agent_task_errors_keep_the_reason_and_drop_internals(
    deps: Deps, code: str, detail: str, kept: str
) -> None:
    from queue_agent.state import TaskState

    assert invoke(event("POST", "/v1/tasks", body={**BASE, "id": "a1"}))[0] == 202
    failed = TaskState(deps.store).fail("acme", "a1", code, detail)
    assert failed is not None and failed.error is not None
    message = failed.error.message
    assert failed.error.code == code
    assert kept in message, message
    for internal in INTERNALS:
        assert internal not in message, message


@pytest.mark.parametrize("context", [{"": 1}, {"a": {"": 1}}, {"a": [{"": "x"}]}])
def test_an_empty_object_key_is_400_and_never_stored(deps: Deps, context: dict[str, Any]) -> None:
    # The local store (moto) cannot list a task holding one: every later GET /v1/tasks would be a 500.
    code, body = invoke(event("POST", "/v1/tasks", body={**BASE, "context": context}))
    assert code == 400, body
    assert body["error"]["field"].startswith("context"), body
    _nothing_stored(deps)
    assert invoke(event("GET", "/v1/tasks"))[0] == 200
