"""Small pieces of the agent on their own: settings, backoff, request mapping, runtime error mapping,
notification claims, telemetry records."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from easel.contract import GenerationInput, TaskRequest, TaskStatus
from queue_agent.errors import (
    AwsUnavailable,
    ModelMissing,
    PermanentError,
    RetryableError,
    RuntimeFault,
    RuntimeRejected,
    RuntimeUnavailable,
    aws_call,
)
from queue_agent.lanes import ExponentialBackoff
from queue_agent.notify import Notifier
from queue_agent.runtimes import RuntimeRequest
from queue_agent.runtimes.health import RuntimeHealth
from queue_agent.runtimes.webui import WebUiRuntime
from queue_agent.runtimes.webui_bodies import runtime_body
from queue_agent.settings import AgentSettings
from queue_agent.telemetry import JsonFormatter, task_done_record

REQUIRED = {
    "EASEL_RUNTIME": "sd15",
    "EASEL_HIGH_QUEUE_URL": "http://q/high",
    "EASEL_NORMAL_QUEUE_URL": "http://q/normal",
    "EASEL_TABLE_NAME": "tasks",
    "EASEL_OUTPUTS_BUCKET": "outs",
    "EASEL_RESULTS_TOPIC_ARN": "arn:aws:sns:us-east-1:000000000000:results",
    "EASEL_MODELS": '{"sd15": "sd15", "dreamshaper": "dreamshaper-8.safetensors"}',
}


# -- settings ---------------------------------------------------------------------------------------------------
def test_settings_from_the_documented_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in REQUIRED.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("EASEL_INPUT_BUCKETS", "in-a, in-b")
    monkeypatch.setenv("EASEL_ALLOWED_HTTPS_HOSTS", "Images.Example.com.,cdn.example.com")
    monkeypatch.setenv("EASEL_MAX_INPUT_BYTES", "1024")
    monkeypatch.setenv("EASEL_TASK_TIMEOUT_SECONDS", "60")
    monkeypatch.setenv("EASEL_VISIBILITY_TIMEOUT_SECONDS", "120")
    monkeypatch.setenv("EASEL_MAX_RECEIVE_COUNT", "5")
    monkeypatch.setenv("EASEL_AGENT_PORT", "9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    s = AgentSettings()  # type: ignore[call-arg]
    assert s.models == {"sd15": "sd15", "dreamshaper": "dreamshaper-8.safetensors"}
    assert s.input_buckets == ["in-a", "in-b"]
    assert s.allowed_input_buckets == {"outs", "in-a", "in-b"}
    assert s.allowed_https_hosts == ["images.example.com", "cdn.example.com"]
    assert (s.max_input_bytes, s.max_input_pixels) == (1024, 4096 * 4096)
    assert s.runtime_url == "http://127.0.0.1:8080"
    assert (s.task_timeout_seconds, s.visibility_timeout_seconds, s.max_receive_count) == (60, 120, 5)
    # Held with the short receive visibility (60 s, below the queue's 120), renewed every quarter of it.
    assert (s.hold_visibility_seconds, s.heartbeat_seconds) == (60, 15)
    assert s.agent_port == 9000
    assert (s.aws_region, s.aws_endpoint_url) == ("eu-west-1", "http://127.0.0.1:5000")
    assert s.agent_test_insecure_origins == []


def test_settings_defaults_and_heartbeat_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in REQUIRED.items():
        monkeypatch.setenv(k, v)
    s = AgentSettings()  # type: ignore[call-arg]
    assert (s.visibility_timeout_seconds, s.hold_visibility_seconds, s.max_receive_count) == (960, 60, 3)
    assert s.heartbeat_seconds == 15
    assert s.agent_port == 8081 and s.input_buckets == [] and s.allowed_https_hosts == []
    monkeypatch.setenv("EASEL_AGENT_RECEIVE_VISIBILITY_SECONDS", "600")
    assert AgentSettings().heartbeat_seconds == 60  # type: ignore[call-arg]  # capped
    monkeypatch.setenv("EASEL_VISIBILITY_TIMEOUT_SECONDS", "40")
    assert AgentSettings().hold_visibility_seconds == 40  # type: ignore[call-arg]  # never past the queue's


def test_settings_are_not_read_at_import() -> None:
    """Importing every agent module needs no environment (a fresh interpreter without EASEL_*)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("EASEL_")}
    code = "import queue_agent.__main__, queue_agent.agent, queue_agent.health; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    with pytest.raises(ValueError, match="runtime"):
        AgentSettings(_env_file=None)  # type: ignore[call-arg]


def test_heartbeat_must_beat_faster_than_visibility(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in REQUIRED.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("EASEL_VISIBILITY_TIMEOUT_SECONDS", "30")
    monkeypatch.setenv("EASEL_AGENT_HEARTBEAT_SECONDS", "30")
    with pytest.raises(ValueError, match="EASEL_AGENT_HEARTBEAT_SECONDS"):
        AgentSettings()  # type: ignore[call-arg]


# -- backoff ----------------------------------------------------------------------------------------------------
def test_backoff_grows_from_receive_count_and_caps() -> None:
    b = ExponentialBackoff(base_seconds=5, cap_seconds=60)
    assert [b.delay(n) for n in (0, 1, 2, 3, 4, 5, 100)] == [5, 5, 10, 20, 40, 60, 60]
    assert ExponentialBackoff(base_seconds=10, cap_seconds=50000).delay(40) == 43200  # SQS maximum


# -- request mapping ----------------------------------------------------------------------------------------------
def test_runtime_body_for_img2img_and_prompt_style_loras() -> None:
    data = GenerationInput(
        prompt="a cat",
        init_images=["s3://b/tenants/acme/x.png"],
        denoising_strength=0.3,
        loras=[{"name": "ink", "weight": 0.75}, {"name": "noir", "weight": 1.0}],  # type: ignore[list-item]
    )
    kind, body = runtime_body(data, init_images=[b"\x89PNG"], lora_style="prompt")
    assert kind == "img2img"
    assert body["prompt"] == "a cat <lora:ink:0.75> <lora:noir:1>"
    assert "loras" not in body
    assert body["init_images"] == ["iVBORw=="]
    assert body["denoising_strength"] == 0.3


def test_runtime_body_for_txt2img_has_no_img2img_fields() -> None:
    kind, body = runtime_body(GenerationInput(prompt="x"))
    assert kind == "txt2img"
    assert "init_images" not in body and "denoising_strength" not in body and "loras" not in body


TXT2IMG = RuntimeRequest("txt2img", {})


# -- runtime adapter error mapping (over MockTransport: no network) ------------------------------------------
def client(handler: Any) -> WebUiRuntime:
    return WebUiRuntime(httpx.Client(base_url="http://runtime", transport=httpx.MockTransport(handler)))


@pytest.mark.parametrize(
    ("status", "path", "error"),
    [
        (503, "/sdapi/v1/txt2img", RuntimeUnavailable),
        (422, "/sdapi/v1/txt2img", RuntimeRejected),
        (400, "/sdapi/v1/txt2img", RuntimeRejected),
        (500, "/sdapi/v1/txt2img", RuntimeFault),
        (404, "/sdapi/v1/options", ModelMissing),
    ],
)
def test_runtime_status_codes_map_to_the_error_tree(status: int, path: str, error: type[Exception]) -> None:
    rt = client(lambda _req: httpx.Response(status, json={"detail": "field 'steps': too many"}))

    def call() -> object:
        return rt.set_model("sd15") if path.endswith("options") else rt.generate(TXT2IMG)

    with pytest.raises(error) as err:
        call()
    assert "too many" in str(err.value)  # the runtime's detail is carried to the task's reason
    assert issubclass(error, RetryableError) == (status == 503)
    assert issubclass(error, PermanentError) == (status in (400, 404, 422))


def test_runtime_unreachable_is_retryable_and_health_down() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    rt = client(refuse)
    with pytest.raises(RuntimeUnavailable):
        rt.generate(TXT2IMG)
    assert rt.health() is RuntimeHealth.DOWN
    assert rt.interrupt() is False


def test_runtime_answer_without_images_is_a_fault() -> None:
    rt = client(lambda _req: httpx.Response(200, json={"images": ["not base64!"]}))
    with pytest.raises(RuntimeFault, match="not base64"):
        rt.generate(TXT2IMG)


def test_wait_ready_polls_exponentially_and_gives_up_at_the_bound(caplog: pytest.LogCaptureFixture) -> None:
    polls: list[str] = []

    def handler(_req: httpx.Request) -> httpx.Response:
        polls.append("health")
        return httpx.Response(200, json={"status": "starting"})

    now = [0.0]
    sleeps: list[float] = []

    def sleep(d: float) -> bool:
        sleeps.append(d)
        now[0] += d
        return False

    rt = client(handler)
    with caplog.at_level(logging.INFO):
        ok = rt.wait_ready(3.0, sleep=sleep, clock=lambda: now[0], first_delay=0.5, max_delay=2)
    assert ok is False
    assert sleeps == [0.5, 1.0, 1.5]  # doubling, cut at the bound
    assert len(polls) == 4
    assert "waiting for runtime" in caplog.text
    assert "runtime not ready within bound" in caplog.text


def test_wait_ready_true_when_ready() -> None:
    states = iter(["starting", "ready"])
    rt = client(lambda _req: httpx.Response(200, json={"status": next(states)}))
    assert rt.wait_ready(10.0, sleep=lambda _d: False) is True


def test_model_is_asked_again_after_a_failure() -> None:
    seen: list[str] = []
    fail = {"on": False}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/sdapi/v1/options":
            return httpx.Response(200, json={"sd_model_checkpoint": "sd15"})
        if fail["on"]:
            return httpx.Response(500, json={})
        return httpx.Response(200, json={"images": []})

    rt = client(handler)
    assert rt.ensure_model("sd15") is False
    rt.generate(TXT2IMG)
    assert rt.ensure_model("sd15") is False  # back to back: trusted, no request
    assert seen == ["GET /sdapi/v1/options", "POST /sdapi/v1/txt2img"]
    fail["on"] = True
    with pytest.raises(RuntimeFault):
        rt.generate(TXT2IMG)
    rt.ensure_model("sd15")
    assert seen[-1] == "GET /sdapi/v1/options"


# -- AWS errors ---------------------------------------------------------------------------------------------------
def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "Op")


def test_throttling_becomes_retryable_other_client_errors_do_not() -> None:
    with pytest.raises(AwsUnavailable), aws_call("publish"):
        raise _client_error("Throttling")
    with pytest.raises(ClientError), aws_call("publish"):
        raise _client_error("AuthorizationError")


# -- notifications ------------------------------------------------------------------------------------------------
class FlakySns:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.published: list[dict[str, Any]] = []

    def publish(self, **kw: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise _client_error("Throttling")
        self.published.append(kw)


@pytest.mark.integration
def test_failed_publish_releases_the_claim(provisioned: Any, aws_session: Any) -> None:
    """SNS throttles the first publish: the claim is released, the retry publishes, then never again."""
    from easel.lifecycle import queued_task
    from easel.store import TaskStore

    _, _, resources = provisioned
    store = TaskStore(aws_session.client("dynamodb"), resources.table)
    request = TaskRequest(id="n1", task_type="text-to-image", model="sd15", input=GenerationInput(prompt="x"))  # type: ignore[arg-type]
    task = queued_task(request, tenant="acme", runtime="sd15")
    store.create(task, "fp")
    done = store.transition("acme", "n1", TaskStatus.CANCELED)
    sns = FlakySns(failures=1)
    notifier = Notifier(sns, "arn:topic", store)
    with pytest.raises(AwsUnavailable):
        notifier.publish_once(done)
    assert notifier.publish_once(done) is True
    assert notifier.publish_once(done) is False
    assert len(sns.published) == 1
    body = json.loads(sns.published[0]["Message"])
    assert body["status"] == "canceled" and body["id"] == "n1"
    assert sns.published[0]["MessageAttributes"]["status"] == {
        "DataType": "String",
        "StringValue": "canceled",
    }
    # release only undoes its own status
    assert store.release_notification("acme", "n1", TaskStatus.SUCCEEDED) is False
    assert store.release_notification("acme", "n1", TaskStatus.CANCELED) is True


# -- telemetry ----------------------------------------------------------------------------------------------------
def test_task_done_record_is_an_emf_document() -> None:
    rec = task_done_record(
        task_id="t",
        tenant="acme",
        runtime="sd15",
        status="succeeded",
        metrics={"queue_seconds": 1.5, "predict_seconds": 2.0, "gpu_seconds": None},
    )
    logger = logging.getLogger("emf-test")
    record = logger.makeRecord("emf-test", logging.INFO, __file__, 1, "task done", (), None, extra=rec)
    doc = json.loads(JsonFormatter().format(record))
    assert doc["task_id"] == "t" and doc["status"] == "succeeded" and doc["predict_seconds"] == 2.0
    cw = doc["_aws"]["CloudWatchMetrics"][0]
    assert cw["Namespace"] == "Easel"
    assert [m["Name"] for m in cw["Metrics"]] == ["tasks", "queue_seconds", "predict_seconds"]
    # EMF: every metric and dimension named in _aws is a top-level key of the line
    for dims in cw["Dimensions"]:
        assert all(d in doc for d in dims)
    assert all(m["Name"] in doc for m in cw["Metrics"])


def test_task_done_record_carries_switches_images_and_a_runtime_dimension() -> None:
    """The dashboard's model-switch, cache-hit and images-per-second widgets read these metrics by runtime."""
    from queue_agent.telemetry import cold_start_record

    rec = task_done_record(
        task_id="t",
        tenant="acme",
        runtime="sd15",
        status="succeeded",
        metrics={
            "queue_seconds": 0.5,
            "predict_seconds": 2.0,
            "gpu_seconds": 3.0,
            "model_switch_seconds": 1.0,
            "model_switches": 1,
            "images": 2,
        },
    )
    cw = rec["_aws"]["CloudWatchMetrics"][0]
    units = {m["Name"]: m["Unit"] for m in cw["Metrics"]}
    assert units == {
        "tasks": "Count",
        "model_switches": "Count",
        "images": "Count",
        "queue_seconds": "Seconds",
        "predict_seconds": "Seconds",
        "gpu_seconds": "Seconds",
        "model_switch_seconds": "Seconds",
    }
    assert ["runtime"] in cw["Dimensions"] and ["runtime", "tenant"] in cw["Dimensions"]
    assert rec["model_switches"] == 1 and rec["images"] == 2
    # A task that never reached the runtime: no switch datapoint at all (not a false cache hit).
    skipped = task_done_record(
        task_id="t", tenant="acme", runtime="sd15", status="canceled", metrics={"images": 0}
    )
    names = [m["Name"] for m in skipped["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert "model_switches" not in names and "model_switch_seconds" not in names
    cold = cold_start_record(runtime="sd15", seconds=42.12345)
    assert cold["cold_start_seconds"] == 42.123
    assert cold["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["runtime"]]


def test_control_endpoints_answer_only_loopback_and_the_node() -> None:
    """/drain and /stats refuse any peer but 127.0.0.1/::1 and the configured node address; probes stay open.

    Other peers are simulated with another loopback source address (127.0.0.2), never a real network.
    """
    import httpx

    from queue_agent.health import HealthServer, Probes

    drains: list[float] = []

    def drain(timeout: float) -> bool:
        drains.append(timeout)
        return True

    probes = Probes(
        ready=lambda: {"ok": True}, live=lambda: {"ok": True}, drain=drain, stats=lambda: {"n": 1}
    )

    def get(server: HealthServer, path: str, source: str) -> httpx.Response:
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(transport=transport, timeout=10) as client:
            return client.get(f"http://127.0.0.1:{server.port}{path}")

    closed = HealthServer(probes, host="127.0.0.1", port=0).start()
    node = HealthServer(probes, host="127.0.0.1", port=0, control_peers=["127.0.0.2"]).start()
    try:
        for path in ("/drain", "/stats"):
            refused = get(closed, path, "127.0.0.2")
            assert refused.status_code == 403 and "node" in refused.json()["error"]
        assert drains == []
        assert get(closed, "/ready", "127.0.0.2").status_code == 200
        assert get(closed, "/live", "127.0.0.2").status_code == 200
        assert get(closed, "/stats", "127.0.0.1").json() == {"n": 1}
        assert get(node, "/drain?timeout=3", "127.0.0.2").json() == {"drained": True}
        assert get(closed, "/drain?timeout=4", "127.0.0.1").status_code == 200
        assert drains == [3.0, 4.0]
    finally:
        closed.stop()
        node.stop()
