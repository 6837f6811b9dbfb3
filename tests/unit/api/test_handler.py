"""The API handler end to end over the real task store (moto), with a fake publisher and presigner."""

from __future__ import annotations

import json

import pytest

from easel.contract import TaskOutput, TaskStatus
from easel.errors import StoreUnavailable
from lambdas.api.deps import Deps
from tests.unit.api.conftest import GLOBEX_ARN, FakePublisher, event, invoke

REQ = {"task_type": "text-to-image", "model": "sd15", "input": {"prompt": "a dog", "steps": 4}}


def _publisher(deps: Deps) -> FakePublisher:
    assert isinstance(deps.publisher, FakePublisher)
    return deps.publisher


def test_submit_stores_publishes_and_returns_202(deps: Deps) -> None:
    status, body = invoke(event("POST", "/v1/tasks", body=REQ))
    assert status == 202
    assert (body["status"], body["tenant"], body["runtime"]) == ("queued", "acme", "sd15")
    stored = deps.store.get("acme", body["id"])
    assert stored.input.model_dump() == body["input"]
    [message] = _publisher(deps).messages
    assert (message.id, message.runtime, message.priority) == (body["id"], "sd15", "normal")
    base = "https://abc.execute-api.us-west-2.amazonaws.com/prod"
    assert body["urls"] == {
        "get": f"{base}/v1/tasks/{body['id']}",
        "cancel": f"{base}/v1/tasks/{body['id']}/cancel",
    }


def test_trace_context_is_forwarded_in_the_queue_message(deps: Deps, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793")
    invoke(event("POST", "/v1/tasks", body=REQ, headers={"traceparent": parent, "tracestate": "k=v"}))
    [message] = _publisher(deps).messages
    assert message.trace_context == {
        "traceparent": parent,
        "tracestate": "k=v",
        "x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793",
    }


def test_without_a_caller_trace_the_lambdas_xray_trace_is_the_w3c_parent(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's and runtime's spans (OTLP -> ADOT -> X-Ray) join the API's own X-Ray trace."""
    monkeypatch.setenv(
        "_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    )
    invoke(event("POST", "/v1/tasks", body=REQ))
    [message] = _publisher(deps).messages
    assert message.trace_context["traceparent"] == "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"


def test_api_log_lines_are_the_one_json_format_with_the_xray_trace_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import logging

    from aws_lambda_powertools import Logger

    from lambdas.logformat import EaselLogFormatter

    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8")
    out = io.StringIO()
    # A service of its own: Powertools shares one logging.Logger per service name (the app's is set up).
    logger = Logger(
        service="easel-log-test",
        logger_formatter=EaselLogFormatter("easel-log-test"),
        logger_handler=logging.StreamHandler(out),
    )
    logger.append_keys(function_name="easel-api")
    logger.info("dispatch failed", extra={"task_id": "t1"})
    logger.remove_keys(["function_name"])
    logger.info("later")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert {k: first[k] for k in ("level", "service", "msg", "task_id", "trace_id", "function_name")} == {
        "level": "INFO",
        "service": "easel-log-test",
        "msg": "dispatch failed",
        "task_id": "t1",
        "trace_id": "5759e988bd862e3fe1be46a994272793",
        "function_name": "easel-api",
    }
    assert "function_name" not in second and second["trace_id"] == first["trace_id"]


def test_malformed_traceparent_is_dropped(deps: Deps) -> None:
    invoke(event("POST", "/v1/tasks", body=REQ, headers={"traceparent": "garbage"}))
    assert "traceparent" not in _publisher(deps).messages[0].trace_context


def test_replay_returns_200_and_publishes_once(deps: Deps) -> None:
    req = {**REQ, "id": "job-1"}
    assert invoke(event("POST", "/v1/tasks", body=req))[0] == 202
    status, body = invoke(event("POST", "/v1/tasks", body=req))
    assert status == 200
    assert body["dispatched_at"] is not None
    assert [m.id for m in _publisher(deps).messages] == ["job-1"]


def test_replay_republishes_a_queued_task_never_dispatched(deps: Deps) -> None:
    from easel.contract import parse_task_request, request_fingerprint
    from easel.lifecycle import queued_task

    # A crash between the write and the publish leaves a queued task with no dispatch mark.
    request = parse_task_request({**REQ, "id": "job-3"})
    deps.store.create(queued_task(request, tenant="acme", runtime="sd15"), request_fingerprint(request))
    assert invoke(event("POST", "/v1/tasks", body={**REQ, "id": "job-3"}))[0] == 200
    assert [m.id for m in _publisher(deps).messages] == ["job-3"]
    assert invoke(event("POST", "/v1/tasks", body={**REQ, "id": "job-3"}))[0] == 200
    assert len(_publisher(deps).messages) == 1
    deps.store.transition("acme", "job-3", TaskStatus.PROCESSING)
    status, body = invoke(event("POST", "/v1/tasks", body={**REQ, "id": "job-3"}))
    assert (status, body["status"]) == (200, "processing")
    assert len(_publisher(deps).messages) == 1


def test_publish_failure_fails_the_task_with_dispatch_failed(deps: Deps) -> None:
    _publisher(deps).fail = True
    status, body = invoke(event("POST", "/v1/tasks", body={**REQ, "id": "job-2"}))
    assert status == 503
    assert body["error"]["code"] == "dispatch_failed"
    task = deps.store.get("acme", "job-2")
    assert task.status is TaskStatus.FAILED
    assert task.error is not None and task.error.code == "dispatch_failed"
    assert task.completed_at is not None


def test_store_unavailable_is_503_not_500(deps: Deps, monkeypatch: pytest.MonkeyPatch) -> None:
    def throttled(*_: object, **__: object) -> None:
        raise StoreUnavailable("put_item on easel2-tasks: ThrottlingException")

    monkeypatch.setattr(deps.store, "create", throttled)
    status, body = invoke(event("POST", "/v1/tasks", body=REQ))
    assert (status, body["error"]["code"]) == (503, "service_unavailable")


def test_a_bug_is_a_json_500_without_details(deps: Deps, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(deps.store, "get", boom)
    status, body = invoke(event("GET", "/v1/tasks/abc"))
    assert status == 500
    assert body == {"error": {"code": "internal_error", "message": "internal server error"}}


@pytest.mark.parametrize(
    "arn", [None, "arn:aws:iam::123456789012:role/initech-app", "arn:aws:iam::999:role/acme-x"]
)
def test_unmapped_principal_is_403(deps: Deps, arn: str | None) -> None:
    status, body = invoke(event("GET", "/v1/models", arn=arn))
    assert (status, body["error"]["code"]) == (403, "unknown_principal")
    status, _ = invoke(event("POST", "/v1/tasks", body=REQ, arn=arn))
    assert status == 403
    assert _publisher(deps).messages == []


def test_other_tenant_gets_404(deps: Deps) -> None:
    _, task = invoke(event("POST", "/v1/tasks", body=REQ))
    assert invoke(event("GET", f"/v1/tasks/{task['id']}", arn=GLOBEX_ARN))[0] == 404
    assert invoke(event("POST", f"/v1/tasks/{task['id']}/cancel", arn=GLOBEX_ARN))[0] == 404
    assert deps.store.get("acme", task["id"]).status is TaskStatus.QUEUED


def test_succeeded_task_has_presigned_urls_for_its_own_outputs_only(deps: Deps) -> None:
    invoke(event("POST", "/v1/tasks", body={**REQ, "id": "done-1"}))
    bucket = deps.settings.outputs_bucket
    own = f"s3://{bucket}/tenants/acme/tasks/done-1/0.png"
    foreign = f"s3://{bucket}/tenants/globex/tasks/x/0.png"
    other_bucket = "s3://someone-elses-bucket/tenants/acme/tasks/done-1/0.png"
    deps.store.transition("acme", "done-1", TaskStatus.PROCESSING)
    output = TaskOutput(images=[own, foreign, other_bucket]).model_dump()
    deps.store.transition("acme", "done-1", TaskStatus.SUCCEEDED, updates={"output": output})
    status, body = invoke(event("GET", "/v1/tasks/done-1"))
    assert status == 200
    ttl = deps.config.api.url_ttl_seconds
    assert body["output"]["urls"] == [
        f"https://signed.example/{bucket}/tenants/acme/tasks/done-1/0.png?ttl={ttl}"
    ]


def test_cancel_moves_queued_to_canceled_then_409(deps: Deps) -> None:
    _, task = invoke(event("POST", "/v1/tasks", body=REQ))
    status, body = invoke(event("POST", f"/v1/tasks/{task['id']}/cancel"))
    assert (status, body["status"]) == (200, "canceled")
    status, body = invoke(event("POST", f"/v1/tasks/{task['id']}/cancel"))
    assert (status, body["error"]["status"]) == (409, "canceled")


def test_processing_task_can_be_canceled(deps: Deps) -> None:
    _, task = invoke(event("POST", "/v1/tasks", body=REQ))
    deps.store.transition("acme", task["id"], TaskStatus.PROCESSING)
    assert invoke(event("POST", f"/v1/tasks/{task['id']}/cancel"))[1]["status"] == "canceled"


def test_submit_emits_a_tasks_submitted_metric(
    deps: Deps, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "EaselTest")
    invoke(event("POST", "/v1/tasks", body={**REQ, "model": "dreamshaper"}))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [emf] = [line for line in lines if "TasksSubmitted" in line]
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "EaselTest"
    assert (emf["task_type"], emf["runtime"], emf["TasksSubmitted"]) == ("text-to-image", "community", [1.0])


def test_base64_body_is_accepted(deps: Deps) -> None:
    status, _ = invoke(event("POST", "/v1/tasks", raw=json.dumps(REQ).encode(), b64=True))
    assert status == 202


def test_body_exactly_at_the_limit_passes_the_size_check(deps: Deps) -> None:
    limit = deps.config.api.limits.max_body_bytes
    raw = json.dumps(REQ).encode()
    padded = raw[:-1] + b" " * (limit - len(raw)) + b"}"
    assert len(padded) == limit
    assert invoke(event("POST", "/v1/tasks", raw=padded))[0] == 202
    over = raw[:-1] + b" " * (limit - len(raw) + 1) + b"}"
    assert invoke(event("POST", "/v1/tasks", raw=over))[0] == 413


def test_method_not_allowed_lists_the_allowed_methods(deps: Deps) -> None:
    from lambdas.api.app import handler
    from tests.unit.api.conftest import Ctx

    result = handler(event("DELETE", "/v1/tasks/abc"), Ctx())  # type: ignore[arg-type]
    assert result["statusCode"] == 405
    assert result["multiValueHeaders"]["Allow"] == ["GET"]
