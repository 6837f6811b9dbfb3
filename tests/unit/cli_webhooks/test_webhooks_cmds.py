"""``easel webhooks secret``: the tenant's Standard Webhooks secret, derived like the webhooks Lambda does."""

from __future__ import annotations

import base64

import boto3
import pytest
from typer.testing import CliRunner

from easel.cli import app
from easel.webhook_signing import derive_tenant_secret, sign, verify

MASTER = bytes(range(32))
MASTER_B64 = base64.b64encode(MASTER).decode()


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["webhooks", "secret", *args])
    return result.exit_code, result.stdout, result.stderr


def test_prints_the_tenants_secret_derived_from_the_master_key() -> None:
    code, out, _ = _run("acme", "--master-b64", MASTER_B64)
    assert code == 0
    secret = out.strip()
    assert out == secret + "\n"  # only the secret: easy to pipe
    assert secret == derive_tenant_secret(MASTER, "acme")
    assert secret.startswith("whsec_")
    # What the Lambda signs for this tenant, the tenant verifies with the printed secret.
    lambda_signature = sign(derive_tenant_secret(MASTER, "acme"), "msg_t1_succeeded", 1_700_000_000, b"{}")
    assert verify(secret, "msg_t1_succeeded", 1_700_000_000, b"{}", lambda_signature)


def test_tenants_get_different_secrets() -> None:
    acme = _run("acme", "--master-b64", MASTER_B64)[1]
    globex = _run("globex", "--master-b64", MASTER_B64)[1]
    assert acme != globex


def test_a_generated_alphanumeric_master_key_works() -> None:
    # What Secrets Manager generates for the stack: 44 letters and digits, unpadded base64.
    value = "Abc0" * 11
    code, out, _ = _run("acme", "--master-b64", value)
    assert code == 0
    assert out.strip() == derive_tenant_secret(base64.b64decode(value), "acme")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["acme"], "exactly one of --secret-arn and --master-b64"),
        (["acme", "--master-b64", MASTER_B64, "--secret-arn", "arn:x"], "exactly one of"),
        (["acme", "--master-b64", "abc"], "--master-b64: the master key is not base64"),
        (["acme", "--master-b64", ""], "--master-b64: the master key is empty"),
        (["Acme", "--master-b64", MASTER_B64], "TENANT: 'Acme' is not a tenant id (pattern ^[a-z0-9]"),
    ],
)
def test_usage_errors_exit_2_and_name_the_argument(args: list[str], message: str) -> None:
    code, out, err = _run(*args)
    assert code == 2
    assert out == ""
    assert message in " ".join(err.split())


@pytest.mark.integration
def test_reads_the_master_key_from_secrets_manager(aws_env: str) -> None:
    arn = boto3.client("secretsmanager", region_name="us-west-2").create_secret(
        Name="easel-webhooks", SecretString=MASTER_B64
    )["ARN"]
    code, out, _ = _run("acme", "--secret-arn", arn)
    assert code == 0
    assert out.strip() == derive_tenant_secret(MASTER, "acme")


@pytest.mark.integration
def test_an_unreadable_secret_exits_1(aws_env: str) -> None:
    code, out, err = _run(
        "acme", "--secret-arn", "arn:aws:secretsmanager:us-west-2:123456789012:secret:missing-AbCdEf"
    )
    assert code == 1
    assert out == ""
    assert "ResourceNotFoundException" in err
