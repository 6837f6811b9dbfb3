"""REST proxy events (payload 1.0) from local requests, and handler results back to HTTP."""

from __future__ import annotations

import base64

from infra.local.events import from_proxy_result, proxy_event


def _event(**kw: object) -> dict[str, object]:
    args: dict[str, object] = {
        "method": "post",
        "path": "/v1/tasks",
        "query": "limit=2&status=a&status=b",
        "headers": [("host", "127.0.0.1:8787"), ("x-multi", "1"), ("x-multi", "2")],
        "body": b'{"a": 1}',
        "principal_arn": "arn:aws:iam::123456789012:user/easel-local/acme",
        "access_key_id": "AKIA1",
        "source_ip": "127.0.0.1",
        "host": "127.0.0.1:8787",
    }
    args.update(kw)
    return proxy_event(**args)  # type: ignore[arg-type]


def test_event_has_the_rest_proxy_shape() -> None:
    ev = _event()
    assert ev["httpMethod"] == "POST" and ev["path"] == "/v1/tasks" and ev["resource"] == "/{proxy+}"
    assert ev["pathParameters"] == {"proxy": "v1/tasks"}
    assert ev["queryStringParameters"] == {"limit": "2", "status": "b"}
    assert ev["multiValueQueryStringParameters"] == {"limit": ["2"], "status": ["a", "b"]}
    assert ev["multiValueHeaders"]["x-multi"] == ["1", "2"]  # type: ignore[index]
    assert ev["headers"]["X-Forwarded-Proto"] == "http"  # type: ignore[index]
    assert ev["body"] == '{"a": 1}' and ev["isBase64Encoded"] is False
    ctx = ev["requestContext"]
    assert ctx["identity"]["userArn"].endswith("/acme")  # type: ignore[index]
    assert ctx["stage"] == "local" and ctx["domainName"] == "127.0.0.1:8787"  # type: ignore[index]


def test_binary_body_is_base64_and_empty_query_is_none() -> None:
    ev = _event(body=b"\xff\x00", query="")
    assert ev["isBase64Encoded"] is True
    assert base64.b64decode(ev["body"]) == b"\xff\x00"  # type: ignore[arg-type]
    assert ev["queryStringParameters"] is None and ev["multiValueQueryStringParameters"] is None


def test_results_become_responses() -> None:
    resp = from_proxy_result(
        {"statusCode": 201, "multiValueHeaders": {"Set": ["a", "b"]}, "headers": {"X": "1"}, "body": "hi"}
    )
    assert (resp.status, resp.body) == (201, b"hi")
    assert ("Set", "a") in resp.headers and ("Set", "b") in resp.headers and ("X", "1") in resp.headers
    b64 = from_proxy_result(
        {"statusCode": 200, "body": base64.b64encode(b"\x01").decode(), "isBase64Encoded": True}
    )
    assert b64.body == b"\x01"
    assert from_proxy_result({"nope": 1}).status == 502
