"""How the CLI reports failure: one line naming what is wrong and what to do, a non-zero exit, no traceback.

Every command runs inside :func:`reported` (and :func:`easel.cli.main` catches whatever escapes a
command, click's usage errors included), so each known failure becomes a :class:`CliError`:

    error: no local stack at .easel/local.json; start one with `easel local up` (or pass --state)

Under ``--json`` the same error is one JSON document on stdout, so a script that parses stdout always
gets JSON: ``{"error": {"code": "no_local_stack", "message": "...", "hint": "..."}}``.

Exit codes: 1 the operation failed (the API refused, a task did not succeed, AWS failed), 2 usage or setup
(a bad flag, a missing input, no endpoint, credentials, region or local stack), 130 interrupted.
``EASEL_DEBUG=1`` lets unexpected exceptions through with their traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

import typer

# typer vendors its own click (typer._click): its exceptions and context are the ones raised here.
from typer._click import exceptions as cx
from typer._click.globals import get_current_context

from easel.errors import ConfigError, EaselError

LOCAL_ENV_HINT = 'for the local stack run `eval "$(easel local env)"`'


class CliError(EaselError):
    """A failure to report: ``message`` says what is wrong, ``hint`` what to do about it."""

    def __init__(
        self, message: str, *, hint: str | None = None, code: str = "usage", exit_code: int = 2
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code
        self.exit_code = exit_code


def usage(message: str, hint: str | None = None) -> NoReturn:
    """Refuse the command line at once (exit 2)."""
    raise CliError(message, hint=hint)


def json_wanted(argv: Sequence[str] | None = None) -> bool:
    """Whether the running command (or, outside one, the command line) asked for ``--json``."""
    ctx = get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get("as_json"):
            return True
        ctx = ctx.parent
    return argv is not None and "--json" in argv


def emit(error: CliError, *, as_json: bool) -> None:
    if as_json:
        body = {"code": error.code, "message": error.message, "hint": error.hint}
        sys.stdout.write(json.dumps({"error": body}) + "\n")
        sys.stdout.flush()
        return
    line = f"error: {error.message}" + (f"; {error.hint}" if error.hint else "")
    sys.stderr.write(" ".join(line.split("\n")) + "\n")
    sys.stderr.flush()


def _api_hint(code: str, field: str | None) -> str | None:
    if code in ("unknown_access_key", "invalid_signature", "missing_authentication"):
        return f"the keys do not match the stack: {LOCAL_ENV_HINT}, or check your AWS credentials"
    if code == "invalid_scope":
        return "sign for the stack's region: set AWS_REGION (or --region) to the region it runs in"
    if code == "stale_request":
        return "this machine's clock is off: sync it"
    if code in ("not_found", "task_not_found"):
        return "`easel tasks` lists your tasks"
    if field == "model" or code == "unknown_model":
        return "`easel models` lists the models"
    if code in ("forbidden", "access_denied", "unknown_tenant"):
        return "your principal is not a tenant of this deployment (tenants[].principals in config.yaml)"
    return None


def describe(exc: BaseException) -> CliError | None:
    """The one-line report of a known failure, or None for an unexpected one."""
    from easel.client import ApiError, ClientConfigError, TransportError, WaitTimeout

    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, ClientConfigError):
        text = str(exc)
        hint = f"{LOCAL_ENV_HINT}, or pass --endpoint"
        if "credentials" in text:
            hint = f"{LOCAL_ENV_HINT}, or configure AWS credentials (AWS_PROFILE, `aws sso login`)"
        return CliError(text, hint=hint, code="client_config")
    if isinstance(exc, TransportError):
        return CliError(
            f"cannot reach the API: {exc}",
            hint="is the stack running? (`easel local up`) or check --endpoint/EASEL_ENDPOINT",
            code="unreachable",
            exit_code=1,
        )
    if isinstance(exc, ApiError):
        where = f"{exc.field}: " if exc.field and not exc.message.startswith(exc.field) else ""
        return CliError(
            f"{exc.status} {exc.code}: {where}{exc.message}",
            hint=_api_hint(exc.code, exc.field),
            code=exc.code,
            exit_code=1,
        )
    if isinstance(exc, WaitTimeout):
        return CliError(str(exc), code="timeout", exit_code=1)
    if isinstance(exc, ConfigError):
        return CliError(str(exc), hint="fix config.yaml (or pass --config)", code="config")
    if isinstance(exc, EaselError):
        return CliError(str(exc), code="failed", exit_code=1)
    local = _describe_local(exc)
    if local is not None:
        return local
    aws = _describe_aws(exc)
    if aws is not None:
        return aws
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return CliError(f"{exc.filename}: {exc.strerror}", code="file")
    return None


def _describe_local(exc: BaseException) -> CliError | None:
    # Local mode's errors live in infra/local; import them only when that package is present.
    try:
        from infra.local.errors import LocalError, StackError, StateError
    except ImportError:  # pragma: no cover - an installed CLI without the repository
        return None
    if isinstance(exc, StateError):
        return CliError(
            str(exc), hint="start one with `easel local up` (or pass --state)", code="no_local_stack"
        )
    if isinstance(exc, StackError):
        return CliError(str(exc), code="local_stack")
    if isinstance(exc, LocalError):
        return CliError(str(exc), code="local", exit_code=1)
    return None


def _describe_aws(exc: BaseException) -> CliError | None:
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, bx.NoRegionError):
        return CliError(
            "no AWS region",
            hint="set AWS_REGION, or env.region in config.yaml, or pass --region",
            code="no_region",
        )
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return CliError(
            "no AWS credentials found",
            hint="set AWS_PROFILE (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or run `aws sso login`",
            code="no_credentials",
        )
    if isinstance(exc, bx.EndpointConnectionError):
        return CliError(
            f"cannot reach AWS at {exc.kwargs.get('endpoint_url', '?')}",
            hint="check the network and the region",
            code="unreachable",
            exit_code=1,
        )
    if isinstance(exc, bx.ClientError):
        code = str(dict(exc.response.get("Error", {})).get("Code", "error"))
        hint = None
        if code in ("AccessDenied", "AccessDeniedException", "UnrecognizedClientException"):
            hint = "your credentials may not read this resource (see docs/deploy.md)"
        if code == "ResourceNotFoundException":
            hint = "is the stack deployed in this region? (--config, AWS_REGION)"
        return CliError(f"AWS {exc.operation_name}: {code}", hint=hint, code="aws", exit_code=1)
    if isinstance(exc, bx.BotoCoreError):
        return CliError(f"AWS: {exc}", code="aws", exit_code=1)
    return None


@contextmanager
def reported() -> Iterator[None]:
    """Report known failures of the block as one line (or JSON) and exit with their code."""
    try:
        yield
    except (typer.Exit, typer.Abort, cx.ClickException):
        raise
    except Exception as exc:
        error = describe(exc)
        if error is None:
            raise
        emit(error, as_json=json_wanted())
        raise typer.Exit(error.exit_code) from None


def usage_error(exc: cx.UsageError) -> CliError:
    """Click's refusal of the command line, with the command's help as the hint."""
    path = exc.ctx.command_path if exc.ctx is not None else "easel"
    message = exc.format_message()
    if isinstance(exc, cx.MissingParameter) and exc.param is not None:
        name = exc.param.opts[0] if exc.param.opts else exc.param.name
        if exc.param.param_type_name == "argument":
            name = (exc.param.name or "argument").upper()
        message = f"{name} is required"
    return CliError(message, hint=f"see `{path} -h`", code="usage")


def unexpected(exc: BaseException) -> CliError:
    return CliError(
        f"unexpected {type(exc).__name__}: {exc}",
        hint="rerun with EASEL_DEBUG=1 for the traceback, and report it",
        code="internal",
        exit_code=1,
    )


def debug() -> bool:
    return bool(os.environ.get("EASEL_DEBUG"))
