"""Which tenant a caller is: the IAM identity API Gateway reports, matched against ``tenants[].principals``.

With IAM auth, API Gateway puts the caller's ARN in ``requestContext.identity.userArn``. Its shape depends on
how the caller got its credentials:

    IAM user          arn:aws:iam::123456789012:user/<path/>alice           matched as is
    assumed role      arn:aws:sts::123456789012:assumed-role/<role>/<sess>  matched as the role's ARN,
                                                                            arn:aws:iam::123456789012:role/<role>
                                                                            (any session name), and as is
    federated user    arn:aws:sts::123456789012:federated-user/<name>       matched as is
    account root      arn:aws:iam::123456789012:root                        matched as is

So a config entry ``arn:aws:iam::123456789012:role/acme-*`` admits every session of every ``acme-`` role,
as an operator writing role ARNs expects. An assumed-role ARN does not carry the role's IAM path, which is
why the config refuses role patterns with a path (:func:`role_pattern_problem`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Protocol

_ASSUMED_ROLE = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):sts::(?P<account>\d{12}):assumed-role/(?P<role>[^/]+)/.+$"
)
_ROLE_PATTERN = re.compile(r"^arn:[^:]*:iam::[^:]*:role/(?P<rest>.+)$")


class _TenantLike(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def principals(self) -> list[str]: ...


def match_names(caller_arn: str) -> list[str]:
    """The ARNs a caller is matched as: itself, plus the role ARN for an assumed-role session."""
    names = [caller_arn]
    m = _ASSUMED_ROLE.match(caller_arn)
    if m:
        names.append(f"arn:{m['partition']}:iam::{m['account']}:role/{m['role']}")
    return names


def resolve_tenant(caller_arn: str | None, tenants: Iterable[_TenantLike]) -> str | None:
    """The id of the first tenant with a principal pattern matching the caller, or None (unknown caller)."""
    if not caller_arn:
        return None
    names = match_names(caller_arn)
    for tenant in tenants:
        if _any_match(names, tenant.principals):
            return tenant.id
    return None


def _any_match(names: Sequence[str], patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, pattern) for name in names for pattern in patterns)


def role_pattern_problem(pattern: str) -> str | None:
    """Why a principal pattern can never match an assumed-role caller, or None if it is fine."""
    m = _ROLE_PATTERN.match(pattern)
    if m and "/" in m["rest"]:
        return (
            "a role pattern cannot include an IAM path: API Gateway reports assumed roles as "
            "arn:aws:sts::<account>:assumed-role/<role>/<session>, without the path; write role/<role name>"
        )
    return None
