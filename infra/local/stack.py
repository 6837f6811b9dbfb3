"""The local stack: moto server + provisioned resources + signed gateway + (optionally) worker processes.

``easel local up`` and ``easel local demo`` run this; integration tests start it with ``workers=False``.
The API handler runs in this process: :meth:`LocalStack.start` hands it its settings object and a boto3
session bound to moto (``lambdas.api.deps.build_deps``), and :meth:`stop` takes them back. The process
environment is neither read for nor written by the stack (worker processes get theirs explicitly).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from easel.config import EaselConfig, load_config, parse_config
from easel.naming import Names
from easel.tracing import make_provider
from infra.local import credentials as local_credentials
from infra.local import state as state_file
from infra.local.errors import StackError
from infra.local.events import ACCOUNT
from infra.local.gateway import Gateway, GatewayServer, TokenBucket
from infra.local.keyauth import KeyAuth
from infra.local.provision import Resources, provision
from infra.local.sigv4 import LocalCredential
from infra.local.state import ChildState, LocalState, TenantCredentials
from infra.local.supervisor import ChildStatus, Supervisor

if TYPE_CHECKING:
    from easel.apikeys import KeyRecord
    from lambdas.api.deps import ApiSettings
from infra.local.workers import (
    DUMMY_AWS,
    ensure_models,
    loopback_origin,
    webhooks_worker_spec,
    worker_specs,
)

log = logging.getLogger("easel.local")
DEFAULT_REGION = "us-east-1"


@dataclass
class StackOptions:
    config_path: Path = Path("config.yaml")
    port: int = 8787
    state_path: Path = state_file.DEFAULT_PATH
    models_dir: Path = Path(".easel/models")
    work_dir: Path = Path(".easel")
    workers: bool = True
    python: str = sys.executable
    grace_seconds: float = 10.0
    # Loopback origins ("http://127.0.0.1:PORT") the local webhooks worker may call despite the SSRF guard
    # (DeliveryPolicy.test_insecure_origins); empty = the deployed policy (https, public addresses only).
    webhook_allow_origins: tuple[str, ...] = ()
    # The tenants' local keys, kept across restarts (default: <work_dir>/credentials.json, 0600).
    credentials_path: Path | None = None
    rotate_credentials: bool = False
    # Record every process's spans under <work_dir>/traces (`easel trace <task-id>` reads them).
    traces: bool = True
    # Runtimes already running (config runtime name -> loopback URL): only their agent is started, against
    # that URL. How a local stack gets a ComfyUI pool (the e2e tests give it the fake ComfyUI server).
    runtime_urls: dict[str, str] = field(default_factory=dict)
    # More environment for every runtime and agent (`EASEL_AGENT_*` settings, e.g. the e2e tests' shorter
    # progress period).
    worker_env: dict[str, str] = field(default_factory=dict)


def principal_arn(tenant: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/easel-local/{tenant}"


def generate_credentials(config: EaselConfig) -> dict[str, LocalCredential]:
    """One fresh credential set per tenant, keyed by access key id."""
    out = {}
    for tenant in config.tenants:
        cred = local_credentials.mint(tenant.id, principal_arn(tenant.id))
        out[cred.access_key_id] = cred
    return out


def with_local_principals(config: EaselConfig, credentials: dict[str, LocalCredential]) -> dict[str, Any]:
    """The config as JSON for the handler, each tenant also mapped to its local principal ARN."""
    data = config.model_dump(mode="json")
    arns = {c.tenant: c.principal_arn for c in credentials.values()}
    for tenant in data["tenants"]:
        tenant["principals"] = [*tenant["principals"], arns[tenant["id"]]]
    parse_config(data, "local config")  # still valid
    return data


class _EndpointSession:
    """A boto3 session whose clients all talk to one endpoint (moto), whatever the environment says."""

    def __init__(self, endpoint: str, region: str) -> None:
        import boto3

        self._session = boto3.session.Session(
            aws_access_key_id=DUMMY_AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_AWS["AWS_SECRET_ACCESS_KEY"],
            region_name=region,
        )
        self._endpoint = endpoint

    def client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self._endpoint)  # type: ignore[call-overload]


class LocalStack:
    def __init__(
        self,
        options: StackOptions,
        *,
        config: EaselConfig | None = None,
        make_model: Callable[[Path], object] | None = None,
    ) -> None:
        self.options = options
        self.config = config or load_config(options.config_path)
        self.region = self.config.env.region or DEFAULT_REGION
        self.names = Names.of(self.config, account=ACCOUNT, region=self.region)
        self._make_model = make_model
        self._moto: Any = None
        self._gateway: GatewayServer | None = None
        self._trace_provider: Any = None
        self._supervisor: Supervisor | None = None
        self.credentials: dict[str, LocalCredential] = {}
        self.resources: Resources | None = None
        self.moto_endpoint = ""
        self.endpoint = ""
        self.config_file = (options.work_dir / "local-config.json").resolve()
        self.models_dir = options.models_dir.resolve()
        self.started_at = ""
        self.children: list[ChildStatus] = []
        self._clients: dict[str, Any] = {}
        self._wrote_state = False  # stop() removes only a state file this stack wrote
        try:
            self.webhook_allow_origins = tuple(loopback_origin(o) for o in options.webhook_allow_origins)
        except ValueError as exc:
            raise StackError(f"--webhook-allow-origin: {exc}") from None
        # The webhooks master key of this run (base64, as EASEL_WEBHOOK_SECRET); in the state file so that
        # `easel webhooks secret TENANT --local` derives the tenants' whsec_ secrets.
        self.webhook_master_b64 = base64.b64encode(secrets.token_bytes(32)).decode()
        # Signs the API's pagination cursors (the Secrets Manager secret's role in AWS); per run, like a
        # redeployed key: a cursor does not outlive the stack that issued it.
        self.cursor_key = secrets.token_urlsafe(32)
        # What `easel keys revoke` presents to flush the gateway's authorizer cache (kept in the 0600 state
        # file, as the operator's AWS credentials are in AWS).
        self.admin_token = secrets.token_urlsafe(32)
        self.key_auth: KeyAuth | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        # Before anything is written: another stack on this state file or this port stays untouched.
        self._refuse_if_taken()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
        try:
            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._moto.start()
            host, port = self._moto.get_host_and_port()
            self.moto_endpoint = f"http://{host}:{port}"
            self.credentials = local_credentials.ensure(
                self.credentials_path,
                {t.id: principal_arn(t.id) for t in self.config.tenants},
                rotate=self.options.rotate_credentials,
            )
            self.options.work_dir.mkdir(parents=True, exist_ok=True)
            self.config_file.write_text(
                json.dumps(with_local_principals(self.config, self.credentials), indent=2)
            )
            self.resources = self.provision()
            self._install_handler()
            from lambdas.api.app import handler

            throttle = self.config.api.throttle
            tracer = None
            if self.options.traces:
                # This process's own provider (not the global one): the gateway's request spans.
                self._trace_provider = make_provider("easel-api", self.trace_env())
                tracer = self._trace_provider.get_tracer("easel.local.gateway")
            self.key_auth = KeyAuth(self.config, self._lookup_key)
            self._gateway = GatewayServer(
                Gateway(
                    handler,
                    self.credentials,
                    self.region,
                    throttle=TokenBucket(throttle.rate_limit, throttle.burst_limit),
                    tracer=tracer,
                    key_auth=self.key_auth,
                    admin_token=self.admin_token,
                ),
                host="127.0.0.1",
                port=self.options.port,
            )
            self._gateway.start()
            self.endpoint = self._gateway.url
            self.started_at = datetime.now(UTC).isoformat()
            if self.options.workers:
                self._start_workers()
            self.write_state()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.stop()
            self._supervisor = None
        if self._gateway is not None:
            self._gateway.stop()
            self._gateway = None
        if self._trace_provider is not None:
            self._trace_provider.shutdown()
            self._trace_provider = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        self._clients = {}
        self._uninstall_handler()
        if self._wrote_state:
            state_file.remove(self.options.state_path)
            self._wrote_state = False

    @property
    def traces_dir(self) -> Path:
        return (self.options.work_dir / "traces").resolve()

    def trace_env(self) -> dict[str, str]:
        """``EASEL_TRACES`` of every process of this stack: spans as JSON lines under :attr:`traces_dir`."""
        return {"EASEL_TRACES": f"file:{self.traces_dir}"} if self.options.traces else {}

    @property
    def credentials_path(self) -> Path:
        return self.options.credentials_path or self.options.work_dir / "credentials.json"

    def _refuse_if_taken(self) -> None:
        other = state_file.running(self.options.state_path)
        if other is not None:
            raise StackError(
                f"a local stack already runs at {other.endpoint} (pid {other.pid}, state "
                f'{self.options.state_path}); use it (`eval "$(easel local env)"`), stop it with '
                "`easel local down`, or start another one with --state and --port"
            )
        if self.options.port:
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                probe.bind(("127.0.0.1", self.options.port))
            except OSError as exc:
                raise StackError(
                    f"port {self.options.port} on 127.0.0.1 is taken ({exc.strerror}); "
                    "pass --port 0 to pick a free one"
                ) from None
            finally:
                probe.close()

    # -- pieces ---------------------------------------------------------------------------------------
    def provision(self) -> Resources:
        return provision(self.config, self.names, self.session())

    def session(self) -> _EndpointSession:
        return _EndpointSession(self.moto_endpoint, self.region)

    def client(self, service: str) -> Any:
        """A cached boto3 client for moto (creating one costs tens of milliseconds)."""
        if service not in self._clients:
            self._clients[service] = self.session().client(service)
        return self._clients[service]

    def reset(self) -> None:
        """Empty moto and provision again (tests): same names, so the running handler keeps working."""
        import httpx

        httpx.post(f"{self.moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
        self.resources = self.provision()
        if self.key_auth is not None:
            self.key_auth.flush()

    def _lookup_key(self, key_id: str) -> KeyRecord | None:
        """The authorizer's one read: the key's item in the emulator's keys table."""
        from easel.apikeys import KeyStore

        return KeyStore(self.client("dynamodb"), self.names.api_keys_table).get(key_id)

    def handler_settings(self) -> ApiSettings:
        """The API handler's settings here: the emulator's names, this stack's config, its cursor key and the
        loopback origins webhooks may use (as the webhooks worker delivers over http)."""
        from lambdas.api.deps import ApiSettings

        assert self.resources is not None
        return ApiSettings(
            table_name=self.resources.table,
            tasks_topic_arn=self.resources.tasks_topic_arn,
            outputs_bucket=self.resources.outputs_bucket,
            config_file=self.config_file,
            cursor_key=self.cursor_key,
            webhook_test_insecure_origins=",".join(self.webhook_allow_origins),
        )

    def _install_handler(self) -> None:
        """Give the in-process API handler its dependencies directly: settings and a session bound to the
        emulator (nothing is read from, or written to, this process's environment)."""
        from lambdas.api.deps import build_deps, set_deps
        from lambdas.api.telemetry import emit_metrics

        emit_metrics(False)  # EMF lines are for CloudWatch; locally they would only clutter the terminal
        set_deps(build_deps(self.handler_settings(), session=self.session()))

    def _uninstall_handler(self) -> None:
        if self.resources is None:
            return
        from lambdas.api.deps import set_deps
        from lambdas.api.telemetry import emit_metrics

        set_deps(None)
        emit_metrics(True)

    def _start_workers(self) -> None:
        assert self.resources is not None
        self.models_dir.mkdir(parents=True, exist_ok=True)
        external = self.options.runtime_urls
        made = ensure_models(self.config, self.models_dir, self._make_model, external)
        for path in made:
            log.info("generated tiny model %s", path)
        specs = worker_specs(
            self.config,
            self.resources,
            models_dir=self.models_dir,
            moto_endpoint=self.moto_endpoint,
            python=self.options.python,
            extra_env={**self.trace_env(), **self.options.worker_env},
            external=external,
        )
        specs.append(
            webhooks_worker_spec(
                self.resources,
                moto_endpoint=self.moto_endpoint,
                master_b64=self.webhook_master_b64,
                allow_origins=self.webhook_allow_origins,
                python=self.options.python,
                extra_env=self.trace_env(),
            )
        )
        self._supervisor = Supervisor(
            specs,
            log_dir=(self.options.work_dir / "logs").resolve(),
            grace_seconds=self.options.grace_seconds,
            on_change=self._children_changed,
        )
        self._supervisor.start()

    def _children_changed(self, children: list[ChildStatus]) -> None:
        self.children = children
        if self.endpoint:
            self.write_state()

    # -- state ----------------------------------------------------------------------------------------
    def state(self) -> LocalState:
        if self.resources is None:
            raise StackError("the local stack is not started")
        return LocalState(
            pid=os.getpid(),
            endpoint=self.endpoint,
            region=self.region,
            moto_endpoint=self.moto_endpoint,
            config_file=str(self.config_file),
            models_dir=str(self.models_dir),
            started_at=self.started_at,
            tenants={
                c.tenant: TenantCredentials(c.access_key_id, c.secret_access_key, c.principal_arn)
                for c in self.credentials.values()
            },
            resources=self.resources,
            children={
                c.name: ChildState(pid=c.pid, port=c.port, restarts=c.restarts, log=c.log)
                for c in self.children
            },
            webhook_secret=self.webhook_master_b64,
            admin_token=self.admin_token,
        )

    def write_state(self) -> None:
        state_file.save(self.state(), self.options.state_path)
        self._wrote_state = True

    def tenant_credentials(self, tenant: str | None = None) -> LocalCredential:
        creds = list(self.credentials.values())
        if tenant is None:
            return creds[0]
        for c in creds:
            if c.tenant == tenant:
                return c
        raise StackError(f"no local tenant '{tenant}'")
