"""The API through the local gateway with SigV4-signed requests, against a real moto server."""

from __future__ import annotations

import json

import pytest

from easel.client import ApiError, EaselClient
from easel.contract import parse_queue_message, routing_attributes, sns_attributes
from infra.local.stack import LocalStack
from tests.integration.api.helpers import call, drain, lane_queues, message_counts, t2i, table_items

pytestmark = pytest.mark.integration


def _only_nonempty(found: dict[str, list[dict[str, object]]]) -> dict[str, int]:
    return {name: len(msgs) for name, msgs in found.items() if msgs}


# -- routing ----------------------------------------------------------------------------------------
def test_task_for_a_model_lands_only_in_its_runtimes_normal_lane(
    acme: EaselClient, fresh: LocalStack
) -> None:
    task = acme.submit(t2i("sd15"))
    found = drain(fresh)
    assert _only_nonempty(found) == {"sd15-normal": 1}
    message = found["sd15-normal"][0]
    parsed = parse_queue_message(json.dumps(message["body"]))
    assert (parsed.id, parsed.tenant, parsed.runtime, parsed.model) == (task["id"], "acme", "sd15", "sd15")
    assert message["attributes"] == {
        "runtime": "sd15",
        "model": "sd15",
        "priority": "normal",
        "task_type": "text-to-image",
        "tenant": "acme",
    }


def test_lane_messages_carry_the_tenant_as_message_group_for_fair_share(
    acme: EaselClient, globex: EaselClient, fresh: LocalStack
) -> None:
    """SQS fair queues key on MessageGroupId: every lane message is grouped by its tenant."""
    submitted = {acme.submit(t2i("sd15"))["id"]: "acme", globex.submit(t2i("sd15"))["id"]: "globex"}
    sqs = fresh.client("sqs")
    url = lane_queues(fresh)["sd15-normal"]
    groups = {}
    for _ in range(10):
        for m in sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["MessageGroupId"]
        ).get("Messages", []):
            groups[json.loads(m["Body"])["id"]] = m["Attributes"]["MessageGroupId"]
        if len(groups) == 2:
            break
    assert groups == submitted


def test_high_priority_lands_in_the_high_lane_of_the_models_runtime(
    acme: EaselClient, fresh: LocalStack
) -> None:
    acme.submit(t2i("dreamshaper", priority="high"))
    acme.submit(t2i("realvis", priority="low"))  # low shares the normal lane
    found = drain(fresh)
    assert _only_nonempty(found) == {"community-high": 1, "community-normal": 1}
    assert found["community-high"][0]["body"]["model"] == "dreamshaper"
    assert found["community-normal"][0]["body"]["model"] == "realvis"


def test_message_for_an_unknown_runtime_lands_in_unroutable(acme: EaselClient, fresh: LocalStack) -> None:
    task = acme.submit(t2i("sd15"))
    drain(fresh)
    assert fresh.resources is not None
    attrs = {**routing_attributes_of(task), "runtime": "ghost"}
    fresh.client("sns").publish(
        TopicArn=fresh.resources.tasks_topic_arn,
        Message=json.dumps({"id": task["id"]}),
        MessageAttributes=sns_attributes(attrs),
    )
    found = drain(fresh)
    assert _only_nonempty(found) == {"unroutable": 1}
    assert found["unroutable"][0]["body"] == {"id": task["id"]}


@pytest.mark.parametrize(
    ("missing", "runtime"),
    [
        (("runtime",), "sd15"),
        (("priority",), "sd15"),
        (("priority",), "community"),
        (("runtime", "priority"), ""),
    ],
)
def test_message_missing_a_routing_attribute_lands_in_unroutable(
    acme: EaselClient, fresh: LocalStack, missing: tuple[str, ...], runtime: str
) -> None:
    task = acme.submit(t2i("sd15"))
    drain(fresh)
    assert fresh.resources is not None
    attrs = {**routing_attributes_of(task), "runtime": runtime}
    for name in missing:
        del attrs[name]
    fresh.client("sns").publish(
        TopicArn=fresh.resources.tasks_topic_arn,
        Message=json.dumps({"id": task["id"]}),
        MessageAttributes=sns_attributes(attrs),
    )
    found = drain(fresh)
    assert _only_nonempty(found) == {"unroutable": 1}
    # The same message with every attribute still reaches its lane, and only its lane.
    fresh.client("sns").publish(
        TopicArn=fresh.resources.tasks_topic_arn,
        Message=json.dumps({"id": task["id"]}),
        MessageAttributes=sns_attributes({**routing_attributes_of(task), "runtime": runtime or "sd15"}),
    )
    assert _only_nonempty(drain(fresh)) == {f"{runtime or 'sd15'}-normal": 1}


def routing_attributes_of(task: dict[str, object]) -> dict[str, str]:
    from easel.contract import Task

    return routing_attributes(Task.model_validate(task))


# -- idempotency ------------------------------------------------------------------------------------
def test_same_id_and_body_twice_is_one_task(acme: EaselClient, fresh: LocalStack) -> None:
    body = t2i("sd15", id="order-42")
    first = call(acme, "POST", "/v1/tasks", json_body=body)
    second = call(acme, "POST", "/v1/tasks", json_body=body)
    assert first.status == second.status == 200  # Reply maps any 2xx to 200: see the test below
    assert first.body["id"] == second.body["id"] == "order-42"
    assert first.body["created_at"] == second.body["created_at"]
    assert len(table_items(fresh)) == 1
    found = drain(fresh)
    # One task, one message: the replay found the task already dispatched and published nothing.
    assert _only_nonempty(found) == {"sd15-normal": 1}
    assert found["sd15-normal"][0]["body"]["id"] == "order-42"


def test_replay_status_codes_202_then_200(fresh: LocalStack) -> None:
    import httpx

    from easel.client import sign_request
    from tests.integration.api.helpers import client_for

    cred = fresh.tenant_credentials("acme")
    from botocore.credentials import Credentials

    body = json.dumps(t2i("sd15", id="replay-1")).encode()
    statuses = []
    for _ in range(2):
        url = f"{fresh.endpoint}/v1/tasks"
        headers = sign_request(
            "POST",
            url,
            body=body,
            headers={"Content-Type": "application/json"},
            credentials=Credentials(cred.access_key_id, cred.secret_access_key),
            region=fresh.region,
        )
        statuses.append(httpx.post(url, content=body, headers=headers).status_code)
    assert statuses == [202, 200]
    with client_for(fresh, "acme") as client:
        assert client.get("replay-1")["status"] == "queued"


def test_same_id_with_a_different_body_is_409_and_changes_nothing(
    acme: EaselClient, fresh: LocalStack
) -> None:
    acme.submit(t2i("sd15", id="order-43"))
    drain(fresh)
    reply = call(acme, "POST", "/v1/tasks", json_body=t2i("sd15", id="order-43", priority="high"))
    assert reply.status == 409
    assert reply.error["code"] == "task_conflict" and reply.error["field"] == "id"
    assert acme.get("order-43")["priority"] == "normal"
    assert sum(message_counts(fresh).values()) == 0


def test_replay_of_a_canceled_task_is_not_republished(acme: EaselClient, fresh: LocalStack) -> None:
    body = t2i("sd15", id="order-44")
    acme.submit(body)
    acme.cancel("order-44")
    drain(fresh)
    assert acme.submit(body)["status"] == "canceled"
    assert sum(message_counts(fresh).values()) == 0


# -- cancel -------------------------------------------------------------------------------------------
def test_cancel_of_a_queued_task(acme: EaselClient, fresh: LocalStack) -> None:
    task = acme.submit(t2i("sd15"))
    canceled = acme.cancel(task["id"])
    assert canceled["status"] == "canceled" and canceled["completed_at"] is not None
    assert acme.get(task["id"])["status"] == "canceled"
    again = call(acme, "POST", f"/v1/tasks/{task['id']}/cancel")
    assert again.status == 409
    assert again.error["code"] == "not_cancelable" and again.error["status"] == "canceled"


# -- list -------------------------------------------------------------------------------------------
def test_list_paginates_newest_first_with_an_opaque_cursor(acme: EaselClient, fresh: LocalStack) -> None:
    submitted = [acme.submit(t2i("sd15", id=f"page-{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = acme.list(limit=2, next=cursor)
        pages += 1
        assert len(page["tasks"]) <= 2
        seen.extend(t["id"] for t in page["tasks"])
        cursor = page["next"]
        if not cursor:
            break
        assert pages < 10
    assert seen == list(reversed(submitted))
    assert pages >= 3


def test_list_filters_by_status(acme: EaselClient, fresh: LocalStack) -> None:
    ids = [acme.submit(t2i("sd15"))["id"] for _ in range(3)]
    acme.cancel(ids[1])
    assert [t["id"] for t in acme.list(status="canceled")["tasks"]] == [ids[1]]
    assert [t["id"] for t in acme.list(status="queued")["tasks"]] == [ids[2], ids[0]]


def test_a_cursor_of_another_listing_is_refused(acme: EaselClient, globex: EaselClient) -> None:
    for _ in range(3):
        acme.submit(t2i("sd15"))
        globex.submit(t2i("sd15"))
    cursor = acme.list(limit=1)["next"]
    assert cursor
    reply = call(globex, "GET", "/v1/tasks", params={"limit": "1", "next": cursor})
    assert reply.status == 400 and reply.error["field"] == "next"


# -- tenant isolation -------------------------------------------------------------------------------
def test_tenants_never_see_or_cancel_each_others_tasks(acme: EaselClient, globex: EaselClient) -> None:
    mine = acme.submit(t2i("sd15", id="shared-id"))
    assert mine["tenant"] == "acme"
    for method, path in (("GET", "/v1/tasks/shared-id"), ("POST", "/v1/tasks/shared-id/cancel")):
        reply = call(globex, method, path)
        assert reply.status == 404, (method, path)
        assert reply.error["field"] == "id"
    assert globex.list()["tasks"] == []
    assert acme.get("shared-id")["status"] == "queued"
    # The same client id is independent per tenant.
    theirs = globex.submit(t2i("dreamshaper", id="shared-id"))
    assert (theirs["tenant"], theirs["model"]) == ("globex", "dreamshaper")
    assert acme.get("shared-id")["model"] == "sd15"


# -- links, models, compat ------------------------------------------------------------------------------
def test_task_urls_point_back_at_the_gateway(acme: EaselClient, fresh: LocalStack) -> None:
    task = acme.submit(t2i("sd15"))
    assert task["urls"] == {
        "get": f"{fresh.endpoint}/v1/tasks/{task['id']}",
        "cancel": f"{fresh.endpoint}/v1/tasks/{task['id']}/cancel",
    }


def test_models_lists_the_registry_and_limits(acme: EaselClient, fresh: LocalStack) -> None:
    data = acme.models()
    assert {(m["name"], m["runtime"]) for m in data["models"]} == {
        (m.name, m.runtime) for m in fresh.config.models
    }
    assert data["limits"]["max_body_bytes"] == fresh.config.api.limits.max_body_bytes


def test_v1alpha2_request_is_normalized_and_routed(acme: EaselClient, fresh: LocalStack) -> None:
    body = {
        "task": {
            "metadata": {
                "id": "alpha-1",
                "runtime": "community",
                "tasktype": "text-to-image",
                "prefix": "output",
            },
            "content": {
                "alwayson_scripts": {"sd_model_checkpoint": "dreamshaper-8.safetensors"},
                "prompt": "A dog",
                "steps": 16,
                "width": 512,
                "height": 512,
            },
        }
    }
    reply = acme.submit_v1alpha2(body)
    task = reply["task"]
    assert (reply["id"], task["model"], reply["runtime"]) == ("alpha-1", "dreamshaper", "community")
    # The sample's prefix, inside the tenant's own prefix.
    assert reply["output_location"] == f"s3://{fresh.resources.outputs_bucket}/tenants/acme/output/alpha-1"  # type: ignore[union-attr]
    assert _only_nonempty(drain(fresh)) == {"community-normal": 1}


# -- dispatch failure -------------------------------------------------------------------------------
def test_publish_failure_marks_the_task_failed_and_returns_503(acme: EaselClient, fresh: LocalStack) -> None:
    assert fresh.resources is not None
    fresh.client("sns").delete_topic(TopicArn=fresh.resources.tasks_topic_arn)
    reply = call(acme, "POST", "/v1/tasks", json_body=t2i("sd15", id="lost-1"))
    assert reply.status == 503
    assert reply.error["code"] == "dispatch_failed" and reply.error["id"] == "lost-1"
    task = acme.get("lost-1")
    assert task["status"] == "failed" and task["error"]["code"] == "dispatch_failed"


# -- authentication -----------------------------------------------------------------------------------
def test_unsigned_and_wrongly_signed_requests_get_403(fresh: LocalStack) -> None:
    import httpx

    body = json.dumps(t2i("sd15")).encode()
    unsigned = httpx.post(
        f"{fresh.endpoint}/v1/tasks", content=body, headers={"content-type": "application/json"}
    )
    assert unsigned.status_code == 403
    assert unsigned.json()["error"]["code"] == "missing_authentication"
    cred = fresh.tenant_credentials("acme")
    wrong = EaselClient(
        fresh.endpoint,
        region=fresh.region,
        access_key_id=cred.access_key_id,
        secret_access_key="not-the-secret",
    )
    with pytest.raises(ApiError) as err:
        wrong.submit(t2i("sd15"))
    assert (err.value.status, err.value.code) == (403, "invalid_signature")
    stranger = EaselClient(
        fresh.endpoint, region=fresh.region, access_key_id="AKIAUNKNOWN", secret_access_key="x"
    )
    with pytest.raises(ApiError) as err:
        stranger.models()
    assert (err.value.status, err.value.code) == (403, "unknown_access_key")
    assert table_items(fresh) == []
    assert sum(message_counts(fresh).values()) == 0


def test_stale_signature_gets_403(fresh: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime

    import botocore.auth

    from tests.integration.api.helpers import client_for

    real = botocore.auth.get_current_datetime
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: real() - datetime.timedelta(minutes=6))
    with client_for(fresh, "acme") as client, pytest.raises(ApiError) as err:
        client.models()
    assert (err.value.status, err.value.code) == (403, "stale_request")
