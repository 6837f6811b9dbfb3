"""The API fuzz suite's harness: the real handler over a provisioned moto server, and what it observes.

Profiles (hypothesis settings, chosen with ``EASEL_FUZZ_PROFILE``):
    ci    (default) 120 examples per property (about 700 requests), under two minutes: ``make test``
    long  4,200 examples per property, over 20,000 requests in all: ``make fuzz`` (docs/development.md)

Every request goes through ``lambdas.api.app.handler`` with the real task store (DynamoDB on moto) and the
real SNS publisher (the tasks topic on moto, fanned out to every lane queue). The harness records each
write the API attempts (DynamoDB put/update/delete, SNS publish) through the only two clients the API
holds, and keeps a digest of the table; the session summary prints the request and status counts.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from hypothesis import HealthCheck, settings

from easel.config import EaselConfig, load_config
from easel.naming import Names
from easel.store import TaskStore
from infra.local.provision import Resources, provision
from lambdas.api.deps import ApiSettings, Deps, S3Presigner, SnsPublisher, set_deps
from tests.conftest import TWO_RUNTIMES_CONFIG

_COMMON = {
    "deadline": None,  # moto's latency is not the property under test
    "database": None,  # no .hypothesis directory in the worktree
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    "print_blob": True,
}
settings.register_profile("ci", max_examples=120, **_COMMON)
settings.register_profile("long", max_examples=4200, **_COMMON)
# An environment variable rather than --hypothesis-profile: this conftest loads after that option is read.
settings.load_profile(os.environ.get("EASEL_FUZZ_PROFILE", "ci"))

WRITES = frozenset({"put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items"})
ACME_ARN = "arn:aws:iam::123456789012:role/acme-app"


class _Recording:
    """A boto3 client whose write calls are recorded (then forwarded unchanged)."""

    def __init__(self, client: Any, calls: list[str], writes: frozenset[str]) -> None:
        self._client = client
        self._calls = calls
        self._writes = writes

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name in self._writes:

            def recorded(*args: Any, **kwargs: Any) -> Any:
                self._calls.append(name)
                return attr(*args, **kwargs)

            return recorded
        return attr


@dataclass(repr=False)
class Harness:
    resources: Resources
    config: EaselConfig
    ddb: Any
    sqs: Any
    writes: list[str] = field(default_factory=list)
    digest: str = ""  # the table as the last accepted write left it
    statuses: Counter[int] = field(default_factory=Counter)
    requests: int = 0

    def __repr__(self) -> str:  # hypothesis prints the fixtures of a failing case
        return f"Harness(table={self.resources.table!r}, requests={self.requests})"

    def table_digest(self) -> str:
        items: list[Any] = []
        kwargs: dict[str, Any] = {"TableName": self.resources.table, "ConsistentRead": True}
        while True:
            resp = self.ddb.scan(**kwargs)
            items.extend(resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return json.dumps(sorted(items, key=lambda i: i["pk"]["S"]), sort_keys=True)

    def queue_messages(self) -> int:
        urls = [self.resources.unroutable_queue_url]
        for lanes in self.resources.lanes.values():
            for lane in lanes.values():
                urls += [lane.queue_url, lane.dlq_url]
        total = 0
        for url in urls:
            attrs = self.sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            total += int(attrs["ApproximateNumberOfMessages"]) + int(
                attrs["ApproximateNumberOfMessagesNotVisible"]
            )
        return total


_harnesses: list[Harness] = []


@pytest.fixture(scope="module")
def harness(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    from lambdas.api.telemetry import logger

    config = load_config(TWO_RUNTIMES_CONFIG)
    with pytest.MonkeyPatch.context() as mp:
        httpx.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
        for name, value in {
            "AWS_ENDPOINT_URL": moto_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-west-2",
            "AWS_REGION": "us-west-2",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_DISABLED": "1",
        }.items():
            mp.setenv(name, value)
        mp.delenv("AWS_PROFILE", raising=False)
        session = boto3.Session(region_name="us-west-2")
        names = Names.of(config, region="us-west-2")
        resources = provision(config, names, session)
        ddb = session.client("dynamodb")
        h = Harness(resources=resources, config=config, ddb=ddb, sqs=session.client("sqs"))
        h.digest = h.table_digest()
        settings_ = ApiSettings(
            table_name=resources.table,
            tasks_topic_arn=resources.tasks_topic_arn,
            outputs_bucket=resources.outputs_bucket,
            config_file=Path(tmp_path_factory.mktemp("fuzz")) / "unused.json",
            cursor_key="fuzz-cursor-key",
        )
        set_deps(
            Deps(
                settings=settings_,
                config=config,
                store=TaskStore(_Recording(ddb, h.writes, WRITES), resources.table, cursor_key=b"fuzz"),
                publisher=SnsPublisher(
                    _Recording(session.client("sns"), h.writes, frozenset({"publish"})),
                    resources.tasks_topic_arn,
                ),
                presigner=S3Presigner(session.client("s3")),
            )
        )
        level = logger.log_level
        logger.setLevel("ERROR")  # thousands of refused requests would flood the captured output
        try:
            yield h
        finally:
            logger.setLevel(level)
            set_deps(None)
            _harnesses.append(h)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _harnesses:
        return
    total = sum(h.requests for h in _harnesses)
    statuses: Counter[int] = Counter()
    for h in _harnesses:
        statuses.update(h.statuses)
    line = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
    profile = settings.default.max_examples
    terminalreporter.write_line(
        f"API fuzz: {total} generated requests through the handler (max_examples {profile}); {line}"
    )


def principal(arn: str | None = ACME_ARN) -> dict[str, Any]:
    return {"userArn": arn} if arn else {}
