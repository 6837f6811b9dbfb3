"""``easel webhooks secret TENANT``: print the Standard Webhooks signing secret of one tenant.

Every tenant's secret (``whsec_...``) is derived from the deployment's webhooks master key
(:func:`easel.webhook_signing.derive_tenant_secret`), so no per-tenant secret is stored anywhere: an
operator derives it here and hands it to the tenant, whose receiver verifies the ``webhook-signature``
header with it. The master key comes from the Secrets Manager secret the stack creates (output
``WebhookSecretArn``; read with the standard AWS credential chain), from the running local stack's state
file (``--local``: ``easel local up`` generates a master key per run), or from its base64 value.
Exit codes: 0 ok, 1 the secret could not be read, 2 usage problems.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(no_args_is_help=True)
err_console = Console(stderr=True)


@app.command()
def secret(
    tenant: str = typer.Argument(..., help="tenant id (tenants[].id in config.yaml)"),
    secret_arn: str | None = typer.Option(
        None, "--secret-arn", help="the WebhookSecretArn stack output (read from Secrets Manager)"
    ),
    master_b64: str | None = typer.Option(
        None, "--master-b64", help="the master key itself, base64 (local mode: EASEL_WEBHOOK_SECRET)"
    ),
    region: str | None = typer.Option(None, "--region", help="default: the region in --secret-arn"),
    local: bool = typer.Option(
        False, "--local", help="the running local stack's master key (from its state file, see --state)"
    ),
    state: Path = typer.Option(Path(".easel/local.json"), "--state", help="local stack state file"),
) -> None:
    """Print TENANT's webhook signing secret (whsec_...), derived from the webhooks master key."""
    # Imported here: the CLI loads the upper layers only for the commands that need them.
    from easel.config import TENANT_ID
    from easel.webhook_signing import derive_tenant_secret

    if not re.fullmatch(TENANT_ID, tenant):
        _usage(f"TENANT: '{tenant}' is not a tenant id (pattern {TENANT_ID})")
    if [secret_arn is not None, master_b64 is not None, local].count(True) != 1:
        _usage("give exactly one of --secret-arn and --master-b64 (or --local)")
    if secret_arn is not None:
        value = _read_secret(secret_arn, region)
        source = "--secret-arn"
    elif local:
        value, source = _read_local(state, tenant), "--local"
    else:
        assert master_b64 is not None
        value, source = master_b64, "--master-b64"
    try:
        # Decoded exactly as the webhooks Lambda decodes it (lambdas.webhooks.app), so the secrets agree.
        master = base64.b64decode(value)
    except (binascii.Error, ValueError) as exc:
        _usage(f"{source}: the master key is not base64 ({exc})")
    if not master:
        _usage(f"{source}: the master key is empty")
    typer.echo(derive_tenant_secret(master, tenant))


def _read_secret(secret_id: str, region: str | None) -> str:
    import boto3  # only this path needs AWS
    from botocore.exceptions import BotoCoreError, ClientError

    parts = secret_id.split(":")
    if region is None and secret_id.startswith("arn:") and len(parts) > 3 and parts[3]:
        region = parts[3]
    try:
        client: Any = boto3.client("secretsmanager", region_name=region)
        value = client.get_secret_value(SecretId=secret_id)["SecretString"]
    except (BotoCoreError, ClientError) as exc:
        err_console.print(f"[red]error:[/red] {escape(f'--secret-arn {secret_id}: {exc}')}", highlight=False)
        raise typer.Exit(1) from None
    return str(value)


def _read_local(path: Path, tenant: str) -> str:
    from infra.local import state as state_file
    from infra.local.errors import StateError

    try:
        current = state_file.load(path)
    except StateError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    if not current.webhook_secret:
        err_console.print(
            f"[red]error:[/red] {escape(str(path))} holds no webhooks master key", highlight=False
        )
        raise typer.Exit(1)
    if tenant not in current.tenants:
        _usage(f"TENANT: no tenant '{tenant}' in the local stack (tenants: {', '.join(current.tenants)})")
    return current.webhook_secret


def _usage(message: str) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(2)
