"""stable-diffusion-on-eks sample requests through the whole local pipeline, one test per sample.

Each sample (tests/fixtures/sd_on_eks, v1alpha1 and v1alpha2: text-to-image, image-to-image,
extra-single-image, pipeline) is posted unchanged but for its image URL, pointed at the tenant's S3 prefix,
through the signed local gateway; it answers in the reference's shape and its task ends ``succeeded`` with
its images and the reference's ``.out`` at ``output_location`` in S3, and a result message with the
reference's fields. The config (tests/configs/compat-samples.yaml) maps the samples' runtime name
``sdruntime`` by aliases: to the Easel runtime (a real process, tiny model, a tiny random ESRGAN saved as
the sample's upscaler ``R-ESRGAN 4x+``) and to a ComfyUI pool. There is no real ComfyUI here: that pool's
runtime is the repository's fake ComfyUI server (tests/agent/fake_comfyui.py), driven by a real agent
process started by the local stack against its URL (``StackOptions.runtime_urls``).

How a request is authenticated is a parameter (:data:`AUTH`): signed with SigV4, or with an API key made
by ``easel keys create --local`` (the reference's clients send ``x-api-key``). The samples' ids are fixed, so
each way has its own tenants: every pass runs the samples as new tasks.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from easel.client import EaselClient
from infra.local.demo import tiny_png
from infra.local.stack import LocalStack, StackOptions
from tests.agent.fake_comfyui import FakeComfyUi
from tests.e2e.conftest import client_of

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "fixtures" / "sd_on_eks"
CONFIG = ROOT / "tests" / "configs" / "compat-samples.yaml"
# The upscaler the extra-single-image sample names, as a file of the runtime's models store.
UPSCALER = "R-ESRGAN 4x+"


def key_client_of(stack: LocalStack, tenant: str) -> EaselClient:
    """A client that sends a new API key of ``tenant``, made by the CLI as an operator would."""
    argv = [sys.executable, "-m", "easel.cli", "keys", "create", "--tenant", tenant, "--local", "--json",
            "--state", str(stack.options.state_path), "--config", str(stack.config_file)]  # fmt: skip
    made = subprocess.run(argv, check=True, capture_output=True, text=True)
    return EaselClient(stack.endpoint, region=stack.region, api_key=json.loads(made.stdout)["key"])


# How a request is authenticated -> a client of ``tenant`` on the stack that authenticates that way.
AUTH: dict[str, Callable[[LocalStack, str], EaselClient]] = {"sigv4": client_of, "api-key": key_client_of}
# The samples' ids are fixed, and v1alpha1 and v1alpha2 reuse them: one tenant per API version and way.
TENANTS = {
    "sigv4": {"v1alpha1": "globex", "v1alpha2": "acme"},
    "api-key": {"v1alpha1": "umbrella", "v1alpha2": "initech"},
}


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return data


@pytest.fixture(scope="module")
def comfyui() -> Iterator[FakeComfyUi]:
    server = FakeComfyUi()
    server.control.checkpoints = ["sd_xl_turbo_1.0.safetensors"]  # the pipeline sample's ckpt_name
    server.up()
    yield server
    server.down()


@pytest.fixture(scope="module")
def samples_stack(tmp_path_factory: pytest.TempPathFactory, comfyui: FakeComfyUi) -> Iterator[LocalStack]:
    work: Path = tmp_path_factory.mktemp("compat-e2e")
    models = work / "models"
    upscaler = models / "upscalers" / f"{UPSCALER}.safetensors"
    upscaler.parent.mkdir(parents=True)
    argv = [sys.executable, "-m", "easel.cli", "models", "make-tiny", "--arch", "esrgan", str(upscaler)]
    subprocess.run(argv, check=True, capture_output=True)
    options = StackOptions(
        config_path=CONFIG,
        port=0,
        state_path=work / "local.json",
        work_dir=work,
        models_dir=models,
        workers=True,
        runtime_urls={"comfy": comfyui.url},
    )
    with LocalStack(options) as running:
        yield running


@pytest.fixture(scope="module")
def results(samples_stack: LocalStack) -> Callable[[str], list[dict[str, Any]]]:
    """Result messages by task id, from a queue subscribed to the results topic (raw delivery)."""
    assert samples_stack.resources is not None
    sqs, sns = samples_stack.client("sqs"), samples_stack.client("sns")
    url = sqs.create_queue(QueueName="compat-results-observer")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=samples_stack.resources.results_topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    seen: list[dict[str, Any]] = []

    def of(task_id: str) -> list[dict[str, Any]]:
        while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for m in msgs:
                seen.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return [r for r in seen if r["id"] == task_id]

    return of


@pytest.fixture(scope="module", params=sorted(AUTH))
def auth(request: pytest.FixtureRequest) -> str:
    way: str = request.param
    return way


@pytest.fixture(scope="module")
def clients(auth: str, samples_stack: LocalStack) -> Iterator[dict[str, EaselClient]]:
    made = {api: AUTH[auth](samples_stack, tenant) for api, tenant in TENANTS[auth].items()}
    yield made
    for c in made.values():
        c.close()


def put_image(stack: LocalStack, tenant: str, name: str, png: bytes) -> str:
    assert stack.resources is not None
    bucket, key = stack.resources.outputs_bucket, f"tenants/{tenant}/inputs/{name}"
    stack.client("s3").put_object(Bucket=bucket, Key=key, Body=png, ContentType="image/png")
    return f"s3://{bucket}/{key}"


def with_images(stack: LocalStack, tenant: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The sample with its image URL (if any) pointed at the tenant's S3 prefix; nothing else changes."""
    if name == "v1alpha1/i2i.json":
        body["alwayson_scripts"]["image_link"] = put_image(stack, tenant, "cat.png", tiny_png(512, 512))
    elif name == "v1alpha2/i2i.json":
        body["task"]["content"]["init_images"] = [put_image(stack, tenant, "cat.png", tiny_png(512, 512))]
    elif name == "v1alpha2/extra-single-image.json":
        # A small cat: the sample's 4x upscale stays cheap on CPU (64 -> 256).
        body["task"]["content"]["image"] = put_image(stack, tenant, "small-cat.png", tiny_png(64, 64))
    return body


CASES = [
    ("v1alpha1/t2i.json", "test-t2i", "outputs"),
    ("v1alpha1/i2i.json", "test-i2i", "outputs"),
    ("v1alpha2/t2i.json", "test-t2i", "output"),
    ("v1alpha2/i2i.json", "test-i2i", "output"),
    ("v1alpha2/extra-single-image.json", "test-extra", "output"),
    ("v1alpha2/pipeline.json", "test-pipeline", "output"),
]


@pytest.mark.parametrize(("name", "task_id", "prefix"), CASES, ids=[c[0] for c in CASES])
def test_sample_runs_to_succeeded(
    samples_stack: LocalStack,
    auth: str,
    clients: dict[str, EaselClient],
    results: Callable[[str], list[dict[str, Any]]],
    name: str,
    task_id: str,
    prefix: str,
) -> None:
    assert samples_stack.resources is not None
    bucket = samples_stack.resources.outputs_bucket
    api = name.split("/")[0]
    client, tenant = clients[api], TENANTS[auth][api]
    body = with_images(samples_stack, tenant, name, sample(name))
    location = f"s3://{bucket}/tenants/{tenant}/{prefix}/{task_id}"
    if api == "v1alpha2":
        reply = client.submit_v1alpha2(body)
        assert (reply["id"], reply["runtime"], reply["output_location"]) == (task_id, "sdruntime", location)
    else:
        reply = client.submit_v1alpha1(body)
        assert (reply["id_task"], reply["output_location"]) == (task_id, location)
        assert reply["sd_model_checkpoint"] == "sd_xl_turbo_1.0.safetensors"

    task = client.wait([task_id], timeout=600, poll_seconds=0.5)[task_id]
    assert task["status"] == "succeeded", task.get("error")
    s3 = samples_stack.client("s3")
    images = task["output"]["images"]
    assert images and all(i.startswith(location + "/") for i in images)
    for uri in images:
        obj = s3.get_object(Bucket=bucket, Key=uri.split("/", 3)[3])
        assert obj["ContentType"] == "image/png"
        size = Image.open(io.BytesIO(obj["Body"].read())).size
        assert size == ((256, 256) if "extra" in name else (512, 512))

    # The reference's .out beside the images, and its fields in the result message.
    key = f"tenants/{tenant}/{prefix}/{task_id}/{task_id}.out"
    out_obj = s3.get_object(Bucket=bucket, Key=key)
    assert out_obj["ContentType"] == "application/json"
    out = json.loads(out_obj["Body"].read())
    if "pipeline" in name:
        assert out == {"code": 200}
    elif "extra" in name:
        assert out["parameters"] == {"html_info": "", "id_task": task_id, "error_msg": ""}
    else:
        params = out["parameters"]
        assert (params["id_task"], params["error_msg"], params["steps"]) == (task_id, "", 16)
        assert params["image_seed"].isdigit()  # the seed the runtime used, from the image's infotext
    [message] = [r for r in results(task_id) if r.get("tenant") == tenant and r["status"] == "succeeded"]
    assert message["result"] is True and message["image_url"] == images
    assert message["output_url"] == f"s3://{bucket}/{key}"
    assert message["context"] == ({} if api == "v1alpha1" else None)  # v1alpha2 samples send context ""
