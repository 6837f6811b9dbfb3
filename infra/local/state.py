"""The local stack's state file (default ``.easel/local.json``): how scripts and tools find the stack.

    {"version": 1, "pid": <easel local up>, "endpoint": "http://127.0.0.1:PORT", "region": "...",
     "moto_endpoint": "http://127.0.0.1:PORT", "config_file": ".easel/local-config.json",
     "models_dir": ".easel/models", "started_at": "ISO",
     "tenants": {"<tenant>": {"access_key_id", "secret_access_key", "principal_arn"}},
     "resources": <infra.local.provision.Resources.to_json()>,
     "children": {"<runtime>/runtime": {"pid", "port", "restarts", "log"}, "<runtime>/agent": {...},
                  "webhooks": {...}},
     "webhook_secret": "<base64 webhooks master key of this run (EASEL_WEBHOOK_SECRET)>",
     "admin_token": "<what `easel keys revoke` presents to flush the gateway's authorizer cache>"}

Written atomically (temp file + rename, created 0600: it holds credentials) whenever a child's pid changes;
removed on shutdown by the process that wrote it, never by another one. :func:`running` tells whether the
stack a state file describes is alive (its pid runs and its gateway port answers), so a second
``easel local up`` can say where the first one runs instead of clobbering it.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra.local.errors import StateError
from infra.local.provision import Resources

VERSION = 1
DEFAULT_PATH = Path(".easel/local.json")


@dataclass
class TenantCredentials:
    access_key_id: str
    secret_access_key: str
    principal_arn: str


@dataclass
class ChildState:
    pid: int | None
    port: int | None = None
    restarts: int = 0
    log: str | None = None


@dataclass
class LocalState:
    pid: int
    endpoint: str
    region: str
    moto_endpoint: str
    config_file: str
    models_dir: str
    started_at: str
    tenants: dict[str, TenantCredentials]
    resources: Resources
    children: dict[str, ChildState] = field(default_factory=dict)
    webhook_secret: str = ""
    admin_token: str = ""
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["resources"] = self.resources.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LocalState:
        try:
            if data.get("version") != VERSION:
                raise StateError(f"state file version {data.get('version')!r}, expected {VERSION}")
            return cls(
                **{
                    **data,
                    "tenants": {k: TenantCredentials(**v) for k, v in data["tenants"].items()},
                    "resources": Resources.from_json(data["resources"]),
                    "children": {k: ChildState(**v) for k, v in data.get("children", {}).items()},
                }
            )
        except (KeyError, TypeError) as exc:
            raise StateError(f"state file is malformed: {exc}") from None

    def env_for(self, tenant: str | None = None) -> dict[str, str]:
        """What to export to drive the stack as ``tenant`` (default: the first)."""
        name = tenant or next(iter(self.tenants))
        cred = self.tenants[name]
        return {
            "EASEL_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": cred.access_key_id,
            "AWS_SECRET_ACCESS_KEY": cred.secret_access_key,
            "AWS_REGION": self.region,
        }


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to a file that is 0600 from its creation (it holds credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def save(state: LocalState, path: Path) -> None:
    write_private(path, json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n")


def load(path: Path) -> LocalState:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise StateError(f"no local stack state at {path} (is `easel local up` running?)") from None
    except json.JSONDecodeError as exc:
        raise StateError(f"{path} is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise StateError(f"{path} must hold a JSON object")
    return LocalState.from_json(data)


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def port_answers(url: str, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
            return True
    except OSError:
        return False


def running(path: Path) -> LocalState | None:
    """The stack ``path`` describes if it is alive (pid running, gateway answering); None otherwise."""
    try:
        current = load(path)
    except StateError:
        return None
    if current.pid != os.getpid() and pid_alive(current.pid) and port_answers(current.endpoint):
        return current
    return None
