"""Property: whatever a signed caller sends, the API answers 2xx or a 4xx naming a field, and a refused
request writes nothing to the table and publishes nothing to any queue.

Generated requests cover every route, body and query parameter: structured mutations of valid bodies
(wrong types, huge and tiny numbers, lone surrogates, nesting, unknown keys), raw-text mutations (integers
of thousands of digits, 1e999, NaN, duplicate keys, truncation, stray bytes, deep nesting, oversized
bodies, base64 flags), content types, query strings (other digits, repeated names, tampered cursors),
methods, paths with control characters and principals. See tests/fuzz/conftest.py for the profiles.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import ACME_ARN, Harness, principal

pytestmark = pytest.mark.integration

_ALL_CATEGORIES: list[Any] = ["L", "M", "N", "P", "S", "Z", "Cc", "Cf", "Cs", "Co"]
any_char = st.characters(categories=_ALL_CATEGORIES)
any_text = st.text(any_char, max_size=24)
edge_ints = st.sampled_from(
    [0, -1, 1, 7, 64, 2**31, 2**32, 2**63, 10**38 - 1, 10**38, -(10**38), 10**200, -(10**1000)]
)
edge_floats = st.sampled_from(
    [
        0.0,
        -0.0,
        5e-324,
        1e-200,
        1e-131,
        1e-130,
        0.1,
        0.75,
        7.5,
        29.999,
        30.0001,
        -4.0,
        4.000001,
        9.9e125,
        1e126,
        1e200,
        1.7976931348623157e308,
    ]
)
scalars = (
    st.none()
    | st.booleans()
    | edge_ints
    | st.integers()
    | edge_floats
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
    | st.sampled_from(["1", "64", "", " ", "Euler a", "high", "s3://bucket-x/a.png", "https://example.com/h"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=10,
)

T2I: dict[str, Any] = {
    "task_type": "text-to-image",
    "model": "sd15",
    "input": {"prompt": "a dog", "steps": 4},
}
I2I: dict[str, Any] = {
    "task_type": "image-to-image",
    "model": "sd15",
    "input": {
        "prompt": "a cat",
        "init_images": ["s3://bucket-x/tenants/acme/a.png"],
        "denoising_strength": 0.5,
    },
    "context": {"k": [1, 2.5, "v"]},
}
TRAIN: dict[str, Any] = {
    "task_type": "train-lora",
    "model": "sd15",
    "input": {
        "images": ["s3://bucket-x/tenants/acme/a.png"],
        "instance_prompt": "sks dog",
        "output_name": "dog",
    },
}
FULL: dict[str, Any] = {
    "id": "fuzz-1",
    "task_type": "text-to-image",
    "model": "sd15",
    "priority": "high",
    "input": {
        "prompt": "a dog",
        "negative_prompt": "blur",
        "steps": 4,
        "width": 64,
        "height": 64,
        "cfg_scale": 7.5,
        "sampler_name": "Euler a",
        "seed": 7,
        "batch_size": 1,
        "loras": [{"name": "a", "weight": 0.5}],
    },
    "webhook": "https://example.com/hook",
    "webhook_events_filter": ["start", "completed"],
    "context": {"run": 1},
}
ALPHA: dict[str, Any] = {
    "task": {
        "metadata": {
            "id": "a1",
            "runtime": "sd15",
            "tasktype": "text-to-image",
            "prefix": "out",
            "context": "c",
        },
        "content": {"prompt": "a dog", "steps": 4, "alwayson_scripts": {"sd_model_checkpoint": "sd15"}},
    }
}
KNOWN_KEYS = sorted(
    {k for body in (T2I, I2I, TRAIN, FULL) for k in body}
    | {k for body in (T2I, I2I, TRAIN, FULL) for k in body["input"]}
    | {"name", "weight", "learning_rate", "rank", "resolution", "metadata", "content", "task", "tasktype"}
)
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    'application/json; charset="UTF-8"',
    "APPLICATION/JSON",
    "application/json;charset=latin-1",
    "application/json; boundary=x",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "",
]


def _containers(value: Any) -> list[Any]:
    """Every dict and list inside ``value`` (itself included)."""
    out = [value] if isinstance(value, dict | list) else []
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    for child in children:
        out += _containers(child)
    return out


@st.composite
def mutated_bodies(draw: st.DrawFn, bases: tuple[dict[str, Any], ...]) -> Any:
    body: Any = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(_containers(body)))
        if isinstance(target, dict):
            key = draw(st.sampled_from(KNOWN_KEYS) | any_text)
            if draw(st.integers(0, 4)) == 0:
                target.pop(key, None)
            else:
                target[key] = draw(json_values)
        elif target:
            target[draw(st.integers(0, len(target) - 1))] = draw(json_values)
        else:
            target.append(draw(json_values))
    if draw(st.integers(0, 20)) == 0:
        body = draw(json_values)  # not even an object
    return body


HUGE_LITERALS = st.sampled_from(
    [
        "1" + "0" * 4400,
        "-" + "9" * 5000,
        "1" + "0" * 38,
        "1e999",
        "-1e999",
        "1E-400",
        "5e-324",
        "1e-200",
        "-0",
        "1e200",
        "NaN",
        "Infinity",
        "-Infinity",
        "0x10",
        "01",
        "1.",
        ".5",
        "+1",
        "١",
    ]
)


@st.composite
def raw_texts(draw: st.DrawFn, bases: tuple[dict[str, Any], ...]) -> bytes:
    """JSON text mutated below the level json.dumps can write."""
    text = json.dumps(draw(mutated_bodies(bases)) if draw(st.booleans()) else draw(st.sampled_from(bases)))
    kind = draw(
        st.sampled_from(["number", "duplicate", "truncate", "insert", "nest", "oversize", "surrogate"])
    )
    if kind == "number":
        literal = draw(HUGE_LITERALS)
        for field in ("steps", "cfg_scale", "seed", "denoising_strength", "weight", "k", "width"):
            text = text.replace(f'"{field}": ', f'"{field}": {literal}, "_{field}": ', 1)
        if "{" in text:
            text = text.replace("{", '{"context": {"n": ' + literal + "}, ", 1)
    elif kind == "duplicate":
        key = draw(st.sampled_from(["model", "task_type", "input", "prompt", "task", "steps"]))
        text = text.replace("{", f'{{"{key}": 1, ', draw(st.integers(1, 3)))
    elif kind == "truncate":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    elif kind == "insert":
        at = draw(st.integers(0, len(text)))
        raw = text.encode()
        return raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    elif kind == "nest":
        depth = draw(st.integers(20, 5000))
        text = text.replace("{", '{"context": {"d": ' + "[" * depth + "]" * depth + "}, ", 1)
    elif kind == "oversize":
        size = draw(st.integers(60_000, 250_000))
        text = text.replace('"a dog"', json.dumps("a" * size), 1).replace('"sks dog"', json.dumps("b" * size))
    else:
        escape = draw(st.sampled_from(["\\ud800", "\\udfff", "\\ud83d", "\\udc00\\ud800", "\\u0000"]))
        text = text.replace('dog"', f'dog{escape}"', 1).replace('"k"', f'"k{escape}"', 1)
    return text.encode("utf-8", errors="surrogatepass")


def _event(
    method: str,
    path: str,
    *,
    raw: bytes | None = None,
    content_type: str | None = "application/json",
    b64: bool = False,
    query: dict[str, list[str]] | None = None,
    arn: str | None = ACME_ARN,
) -> dict[str, Any]:
    headers = {"Host": "abc.execute-api.us-west-2.amazonaws.com", "X-Forwarded-Proto": "https"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    body: str | None = None
    if raw is not None:
        body = base64.b64encode(raw).decode() if b64 else raw.decode("utf-8", errors="surrogateescape")
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} if query else None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "body": body,
        "isBase64Encoded": b64,
        "requestContext": {
            "requestId": "fuzz",
            "stage": "prod",
            "domainName": "abc.execute-api.us-west-2.amazonaws.com",
            "identity": principal(arn),
        },
    }


class _Ctx:
    function_name = "easel-api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-west-2:123456789012:function:easel-api"
    aws_request_id = "fuzz"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def send(h: Harness, event: dict[str, Any]) -> tuple[int, Any]:
    """One request through the real handler, checked against the property.

    Every write the API attempts goes through the harness' recording clients, so a refused request must
    show none; the table itself is compared whenever a write was attempted (an accepted request, or a
    conditional write that lost with 409), and the queues at the end of the module.
    """
    from lambdas.api.app import handler

    writes = len(h.writes)
    result = handler(event, _Ctx())  # type: ignore[arg-type]
    status = int(result["statusCode"])
    body = json.loads(result["body"])
    h.requests += 1
    h.statuses[status] += 1
    assert status < 500, (status, body, event["httpMethod"], event["path"])
    attempted = h.writes[writes:]
    if status >= 400:
        error = body["error"]
        assert isinstance(error["code"], str) and error["code"], body
        assert isinstance(error["message"], str) and error["message"], body
        assert isinstance(error.get("field"), str) and error["field"], body
        text = json.dumps(error)
        for internal in (h.resources.table, h.resources.tasks_topic_arn, "Traceback", "botocore", ".py"):
            assert internal not in text, body
        assert "publish" not in attempted, body
        if status not in (404, 409):  # a conditional write that lost (cancel of a missing or terminal task)
            assert attempted == [], (attempted, body)
        if attempted:
            assert h.table_digest() == h.digest, body
    elif attempted:
        h.digest = h.table_digest()
    return status, body


@pytest.fixture(scope="module")
def cursor(harness: Harness) -> str:
    """Two tasks of acme and a genuine cursor of its listing (for tampering)."""
    for task_id in ("t0", "t1"):
        status, _ = send(
            harness, _event("POST", "/v1/tasks", raw=json.dumps({**T2I, "id": task_id}).encode())
        )
        assert status in (200, 202)
    status, page = send(harness, _event("GET", "/v1/tasks", query={"limit": ["1"]}))
    assert status == 200 and page["next"]
    return str(page["next"])


@given(body=mutated_bodies((T2I, I2I, TRAIN, FULL)))
def test_submit_with_mutated_bodies(harness: Harness, body: Any) -> None:
    send(harness, _event("POST", "/v1/tasks", raw=json.dumps(body).encode()))


@given(body=mutated_bodies((ALPHA,)))
def test_v1alpha2_with_mutated_bodies(harness: Harness, body: Any) -> None:
    send(harness, _event("POST", "/v1alpha2", raw=json.dumps(body).encode()))


@given(
    raw=raw_texts((T2I, I2I, TRAIN, FULL, ALPHA)),
    path=st.sampled_from(["/v1/tasks", "/v1alpha2"]),
    content_type=st.none() | st.sampled_from(CONTENT_TYPES) | st.text(st.characters(max_codepoint=255)),
    b64=st.booleans(),
)
def test_submit_with_raw_bodies_and_content_types(
    harness: Harness, raw: bytes, path: str, content_type: str | None, b64: bool
) -> None:
    send(harness, _event("POST", path, raw=raw, content_type=content_type, b64=b64))


def _tampered(cursor: str) -> st.SearchStrategy[str]:
    @st.composite
    def tamper(draw: st.DrawFn) -> str:
        at = draw(st.integers(0, len(cursor) - 1))
        kind = draw(st.sampled_from(["flip", "cut", "extend", "swap"]))
        if kind == "flip":
            return cursor[:at] + draw(st.characters(codec="ascii")) + cursor[at + 1 :]
        if kind == "cut":
            return cursor[:at]
        if kind == "extend":
            return cursor + draw(any_text)
        tag = cursor.partition(".")[2]
        forged = base64.urlsafe_b64encode(json.dumps(draw(json_values)).encode()).decode().rstrip("=")
        return f"{forged}.{tag}" if draw(st.booleans()) else forged

    return tamper()


@given(data=st.data())
def test_list_with_generated_queries(harness: Harness, cursor: str, data: st.DataObject) -> None:
    names = st.sampled_from(["status", "limit", "next"]) | any_text
    values = (
        any_text
        | st.sampled_from(
            ["1", "2", "100", "101", "0", "-1", "²", "١٢", "１", "1.0", " 1", "queued", "QUEUED"]
        )
        | st.integers().map(str)
        | _tampered(cursor)
        | st.just(cursor)
    )
    query = data.draw(st.dictionaries(names, st.lists(values, min_size=1, max_size=3), max_size=4))
    arn = data.draw(st.sampled_from([ACME_ARN, ACME_ARN, "arn:aws:iam::123456789012:role/globex-app"]))
    send(harness, _event("GET", "/v1/tasks", query=query, arn=arn))


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
    | st.text(max_size=8),
    template=st.sampled_from(
        [
            "/v1/tasks/{}",
            "/v1/tasks/{}/cancel",
            "/v1/tasks",
            "/v1/models",
            "/v1alpha2",
            "/{}",
            "/v1/tasks/{}/{}",
        ]
    ),
    task_id=st.sampled_from(["t0", "t1", "t0\n", "t1\r\n", "t0\x00", "a" * 65, "%2e%2e", "t0/cancel"])
    | any_text,
    arn=st.sampled_from([ACME_ARN, None, "arn:aws:iam::999999999999:role/other", "*"]) | any_text,
    body=st.none() | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_any_method_path_and_principal(
    harness: Harness, method: str, template: str, task_id: str, arn: str | None, body: bytes | None
) -> None:
    send(harness, _event(method, template.replace("{}", task_id), raw=body, arn=arn))


def test_table_and_queues_hold_only_what_accepted_requests_wrote(harness: Harness, cursor: str) -> None:
    # Runs last in the module: the table is as the last accepted write left it, and the queues hold
    # exactly what the accepted submissions published (each message fans out to one lane).
    assert harness.table_digest() == harness.digest
    assert harness.queue_messages() == harness.writes.count("publish")
    assert harness.requests > 0
