"""cdk-nag acknowledgments with a written reason, and the checks that enforce them.

cdk-nag 3 reports through CDK's policy-validation plugins; a finding is acknowledged with
``Validations.of(scope).acknowledge(...)``, which covers ``scope`` and everything below it. Every
acknowledgment in this app goes through :func:`acknowledge`, which refuses a reason shorter than
``MIN_REASON_WORDS`` words, so a suppression always says *why* the finding does not apply.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import aws_cdk as cdk
from constructs import IConstruct

MIN_REASON_WORDS = 11


def acknowledge(scope: IConstruct, rule_ids: str | Iterable[str], reason: str) -> None:
    """Acknowledge one or more cdk-nag findings (``AwsSolutions-IAM5[Resource::*]`` style) on ``scope``."""
    words = len(reason.split())
    if words < MIN_REASON_WORDS:
        raise ValueError(
            f"acknowledgment reason for {rule_ids!r} has {words} words; write at least {MIN_REASON_WORDS}"
        )
    ids = [rule_ids] if isinstance(rule_ids, str) else list(rule_ids)
    for rule_id in ids:
        cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule_id, reason=reason))


def nag_resource(scope: IConstruct, value: str) -> str:
    """How cdk-nag prints a resource in a finding id (``AwsSolutions-IAM5[Resource::<this>]``).

    A port of cdk-nag's ``flattenCfnReference``: ``Ref`` becomes ``<Name>``, ``Fn::GetAtt`` becomes
    ``<LogicalId.Attr>``, ``Fn::Join`` is joined. Building acknowledgment ids from the same ARN expression
    the grant used keeps them free of hard-coded logical ids. Only for values of ``scope``'s own stack.
    """
    return _flatten(cdk.Stack.of(scope).resolve(value))


def _flatten(node: Any) -> str:
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return str(delimiter).join(_flatten(item) for item in items)
        if "Fn::Sub" in node:
            return _flatten(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{_flatten(resource)}.{_flatten(attribute)}>"
        if "Fn::ImportValue" in node:
            return _flatten(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{_flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))
