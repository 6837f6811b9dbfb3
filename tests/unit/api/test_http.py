"""Request reading: content type, size before parsing, JSON oddities, query, tenant mapping, links."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from easel.config import EaselConfig, parse_config
from lambdas.api import http
from lambdas.api.errors import ApiError, BadRequest, Forbidden, PayloadTooLarge, UnsupportedMediaType
from tests.unit.api.conftest import event


def _ev(**kw: Any) -> APIGatewayProxyEvent:
    return APIGatewayProxyEvent(event("POST", "/v1/tasks", **kw))


@pytest.mark.parametrize(
    "ctype",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
    ],
)
def test_json_content_types_accepted(ctype: str) -> None:
    assert http.json_body(_ev(raw=b'{"a": 1}', headers={"Content-Type": ctype}), 1024) == {"a": 1}


@pytest.mark.parametrize(
    "ctype", ["", "text/plain", "application/jsonx", "application/json; charset=latin-1"]
)
def test_other_content_types_are_415(ctype: str) -> None:
    with pytest.raises(UnsupportedMediaType) as err:
        http.json_body(_ev(raw=b"{}", headers={"Content-Type": ctype}), 1024)
    assert err.value.field == "content-type"


def test_size_is_checked_on_the_raw_body_before_parsing() -> None:
    # Invalid JSON over the limit is a 413, not a 400: nothing was parsed.
    with pytest.raises(PayloadTooLarge):
        http.json_body(_ev(raw=b"{" * 2000), 1024)
    # Size counts bytes, not characters.
    with pytest.raises(PayloadTooLarge):
        http.json_body(_ev(raw=('{"p": "' + "é" * 600 + '"}').encode()), 1024)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"", "body"),
        (b"   ", "body"),
        (b"{", "body"),
        (b'{"a": Infinity}', "body"),
        (b'{"a": 1, "a": 2}', "a"),
        (b"\xff", "body"),
        (b"[" * 50 + b"]" * 50, "body"),
    ],
)
def test_bad_json_names_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(BadRequest) as err:
        http.json_body(_ev(raw=raw, b64=True), 4096)  # base64 carries the non-UTF-8 case too
    assert err.value.field == field


def test_invalid_base64_body() -> None:
    ev = event("POST", "/v1/tasks", raw="not base64!", b64=False)
    ev["isBase64Encoded"] = True
    with pytest.raises(BadRequest):
        http.json_body(APIGatewayProxyEvent(ev), 1024)


def test_query_params_reject_unknown_and_repeated() -> None:
    ok = APIGatewayProxyEvent(event("GET", "/v1/tasks", query={"limit": ["5"]}))
    assert http.query_params(ok, {"limit"}) == {"limit": "5"}
    for query, field in (({"x": ["1"]}, "x"), ({"limit": ["1", "2"]}, "limit")):
        with pytest.raises(BadRequest) as err:
            http.query_params(APIGatewayProxyEvent(event("GET", "/v1/tasks", query=query)), {"limit"})
        assert err.value.field == field


def test_tenant_from_principal_globs(two_runtimes_config: EaselConfig) -> None:
    data = two_runtimes_config.model_dump(mode="json")
    data["tenants"][1]["principals"].append("arn:aws:sts::123456789012:assumed-role/Globex/*")
    config = parse_config(data)
    arn = "arn:aws:sts::123456789012:assumed-role/Globex/session-7"
    assert http.caller_tenant(_ev(arn=arn), config) == "globex"
    assert http.caller_tenant(_ev(arn="arn:aws:iam::123456789012:role/acme-worker"), config) == "acme"
    # Matching is case-sensitive, like IAM ARNs.
    with pytest.raises(Forbidden):
        http.caller_tenant(_ev(arn="arn:aws:iam::123456789012:role/ACME-worker"), config)


def test_base_url_variants() -> None:
    ev = _ev()
    assert http.base_url(ev, None) == "https://abc.execute-api.us-west-2.amazonaws.com/prod"
    assert http.base_url(ev, "https://api.example.com/") == "https://api.example.com"
    local = event("GET", "/v1/tasks", headers={"X-Forwarded-Proto": "http"})
    local["requestContext"].update(domainName="127.0.0.1:8787", stage="local")
    assert http.base_url(APIGatewayProxyEvent(local), None) == "http://127.0.0.1:8787"


def test_task_id_pattern() -> None:
    assert http.task_id("abc_DEF-1") == "abc_DEF-1"
    for bad in ("", "a b", "x" * 65, "../etc"):
        with pytest.raises(ApiError):
            http.task_id(bad)
