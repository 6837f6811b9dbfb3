"""The local stack's state file (default ``.easel/local.json``): how scripts and tools find the stack.

    {"version": 1, "pid": <easel local up>, "endpoint": "http://127.0.0.1:PORT", "region": "...",
     "moto_endpoint": "http://127.0.0.1:PORT", "config_file": ".easel/local-config.json",
     "models_dir": ".easel/models", "started_at": "ISO",
     "tenants": {"<tenant>": {"access_key_id", "secret_access_key", "principal_arn"}},
     "resources": <infra.local.provision.Resources.to_json()>,
     "children": {"<runtime>/runtime": {"pid", "port", "restarts", "log"}, "<runtime>/agent": {...},
                  "webhooks": {...}},
     "webhook_secret": "<base64 webhooks master key of this run (EASEL_WEBHOOK_SECRET)>"}

Written atomically (temp file + rename) whenever a child's pid changes; removed on shutdown.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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


def save(state: LocalState, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n")
    os.chmod(tmp, 0o600)  # it holds credentials
    os.replace(tmp, path)


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
