"""``easel keys create | list | revoke --tenant T``: the API keys of tenants (operator commands).

A key is printed once, at creation; only its SHA-256 digest is stored (easel/apikeys.py). ``list`` shows
ids, labels and dates, never a key or a digest. ``revoke`` marks the key revoked, then flushes the
authorizer cache of the key API's stage (``FlushStageAuthorizersCache``; the local gateway's own cache with
``--local``) so the very next request with the key gets 403; should the flush fail, the cache TTL
(``api.api_keys.cache_ttl_seconds``) bounds how long the key still works, the command says so and exits 1
(running it again retries the flush).

Against AWS the commands use the standard credential chain and need, on the ``<stack>-api-keys`` table,
``dynamodb:PutItem`` (create), ``dynamodb:Query`` on its ``by_tenant`` index (list), ``dynamodb:GetItem``
and ``dynamodb:UpdateItem`` (revoke), plus ``apigateway:GET`` on ``/restapis`` (to find the key API by name
unless ``--api-id``) and ``apigateway:DELETE`` on its stage's ``cache/authorizers`` (the flush).
Exit codes: 0 ok, 1 failure (AWS, unknown key), 2 usage problems.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from easel.cli.errors import CliError

app = typer.Typer(no_args_is_help=True)

_TENANT = typer.Option(..., "--tenant", help="tenant id (tenants[].id in config.yaml)")
_CONFIG = typer.Option(Path("config.yaml"), "--config", help="the Easel config")
_LOCAL = typer.Option(False, "--local", help="the running local stack (its --state file) instead of AWS")
_STATE = typer.Option(Path(".easel/local.json"), "--state", help="local state file (with --local)")
_REGION = typer.Option(
    None, "--region", help="AWS region  [default: $AWS_REGION, else env.region in config.yaml]"
)
_JSON = typer.Option(False, "--json", help="machine-readable output")


@dataclass
class Target:
    """Where the keys live and how to flush the authorizer cache that sits in front of them."""

    config: Any  # EaselConfig (imported lazily)
    store: Any  # KeyStore
    flush: Callable[[], None]
    where: str


def _target(*, local: bool, state: Path, config_path: Path, region: str | None, api_id: str | None) -> Target:
    import boto3

    from easel.apikeys import KeyStore
    from easel.config import load_config
    from easel.naming import Names

    if local:
        from infra.local.state import load
        from infra.local.workers import DUMMY_AWS

        st = load(state)
        config = load_config(config_path if config_path.exists() else Path(st.config_file))
        session = boto3.Session(
            aws_access_key_id=DUMMY_AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_AWS["AWS_SECRET_ACCESS_KEY"],
            region_name=st.region,
        )
        table = st.resources.api_keys_table or Names.of(config).api_keys_table
        store = KeyStore(session.client("dynamodb", endpoint_url=st.moto_endpoint), table)
        return Target(
            config, store, lambda: _flush_local(st.endpoint, st.admin_token), f"local {st.endpoint}"
        )
    config = load_config(config_path)
    chosen = (
        region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or config.env.region
    )
    names = Names.of(config)
    store = KeyStore(boto3.client("dynamodb", region_name=chosen), names.api_keys_table)
    return Target(
        config, store, lambda: _flush_aws(names.key_api, chosen, api_id), f"table {names.api_keys_table}"
    )


def _flush_local(endpoint: str, token: str) -> None:
    import httpx

    from infra.local.gateway import ADMIN_HEADER, FLUSH_PATH

    reply = httpx.post(f"{endpoint}{FLUSH_PATH}", headers={ADMIN_HEADER: token}, timeout=10)
    if reply.status_code != 204:
        raise CliError(f"the local gateway refused the cache flush ({reply.status_code})", exit_code=1)


def _flush_aws(api_name: str, region: str | None, api_id: str | None) -> None:
    import boto3

    client: Any = boto3.client("apigateway", region_name=region)
    if api_id is None:
        found = [
            api["id"]
            for page in client.get_paginator("get_rest_apis").paginate()
            for api in page.get("items", [])
            if api.get("name") == api_name
        ]
        if len(found) != 1:
            raise CliError(
                f"found {len(found)} REST APIs named '{api_name}'; pass --api-id (the KeyApiId stack output)",
                exit_code=1,
            )
        api_id = found[0]
    client.flush_stage_authorizers_cache(restApiId=api_id, stageName="prod")


def _key_tenant(config: Any, tenant: str) -> None:
    index = next((i for i, t in enumerate(config.tenants) if t.id == tenant), None)
    if index is None:
        raise CliError(f"--tenant: no tenant '{tenant}' (tenants: {', '.join(t.id for t in config.tenants)})")
    if config.tenants[index].api_keys is None:
        raise CliError(
            f"--tenant: tenant '{tenant}' takes no API keys; set tenants.{index}.api_keys in the config "
            "(and deploy) first"
        )


@app.command()
def create(
    tenant: str = _TENANT,
    label: str = typer.Option("", "--label", help="a note for `easel keys list` (who or what uses it)"),
    config_path: Path = _CONFIG,
    local: bool = _LOCAL,
    state: Path = _STATE,
    region: str | None = _REGION,
    as_json: bool = _JSON,
) -> None:
    """Create an API key for TENANT and print it (shown this once; only its hash is kept)."""
    from pydantic import ValidationError

    from easel import apikeys
    from easel.cli.errors import reported

    with reported():
        target = _target(local=local, state=state, config_path=config_path, region=region, api_id=None)
        _key_tenant(target.config, tenant)
        try:
            new = apikeys.mint(tenant, label=label)
        except ValidationError:
            raise CliError("--label: at most 64 of A-Z a-z 0-9 space . _ : / @ -") from None
        target.store.put(new.record)
    if as_json:
        typer.echo(json.dumps({**new.record.public(), "key": new.key}, indent=2))
        return
    typer.echo(new.key)
    typer.echo(
        f"key id {new.record.key_id} for tenant {tenant}: store the key now, it is not shown again "
        "(send it as the x-api-key header)",
        err=True,
    )


@app.command("list")
def list_keys(
    tenant: str = _TENANT,
    config_path: Path = _CONFIG,
    local: bool = _LOCAL,
    state: Path = _STATE,
    region: str | None = _REGION,
    as_json: bool = _JSON,
) -> None:
    """List TENANT's keys: ids, labels, creation and revocation times (never the keys)."""
    from easel.cli.errors import reported

    with reported():
        target = _target(local=local, state=state, config_path=config_path, region=region, api_id=None)
        records = target.store.list(tenant)
    if as_json:
        typer.echo(json.dumps({"tenant": tenant, "keys": [r.public() for r in records]}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    out = Table(title=f"API keys of {tenant}")
    for col in ("key id", "label", "created", "revoked"):
        out.add_column(col)
    for r in records:
        out.add_row(r.key_id, r.label, r.created_at, r.revoked_at or "")
    Console().print(out)


@app.command()
def revoke(
    key_id: str = typer.Argument(..., help="the key id (easel keys list)"),
    tenant: str = _TENANT,
    config_path: Path = _CONFIG,
    local: bool = _LOCAL,
    state: Path = _STATE,
    region: str | None = _REGION,
    api_id: str | None = typer.Option(None, "--api-id", help="the KeyApiId stack output (default: by name)"),
    as_json: bool = _JSON,
) -> None:
    """Revoke KEY_ID of TENANT; the next request with it gets 403 (the authorizer cache is flushed)."""
    from easel.apikeys import KEY_ID_PATTERN
    from easel.cli.errors import reported

    if not KEY_ID_PATTERN.fullmatch(key_id):
        with reported():
            raise CliError(f"KEY_ID: '{key_id[:40]}' is not a key id (16 of a-z 2-7; see easel keys list)")
    with reported():
        target = _target(local=local, state=state, config_path=config_path, region=region, api_id=api_id)
        record = target.store.revoke(key_id, tenant=tenant)
        flushed, why = True, ""
        try:
            target.flush()
        except Exception as exc:  # the revocation stands; only its immediacy is at stake
            flushed, why = False, str(exc)
    ttl = target.config.api.api_keys.cache_ttl_seconds
    if as_json:
        typer.echo(json.dumps({**record.public(), "cache_flushed": flushed}, indent=2))
    else:
        typer.echo(f"revoked {key_id} of {tenant} at {record.revoked_at}")
    if not flushed:
        # Exit 1: the revocation is recorded but not yet in force everywhere; running revoke again flushes.
        typer.echo(
            f"error: the authorizer cache was not flushed ({why}); the key keeps working for up to "
            f"{ttl} s (api.api_keys.cache_ttl_seconds); run the command again to retry the flush",
            err=True,
        )
        raise typer.Exit(1)
