"""The tasks table: one definition of the item layout, shared by the API Lambda and the queue agent.

Layout (DynamoDB, on-demand):
    pk            "<tenant>#<id>"             partition key: a task is addressed by tenant AND id, so one
                                               tenant can never read another's task by guessing its id
    tenant        GSI ``by_tenant``  hash      newest-first listing per tenant
    tenant_status GSI ``by_status``  hash      "<tenant>#<status>", listing filtered by status
    created_sk    both GSIs' range key         "<created_at ISO>#<id>"
    fingerprint   request hash for idempotent submit
    notified      last status whose result notification was claimed (dedup of result publishes)
    expires_at    TTL (epoch seconds)
    ...           every other field of the Task object, as native attributes

Status changes are conditional writes (``status IN sources``), so terminal states never change and two
writers racing on one task cannot both win.

Pagination cursors are ``<payload>.<tag>`` (base64url): the payload is the query's LastEvaluatedKey, the tag
an HMAC-SHA256 with the deployment's cursor key over the tenant, the status filter and the payload. A
cursor that was altered, issued to another tenant or for another query fails the tag check
(:class:`InvalidCursor`) before anything reaches DynamoDB.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from easel.clock import iso
from easel.contract.status import TaskStatus, sources_of
from easel.contract.tasks import Task, compact_input
from easel.errors import InvalidCursor, StoreError, StoreUnavailable, TaskConflict, TaskNotFound

GSI_BY_TENANT = "by_tenant"
GSI_BY_STATUS = "by_status"
PARTITION_KEY = "pk"
SORT_ATTR = "created_sk"
TTL_ATTR = "expires_at"

_THROTTLING = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
}
_ser = TypeSerializer()
_de = TypeDeserializer()


def _to_ddb(value: Any) -> dict[str, Any]:
    # DynamoDB wants Decimal for numbers; a JSON round trip turns every float into one.
    return cast(dict[str, Any], _ser.serialize(json.loads(json.dumps(value), parse_float=Decimal)))


def _from_ddb(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_de.deserialize(v)) for k, v in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_plain(v) for v in value]
    return value


def _usage_key(tenant: str, day: str) -> str:
    return f"_usage#{tenant}#{day}"


def _key(tenant: str, task_id: str) -> dict[str, Any]:
    return {PARTITION_KEY: {"S": f"{tenant}#{task_id}"}}


_iso = iso  # the one timestamp format (easel.clock)


def task_to_item(task: Task, *, fingerprint: str | None, retention_days: int) -> dict[str, Any]:
    doc = task.model_dump(mode="json", exclude={"urls", "input"})
    doc["input"] = compact_input(task.input)  # item_to_task restores the defaults
    doc["created_at"] = _iso(task.created_at)
    doc.update(
        {
            PARTITION_KEY: f"{task.tenant}#{task.id}",
            "tenant_status": f"{task.tenant}#{task.status}",
            SORT_ATTR: f"{doc['created_at']}#{task.id}",
            TTL_ATTR: int((task.created_at + timedelta(days=retention_days)).timestamp()),
        }
    )
    if fingerprint is not None:
        doc["fingerprint"] = fingerprint
    return {k: _to_ddb(v) for k, v in doc.items()}


def item_to_task(item: dict[str, Any]) -> Task:
    return Task.model_validate(_from_ddb(item))


class TaskStore:
    """Reads and conditional writes of task items. The boto3 DynamoDB client is injected."""

    def __init__(
        self, client: Any, table_name: str, *, retention_days: int = 30, cursor_key: bytes | None = None
    ) -> None:
        """``cursor_key`` signs pagination cursors; without one, a random key valid in this process only."""
        self._ddb = client
        self._table = table_name
        self._retention_days = retention_days
        self._cursor_key = cursor_key or secrets.token_bytes(32)

    # -- create ---------------------------------------------------------------------------------------
    def create(self, task: Task, fingerprint: str) -> tuple[Task, bool]:
        """Insert ``task`` unless its id exists. Returns ``(task, created)``.

        An existing task with the same fingerprint is returned as ``(existing, False)`` (idempotent
        replay); a different fingerprint raises :class:`TaskConflict`.
        """
        item = task_to_item(task, fingerprint=fingerprint, retention_days=self._retention_days)
        try:
            self._call(
                "put_item",
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": PARTITION_KEY},
            )
            return task, True
        except _ConditionFailed:
            pass
        raw = self._get_raw(task.tenant, task.id)
        if raw is None:  # deleted (TTL) between the two calls: the id is free again
            return self.create(task, fingerprint)
        existing = item_to_task(raw)
        if _from_ddb({"f": raw.get("fingerprint", {"NULL": True})})["f"] != fingerprint:
            raise TaskConflict(f"task '{task.id}' exists with a different request body", existing)
        return existing, False

    # -- read -----------------------------------------------------------------------------------------
    def get(self, tenant: str, task_id: str) -> Task:
        raw = self._get_raw(tenant, task_id)
        if raw is None:
            raise TaskNotFound(tenant, task_id)
        return item_to_task(raw)

    def find(self, tenant: str, task_id: str) -> Task | None:
        raw = self._get_raw(tenant, task_id)
        return None if raw is None else item_to_task(raw)

    def list(
        self,
        tenant: str,
        *,
        status: TaskStatus | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[Task], str | None]:
        """Newest first. ``cursor`` is the opaque ``next`` of the previous page."""
        if status is None:
            index, hash_attr, hash_value = GSI_BY_TENANT, "tenant", tenant
        else:
            index, hash_attr, hash_value = GSI_BY_STATUS, "tenant_status", f"{tenant}#{status}"
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": "#h = :h",
            "ExpressionAttributeNames": {"#h": hash_attr},
            "ExpressionAttributeValues": {":h": {"S": hash_value}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        scope = f"{tenant}\n{status or ''}"
        if cursor:
            start = _open_cursor(self._cursor_key, scope, cursor)
            if set(start) != {PARTITION_KEY, hash_attr, SORT_ATTR} or start[hash_attr]["S"] != hash_value:
                raise InvalidCursor()
            kwargs["ExclusiveStartKey"] = start
        resp = self._call("query", **kwargs)
        tasks = [item_to_task(i) for i in resp.get("Items", [])]
        last = resp.get("LastEvaluatedKey")
        return tasks, (_seal_cursor(self._cursor_key, scope, last) if last else None)

    # -- status changes -------------------------------------------------------------------------------
    def transition(
        self,
        tenant: str,
        task_id: str,
        target: TaskStatus,
        *,
        updates: dict[str, Any] | None = None,
        sources: Iterable[TaskStatus] | None = None,
        count_attempt: bool = False,
    ) -> Task:
        """Move a task to ``target`` if its status is one of ``sources`` (default: the machine's sources).

        Raises :class:`TaskNotFound`, or :class:`TaskConflict` carrying the current task when the status
        did not allow it. ``updates`` sets top-level fields (JSON values) in the same write.
        """
        allowed = sorted(set(sources) if sources is not None else sources_of(target))
        names = {"#status": "status", "#ts": "tenant_status", "#pk": PARTITION_KEY}
        values: dict[str, Any] = {":to": {"S": str(target)}, ":ts": {"S": f"{tenant}#{target}"}}
        sets = ["#status = :to", "#ts = :ts"]
        for i, (field, value) in enumerate((updates or {}).items()):
            names[f"#u{i}"] = field
            values[f":u{i}"] = _to_ddb(value)
            sets.append(f"#u{i} = :u{i}")
        expr = "SET " + ", ".join(sets)
        if count_attempt:
            names["#att"] = "attempts"
            values[":one"] = {"N": "1"}
            values[":zero"] = {"N": "0"}
            expr += ", #att = if_not_exists(#att, :zero) + :one"
        placeholders = []
        for i, s in enumerate(allowed):
            values[f":s{i}"] = {"S": str(s)}
            placeholders.append(f":s{i}")
        try:
            resp = self._call(
                "update_item",
                TableName=self._table,
                Key=_key(tenant, task_id),
                UpdateExpression=expr,
                ConditionExpression=f"attribute_exists(#pk) AND #status IN ({', '.join(placeholders)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except _ConditionFailed:
            current = self.find(tenant, task_id)
            if current is None:
                raise TaskNotFound(tenant, task_id) from None
            raise TaskConflict(
                f"task '{task_id}' is '{current.status}', cannot move to '{target}'", current
            ) from None
        return item_to_task(resp["Attributes"])

    def record_progress(self, tenant: str, task_id: str, progress: dict[str, Any]) -> bool:
        """Set the task's ``progress`` (a :class:`TaskProgress` as JSON) while it is ``processing``.

        False when the task is no longer processing: a progress write never touches a terminal task.
        """
        try:
            self._call(
                "update_item",
                TableName=self._table,
                Key=_key(tenant, task_id),
                UpdateExpression="SET #p = :p",
                ConditionExpression="attribute_exists(#pk) AND #status = :processing",
                ExpressionAttributeNames={"#p": "progress", "#pk": PARTITION_KEY, "#status": "status"},
                ExpressionAttributeValues={
                    ":p": _to_ddb(progress),
                    ":processing": {"S": str(TaskStatus.PROCESSING)},
                },
            )
        except _ConditionFailed:
            return False
        return True

    def mark_dispatched(self, tenant: str, task_id: str, at: datetime) -> None:
        """Record that the task's message was published (see ``Task.dispatched_at``)."""
        if not self._set_marker(
            tenant, task_id, "SET #m = :v", "attribute_exists(#pk)", "dispatched_at", _iso(at)
        ):
            raise TaskNotFound(tenant, task_id)

    def claim_notification(self, tenant: str, task_id: str, status: TaskStatus) -> bool:
        """True exactly once per (task, status): deduplicates result notifications across agents."""
        return self._set_marker(
            tenant,
            task_id,
            "SET #m = :v",
            "attribute_exists(#pk) AND (attribute_not_exists(#m) OR #m <> :v)",
            "notified",
            str(status),
        )

    def release_notification(self, tenant: str, task_id: str, status: TaskStatus) -> bool:
        """Undo a claim whose publish failed, so the next attempt claims and publishes again.

        Conditional on the claim still being ``status``: a later claim (another status) is left alone.
        """
        return self._set_marker(tenant, task_id, "REMOVE #m", "#m = :v", "notified", str(status))

    def _set_marker(
        self, tenant: str, task_id: str, update: str, condition: str, attr: str, value: str
    ) -> bool:
        """One conditional write of a bookkeeping attribute (``#m``, compared with ``:v``); False if the
        condition did not hold."""
        names = {"#m": attr}
        if "#pk" in condition:
            names["#pk"] = PARTITION_KEY
        try:
            self._call(
                "update_item",
                TableName=self._table,
                Key=_key(tenant, task_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":v": {"S": value}},
            )
        except _ConditionFailed:
            return False
        return True

    # -- per-tenant usage (entitlements) ----------------------------------------------------------------
    def count_active(self, tenant: str, *, up_to: int) -> int:
        """Tasks of ``tenant`` queued or processing, counted up to ``up_to`` (enough to compare with a limit).

        Counted on the ``by_status`` index, which is eventually consistent: a burst of concurrent submits can
        overshoot a limit by the burst's size, never by more.
        """
        total = 0
        for status in (TaskStatus.QUEUED, TaskStatus.PROCESSING):
            start: dict[str, Any] | None = None
            while total < up_to:
                kwargs: dict[str, Any] = {
                    "TableName": self._table,
                    "IndexName": GSI_BY_STATUS,
                    "KeyConditionExpression": "#h = :h",
                    "ExpressionAttributeNames": {"#h": "tenant_status"},
                    "ExpressionAttributeValues": {":h": {"S": f"{tenant}#{status}"}},
                    "Select": "COUNT",
                    "Limit": up_to - total,
                }
                if start:
                    kwargs["ExclusiveStartKey"] = start
                resp = self._call("query", **kwargs)
                total += int(resp.get("Count", 0))
                start = resp.get("LastEvaluatedKey")
                if not start:
                    break
        return total

    def charge_images(self, tenant: str, day: str, images: int, *, quota: int) -> int | None:
        """Add ``images`` to the tenant's count for ``day`` (UTC ``YYYY-MM-DD``) if it stays within ``quota``.

        Returns the new count, or None when the charge would pass the quota (nothing is added). One atomic
        conditional write on a usage item (``_usage#<tenant>#<day>``: tenant ids cannot start with ``_``, so
        it never collides with a task) that expires two days later.
        """
        if images > quota:
            return None
        expires = int((datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=2)).timestamp())
        try:
            resp = self._call(
                "update_item",
                TableName=self._table,
                Key={PARTITION_KEY: {"S": _usage_key(tenant, day)}},
                UpdateExpression="ADD #n :n SET #ttl = :ttl",
                ConditionExpression="attribute_not_exists(#n) OR #n <= :room",
                ExpressionAttributeNames={"#n": "images", "#ttl": TTL_ATTR},
                ExpressionAttributeValues={
                    ":n": {"N": str(images)},
                    ":room": {"N": str(quota - images)},
                    ":ttl": {"N": str(expires)},
                },
                ReturnValues="UPDATED_NEW",
            )
        except _ConditionFailed:
            return None
        return int(resp["Attributes"]["images"]["N"])

    def refund_images(self, tenant: str, day: str, images: int) -> None:
        """Take back a charge whose task was not created (idempotent replay, conflict, failure)."""
        # A usage item that expired meanwhile has nothing to take back.
        with contextlib.suppress(_ConditionFailed):
            self._call(
                "update_item",
                TableName=self._table,
                Key={PARTITION_KEY: {"S": _usage_key(tenant, day)}},
                UpdateExpression="ADD #n :n",
                ConditionExpression="attribute_exists(#n)",
                ExpressionAttributeNames={"#n": "images"},
                ExpressionAttributeValues={":n": {"N": str(-images)}},
            )

    # -- plumbing -------------------------------------------------------------------------------------
    def _get_raw(self, tenant: str, task_id: str) -> dict[str, Any] | None:
        resp = self._call("get_item", TableName=self._table, Key=_key(tenant, task_id), ConsistentRead=True)
        item: dict[str, Any] | None = resp.get("Item")
        return item

    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = getattr(self._ddb, op)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise _ConditionFailed from None
            if code in _THROTTLING:
                raise StoreUnavailable(f"{op} on {self._table}: {code}") from exc
            raise StoreError(f"{op} on {self._table}: {code}: {exc}") from exc
        return result


class _ConditionFailed(Exception):
    pass


# Far longer than any cursor we issue (three short key attributes); refused before any decoding.
MAX_CURSOR_CHARS = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _cursor_tag(key: bytes, scope: str, payload: str) -> bytes:
    return hmac.new(key, f"easel-cursor/v1\n{scope}\n{payload}".encode(), hashlib.sha256).digest()


def _seal_cursor(key: bytes, scope: str, last_key: dict[str, Any]) -> str:
    payload = _b64(json.dumps(last_key, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_b64(_cursor_tag(key, scope, payload))}"


def _open_cursor(key: bytes, scope: str, cursor: str) -> dict[str, Any]:
    """The LastEvaluatedKey sealed in ``cursor``, or :class:`InvalidCursor`."""
    if len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
        raise InvalidCursor()
    payload, dot, tag = cursor.partition(".")
    try:
        given = _unb64(tag)
    except (binascii.Error, ValueError):
        raise InvalidCursor() from None
    if not dot or not hmac.compare_digest(given, _cursor_tag(key, scope, payload)):
        raise InvalidCursor()
    # Ours from here on; the shape is still checked, so a key rotation bug cannot reach DynamoDB.
    try:
        data = json.loads(_unb64(payload))
    except (binascii.Error, ValueError):
        raise InvalidCursor() from None
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in data.values()
    ):
        raise InvalidCursor()
    return data
