"""The local tenants' access keys, kept across restarts in ``.easel/credentials.json`` (0600).

    {"version": 1, "tenants": {"<tenant>": {"access_key_id": "AKIAEASEL...", "secret_access_key": "..."}}}

Each ``easel local up`` reuses the keys of the tenants it finds there and mints keys only for new tenants,
so an earlier ``eval "$(easel local env)"`` keeps working after a restart; ``--rotate-credentials`` mints
new keys for every tenant. A malformed file is refused (naming the file), never silently replaced.
"""

from __future__ import annotations

import json
import secrets
import string
from pathlib import Path
from typing import Any

from infra.local.errors import StateError
from infra.local.sigv4 import LocalCredential
from infra.local.state import write_private

VERSION = 1
_ALPHABET = string.ascii_uppercase + string.digits


def mint(tenant: str, principal_arn: str) -> LocalCredential:
    return LocalCredential(
        tenant=tenant,
        access_key_id="AKIAEASEL" + "".join(secrets.choice(_ALPHABET) for _ in range(11)),
        secret_access_key=secrets.token_urlsafe(30)[:40],
        principal_arn=principal_arn,
    )


def load(path: Path) -> dict[str, dict[str, str]]:
    """The kept keys per tenant ({} when the file does not exist yet)."""
    try:
        data: Any = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StateError(
            f"{path}: unreadable local credentials ({exc}); delete it to mint new keys"
        ) from None
    tenants = data.get("tenants") if isinstance(data, dict) else None
    if data.get("version") != VERSION or not isinstance(tenants, dict):
        raise StateError(
            f"{path}: not a local credentials file (version {VERSION}); delete it to mint new keys"
        )
    out: dict[str, dict[str, str]] = {}
    for tenant, keys in tenants.items():
        if not (isinstance(keys, dict) and {"access_key_id", "secret_access_key"} <= keys.keys()):
            raise StateError(f"{path}: tenant '{tenant}' has no access_key_id/secret_access_key")
        out[tenant] = {
            "access_key_id": str(keys["access_key_id"]),
            "secret_access_key": str(keys["secret_access_key"]),
        }
    return out


def ensure(path: Path, principals: dict[str, str], *, rotate: bool = False) -> dict[str, LocalCredential]:
    """One credential per tenant in ``principals`` (tenant -> principal ARN), keyed by access key id.

    Kept keys are reused unless ``rotate``; the file is rewritten only when something changed.
    """
    kept = {} if rotate else load(path)
    out: dict[str, LocalCredential] = {}
    changed = rotate
    for tenant, arn in principals.items():
        keys = kept.get(tenant)
        if keys is None:
            cred = mint(tenant, arn)
            changed = True
        else:
            cred = LocalCredential(tenant, keys["access_key_id"], keys["secret_access_key"], arn)
        out[cred.access_key_id] = cred
    if changed or not path.exists():
        tenants = {
            **{t: k for t, k in kept.items() if t not in principals},  # tenants removed from the config stay
            **{
                c.tenant: {"access_key_id": c.access_key_id, "secret_access_key": c.secret_access_key}
                for c in out.values()
            },
        }
        write_private(
            path, json.dumps({"version": VERSION, "tenants": tenants}, indent=2, sort_keys=True) + "\n"
        )
    return out
