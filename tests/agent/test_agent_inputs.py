"""Input refusals through the whole agent: the task fails with a clear reason, one notification, message
deleted; and the pipeline overlap (inputs of N+1 fetched while N generates)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from bench.synthetic_runtime import png
from tests.agent.conftest import Stack, wait_for
from tests.agent.origin import Origin
from tests.agent.test_inputs import StubResolver, _bomb_png

pytestmark = pytest.mark.integration


@pytest.fixture
def victim() -> Iterator[Origin]:
    server = Origin().start()
    yield server
    server.stop()


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin(image=png(64, 64, (9, 9, 9))).start()
    yield server
    server.stop()


def test_input_refusals_fail_the_task_with_reason(stack: Stack, victim: Origin, origin: Origin) -> None:
    bucket = stack.resources.outputs_bucket
    stack.s3.put_object(Bucket=bucket, Key="tenants/globex/inputs/secret.png", Body=png())
    stack.s3.put_object(Bucket=bucket, Key="tenants/acme/inputs/notes.txt", Body=b"just text")
    stack.s3.put_object(Bucket=bucket, Key="tenants/acme/inputs/bomb.png", Body=_bomb_png(20000, 20000))
    v = victim.port
    cases = {
        "loopback": (f"https://127.0.0.1:{v}/img.png", "input_refused", "loopback"),
        "localhost": (f"https://localhost:{v}/img.png", "input_refused", "loopback"),
        "redirect": (f"{origin.url}/redirect?to=http://127.0.0.1:{v}/img.png", "input_refused", "redirect 1"),
        "metadata": ("https://metadata.example.com/latest/meta-data/", "input_refused", "link-local"),
        "private": ("https://intranet.example.com/cat.png", "input_refused", "private address"),
        "file": ("file:///etc/passwd", "input_refused", "scheme 'file'"),
        "http": (f"http://127.0.0.1:{v}/img.png", "input_refused", "scheme 'http'"),
        "tenant": (f"s3://{bucket}/tenants/globex/inputs/secret.png", "input_refused", "tenant prefix"),
        "bucket": ("s3://not-ours/tenants/acme/x.png", "input_refused", "not an allowed input bucket"),
        "notimage": (f"s3://{bucket}/tenants/acme/inputs/notes.txt", "input_invalid", "not a valid PNG"),
        "bomb": (f"s3://{bucket}/tenants/acme/inputs/bomb.png", "input_invalid", "bomb"),
        "missing": (f"s3://{bucket}/tenants/acme/inputs/none.png", "input_invalid", "object not found"),
    }
    resolver = StubResolver(
        {
            "localhost": ["127.0.0.1"],
            "metadata.example.com": ["169.254.169.254"],
            "intranet.example.com": ["10.20.30.40"],
        }
    )
    settings = stack.settings(
        allowed_https_hosts=f"127.0.0.1:{v},localhost:{v},metadata.example.com,intranet.example.com",
        agent_test_insecure_origins=f"http://127.0.0.1:{origin.port}",
    )
    for name, (url, _, _) in cases.items():
        stack.submit(name, task_type="image-to-image", init_images=[url])
    with stack.running(stack.agent(settings, resolver=resolver)):
        results = {name: stack.wait_result(name, "failed") for name in cases}
        wait_for(lambda: stack.queue_counts(stack.normal_url) == (0, 0), 10, "messages deleted")
    for name, (url, code, needle) in cases.items():
        err = results[name]["error"]
        assert err["code"] == code, (name, err)
        assert needle in err["message"], (name, err)
        assert url in err["message"], (name, err)
        assert len(stack.results_for(name)) == 1
    assert victim.hit_count == 0
    assert [p for p, _ in origin.hits] == ["/redirect"]
    assert stack.runtime.generation_calls() == []
    assert resolver.asked.count("metadata.example.com") == 1


def test_https_path_through_test_origin_and_overlap(stack: Stack, origin: Origin) -> None:
    """Inputs of the next task are fetched while the runtime generates the current one, and the previous
    task's result is published while the next one generates."""
    stack.runtime.control.hold_seconds = 1.5
    settings = stack.settings(agent_test_insecure_origins=f"http://127.0.0.1:{origin.port}")
    for i in range(3):
        stack.submit(f"o{i}", task_type="image-to-image", init_images=[f"{origin.url}/img.png?n={i}"])
    with stack.running(stack.agent(settings)):
        published = {tid: stack.wait_result(tid, "succeeded")["_sent_at"] for tid in ("o0", "o1", "o2")}
    calls = stack.runtime.generation_calls()
    # o0 was published while the runtime generated o1 (the finisher ran beside the generation). The
    # publish time is the topic's own timestamp, so how fast the test polls its observer does not matter.
    wall = time.time() - time.monotonic()
    assert calls[1].ended is not None
    assert calls[1].started + wall - 0.01 < published["o0"] < calls[1].ended + wall
    assert all(c.path == "img2img" for c in calls)
    fetched = [t for _, t in origin.hits]
    assert len(fetched) == 3
    # Task N+1's input was fetched before task N's generation ended (not serialized after it).
    assert fetched[1] < calls[0].ended
    assert fetched[2] < calls[1].ended
