"""API keys through the local gateway over real HTTP, keys minted and revoked by the CLI against moto.

Both tenants of the two-runtime config take API keys (``tenants[].api_keys``). A key maps to the same tenant
as that tenant's SigV4 credentials; another tenant's key sees nothing of it; a revoked key gets 403 on the
very next request (the CLI flushes the gateway's authorizer cache, as it flushes API Gateway's stage cache);
refused keys enqueue nothing; a key never shows up in logs, task records or queue messages.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from easel.apikeys import KeyRecord, KeyStore, digest, mint
from easel.cli import run
from easel.client import EaselClient
from infra.local.stack import LocalStack
from tests.integration.api.helpers import drain, message_counts, t2i, table_items

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "sd_on_eks"


def keys_cli(stack: LocalStack, capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    """``easel keys ... --local`` against this stack; returns (exit code, the --json document, or the
    error document of a failure)."""
    capfd.readouterr()
    code = run(
        [
            "keys",
            *args,
            "--local",
            "--state",
            str(stack.options.state_path),
            "--config",
            str(stack.config_file),
            "--json",
        ]
    )
    printed = capfd.readouterr()
    out = printed.out if code == 0 else printed.out + printed.err
    return code, (json.loads(out) if out.strip() else None)


def create_key(stack: LocalStack, capfd: pytest.CaptureFixture[str], tenant: str) -> str:
    code, doc = keys_cli(stack, capfd, "create", "--tenant", tenant, "--label", f"{tenant} ci")
    assert code == 0, doc
    assert doc["tenant"] == tenant and "key_hash" not in doc
    key: str = doc["key"]
    return key


@pytest.fixture
def http(fresh: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fresh.endpoint, timeout=30) as client:
        yield client


def with_key(
    http: httpx.Client, key: str, method: str, path: str, body: Any = None, **kw: Any
) -> httpx.Response:
    headers = {"x-api-key": key}
    if body is not None:
        kw["content"] = json.dumps(body)
        headers["content-type"] = "application/json"
    return http.request(method, path, headers=headers, **kw)


def test_a_key_submits_for_its_tenant_and_sigv4_sees_the_same_task(
    fresh: LocalStack, http: httpx.Client, acme: EaselClient, capfd: pytest.CaptureFixture[str]
) -> None:
    key = create_key(fresh, capfd, "acme")
    submitted = with_key(http, key, "POST", "/v1/tasks", t2i("sd15"))
    assert submitted.status_code == 202, submitted.text
    task = submitted.json()
    assert (task["tenant"], task["status"]) == ("acme", "queued")
    stored = table_items(fresh)
    assert [i["tenant"]["S"] for i in stored] == ["acme"]
    # One tenant, two ways in: the SigV4 caller of acme reads and lists the task the key created ...
    assert acme.get(task["id"])["id"] == task["id"]
    assert [t["id"] for t in acme.list()["tasks"]] == [task["id"]]
    # ... and the key reads, lists and cancels it.
    assert with_key(http, key, "GET", f"/v1/tasks/{task['id']}").json()["id"] == task["id"]
    listed = with_key(http, key, "GET", "/v1/tasks").json()["tasks"]
    assert [t["id"] for t in listed] == [task["id"]]
    canceled = with_key(http, key, "POST", f"/v1/tasks/{task['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"


def test_the_sdk_and_the_cli_send_the_key(
    fresh: LocalStack, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = create_key(fresh, capfd, "acme")
    with EaselClient(fresh.endpoint, api_key=key) as client:
        task = client.submit(t2i("sd15"))
        assert task["tenant"] == "acme" and client.get(task["id"])["status"] == "queued"
    # `easel tasks` with EASEL_API_KEY and no AWS credentials at all.
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("EASEL_ENDPOINT", fresh.endpoint)
    monkeypatch.setenv("EASEL_API_KEY", key)
    capfd.readouterr()
    assert run(["tasks", "--json"]) == 0
    assert [t["id"] for t in json.loads(capfd.readouterr().out)["tasks"]] == [task["id"]]
    monkeypatch.setenv("EASEL_API_KEY", key[:-1])  # malformed: the gateway's 401, exit 1
    assert run(["tasks", "--json"]) == 1
    assert json.loads(capfd.readouterr().out)["error"]["code"] == "unauthorized"


def test_another_tenants_key_never_reads_or_cancels_this_tenants_tasks(
    fresh: LocalStack, http: httpx.Client, acme: EaselClient, capfd: pytest.CaptureFixture[str]
) -> None:
    task = acme.submit(t2i("sd15"))
    globex_key = create_key(fresh, capfd, "globex")
    got = with_key(http, globex_key, "GET", f"/v1/tasks/{task['id']}")
    assert got.status_code == 404 and got.json()["error"]["code"] == "task_not_found"
    cancel = with_key(http, globex_key, "POST", f"/v1/tasks/{task['id']}/cancel")
    assert cancel.status_code == 404
    assert with_key(http, globex_key, "GET", "/v1/tasks").json()["tasks"] == []
    assert acme.get(task["id"])["status"] == "queued"  # untouched


def test_a_sigv4_request_is_its_signers_tenant_whatever_x_api_key_it_carries(
    fresh: LocalStack, acme: EaselClient, capfd: pytest.CaptureFixture[str]
) -> None:
    globex_key = create_key(fresh, capfd, "globex")
    task = acme.request("POST", "/v1/tasks", json_body=t2i("sd15"), headers={"x-api-key": globex_key})
    assert task["tenant"] == "acme"


def test_a_revoked_key_gets_403_on_the_next_request(
    fresh: LocalStack, http: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    key = create_key(fresh, capfd, "acme")
    key_id = key.split("_")[1]
    assert with_key(http, key, "GET", "/v1/tasks").status_code == 200  # the allow is now cached
    code, doc = keys_cli(fresh, capfd, "revoke", key_id, "--tenant", "acme")
    assert code == 0 and doc["revoked_at"] and doc["cache_flushed"] is True
    refused = with_key(http, key, "POST", "/v1/tasks", t2i("sd15"))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert with_key(http, key, "GET", "/v1/tasks").status_code == 403
    assert sum(message_counts(fresh).values()) == 0 and table_items(fresh) == []
    code, doc = keys_cli(fresh, capfd, "list", "--tenant", "acme")
    assert [(k["key_id"], bool(k["revoked_at"])) for k in doc["keys"]] == [(key_id, True)]


def test_without_the_flush_the_cached_answer_holds_until_flushed(
    fresh: LocalStack, http: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    """What the docs promise when the flush cannot run: the cache (60 s here) bounds the revocation."""
    assert fresh.config.api.api_keys.cache_ttl_seconds == 60
    key = create_key(fresh, capfd, "acme")
    assert with_key(http, key, "GET", "/v1/tasks").status_code == 200
    KeyStore(fresh.client("dynamodb"), fresh.names.api_keys_table).revoke(key.split("_")[1], tenant="acme")
    assert with_key(http, key, "GET", "/v1/tasks").status_code == 200  # cached allow, within its TTL
    assert fresh.key_auth is not None
    fresh.key_auth.flush()
    assert with_key(http, key, "GET", "/v1/tasks").status_code == 403


def test_malformed_unknown_and_foreign_keys_are_refused_with_nothing_enqueued(
    fresh: LocalStack, http: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    good = create_key(fresh, capfd, "acme")
    unknown = mint("acme").key  # well formed, never stored
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")  # a known id, a wrong secret
    orphan = mint("initech")  # stored, but of a tenant that is not in the config
    KeyStore(fresh.client("dynamodb"), fresh.names.api_keys_table).put(orphan.record)
    cases = {"": 401, "abc": 401, good + "x": 401, "é" * 10: 401, unknown: 403, forged: 403, orphan.key: 403}
    for key, status in cases.items():
        reply = http.post(
            "/v1/tasks",
            content=json.dumps(t2i("sd15")),
            headers={"x-api-key": key.encode(), "content-type": "application/json"},
        )
        assert reply.status_code == status, (key, reply.text)
        assert reply.json()["error"]["code"] in ("unauthorized", "forbidden")
    assert sum(message_counts(fresh).values()) == 0 and table_items(fresh) == []


def test_the_cli_refuses_a_tenant_without_keys_and_an_unknown_key_id(
    fresh: LocalStack, capfd: pytest.CaptureFixture[str]
) -> None:
    code, _ = keys_cli(fresh, capfd, "create", "--tenant", "nobody")
    assert code == 2
    code, _ = keys_cli(fresh, capfd, "revoke", "a" * 16, "--tenant", "acme")
    assert code == 1
    # A key of acme is not globex's to revoke.
    key = create_key(fresh, capfd, "acme")
    code, _ = keys_cli(fresh, capfd, "revoke", key.split("_")[1], "--tenant", "globex")
    assert code == 1
    code, doc = keys_cli(fresh, capfd, "list", "--tenant", "acme")
    assert doc["keys"][0]["revoked_at"] is None


def test_a_key_never_appears_in_logs_task_records_or_messages(
    fresh: LocalStack,
    http: httpx.Client,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = create_key(fresh, capfd, "acme")
    secret = key.rsplit("_", 1)[1]
    caplog.set_level(logging.DEBUG)
    task = with_key(http, key, "POST", "/v1/tasks", t2i("sd15", context={"note": "x"})).json()
    with_key(http, key, "GET", f"/v1/tasks/{task['id']}")
    with_key(http, key, "GET", "/v1/tasks/nope")  # the API refuses (404) and logs it
    with_key(http, key + "x", "GET", "/v1/tasks")  # malformed: refused at the gateway and logged
    before_revoke = capfd.readouterr()
    keys_cli(fresh, capfd, "revoke", key.split("_")[1], "--tenant", "acme")
    with_key(http, key, "GET", "/v1/tasks")  # revoked: refused and logged
    messages = drain(fresh)
    after = capfd.readouterr()
    printed = before_revoke.out + before_revoke.err + after.out + after.err
    stores = {
        # Every record of every logger, with its message, arguments and extra fields (what a JSON log line
        # of Powertools would carry).
        "logs": "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records),
        "stdout/stderr": printed,
        "task records": json.dumps(table_items(fresh)),
        "queue messages": json.dumps(messages),
        "task object": json.dumps(task),
        "key records": json.dumps(fresh.client("dynamodb").scan(TableName=fresh.names.api_keys_table)),
    }
    assert sum(len(m) for m in messages.values()) == 1 and len(caplog.records) > 0
    # The API's and the gateway's own log records were captured (among them the refusals).
    assert {"easel-api", "easel.local.gateway"} <= {r.name for r in caplog.records}
    for where, text in stores.items():
        assert secret not in text and key not in text, where
    # What is kept of the key is its digest (and its public id).
    record = KeyRecord.model_validate(
        {k: v["S"] for k, v in json.loads(stores["key records"])["Items"][0].items()}
    )
    assert record.key_hash == digest(key)


def test_a_compat_sample_posts_with_an_api_key_and_answers_in_the_references_shape(
    fresh: LocalStack, http: httpx.Client, acme: EaselClient, capfd: pytest.CaptureFixture[str]
) -> None:
    """The reference's clients send x-api-key and its v1alpha2 bodies unchanged."""
    assert fresh.resources is not None
    key = create_key(fresh, capfd, "acme")
    body = json.loads((SAMPLES / "v1alpha2" / "t2i.json").read_text())
    reply = with_key(http, key, "POST", "/v1alpha2", body)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert {k: answer[k] for k in ("id", "runtime", "output_location")} == {
        "id": "test-t2i",
        "runtime": "sdruntime",
        "output_location": f"s3://{fresh.resources.outputs_bucket}/tenants/acme/output/test-t2i",
    }
    assert [i["tenant"]["S"] for i in table_items(fresh)] == ["acme"]
    # The same body signed by acme is a replay of the same task: one tenant, whichever way it calls.
    replay = acme.submit_v1alpha2(body)
    assert {k: replay[k] for k in ("id", "runtime", "output_location")} == {
        k: answer[k] for k in ("id", "runtime", "output_location")
    }
    assert sum(message_counts(fresh).values()) == 1
