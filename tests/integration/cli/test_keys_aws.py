"""``easel keys`` against AWS (no ``--local``): the deployed table by its fixed name, over real HTTP to moto.

moto has no ``FlushStageAuthorizersCache``; the flush itself is checked with a fake API Gateway client, and
against moto the revoke shows what an operator sees when the flush cannot run: the revocation is recorded,
the command names the cache TTL that bounds it and exits 1.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from easel.apikeys import KeyStore, digest
from easel.cli import keys_cmds, run
from easel.config import EaselConfig
from easel.naming import Names
from infra.local.provision import Resources
from tests.conftest import TWO_RUNTIMES_CONFIG

pytestmark = pytest.mark.integration


def _keys(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(["keys", *args, "--config", str(TWO_RUNTIMES_CONFIG), "--json"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_create_list_revoke_against_the_deployed_table(
    provisioned: tuple[EaselConfig, Names, Resources],
    aws_session: boto3.Session,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, names, _ = provisioned
    code, out, _ = _keys(capsys, "create", "--tenant", "globex", "--label", "batch")
    assert code == 0
    created = json.loads(out)
    store = KeyStore(aws_session.client("dynamodb"), names.api_keys_table)
    stored = store.get(created["key_id"])
    assert stored is not None and stored.key_hash == digest(created["key"]) and stored.tenant == "globex"
    code, out, _ = _keys(capsys, "list", "--tenant", "globex")
    listed = json.loads(out)["keys"]
    assert [k["key_id"] for k in listed] == [created["key_id"]] and created["key"] not in out
    assert "key_hash" not in out
    # No key API in moto to flush: recorded, reported, exit 1.
    code, out, err = _keys(capsys, "revoke", created["key_id"], "--tenant", "globex")
    assert code == 1
    assert "not flushed" in err and "60 s" in err and "easel2-key-api" in err
    record = store.get(created["key_id"])
    assert record is not None and record.revoked
    assert json.loads(out)["cache_flushed"] is False


class FakeApiGateway:
    def __init__(self, apis: list[dict[str, str]]) -> None:
        self.apis = apis
        self.flushed: list[dict[str, str]] = []

    def get_paginator(self, name: str) -> Any:
        assert name == "get_rest_apis"
        apis = self.apis

        class Pages:
            def paginate(self) -> list[dict[str, Any]]:
                return [{"items": apis[:1]}, {"items": apis[1:]}]

        return Pages()

    def flush_stage_authorizers_cache(self, **kwargs: str) -> None:
        self.flushed.append(kwargs)


def test_the_flush_finds_the_key_api_by_name_or_takes_its_id(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeApiGateway([{"id": "aaa", "name": "easel-api"}, {"id": "kkk", "name": "easel-key-api"}])
    monkeypatch.setattr(boto3, "client", lambda service, **_: fake if service == "apigateway" else None)
    keys_cmds._flush_aws("easel-key-api", "us-west-2", None)
    keys_cmds._flush_aws("easel-key-api", "us-west-2", "given")
    assert fake.flushed == [
        {"restApiId": "kkk", "stageName": "prod"},
        {"restApiId": "given", "stageName": "prod"},
    ]
    with pytest.raises(keys_cmds.CliError, match="found 0 REST APIs named 'other-key-api'; pass --api-id"):
        keys_cmds._flush_aws("other-key-api", "us-west-2", None)
