"""stable-diffusion-on-eks compatibility of the agent, pure parts: the result message fields, the ``.out``
document and where a task's outputs go (its ``output_prefix`` inside the tenant's prefix, never outside)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from easel.contract import CompatInfo, Task, TaskError, TaskOutput, TaskStatus, parse_input
from easel.naming import output_dir, output_key, result_document_key, safe_output_prefix
from queue_agent import compat
from queue_agent.errors import InvalidMessage
from queue_agent.notify import Notifier
from queue_agent.outputs import OutputWriter

pytestmark = pytest.mark.unit

BUCKET = "outs"


def task(
    *,
    task_type: str = "text-to-image",
    status: TaskStatus = TaskStatus.SUCCEEDED,
    prefix: str | None = "output",
    context_sent: Any = None,
    context: dict[str, Any] | None = None,
    api: str = "v1alpha2",
    images: int = 1,
    **inp: Any,
) -> Task:
    data: dict[str, Any] = {
        "text-to-image": {"prompt": "A dog", "steps": 16, "width": 512, "height": 512},
        "image-to-image": {"prompt": "cat", "init_images": ["s3://outs/tenants/acme/inputs/cat.png"]},
        "upscale": {"image": "s3://outs/tenants/acme/inputs/cat.png", "upscaler": "Lanczos"},
        "pipeline": {"workflow": {"1": {"class_type": "EmptyImage", "inputs": {}}}},
    }[task_type]
    data.update(inp)
    out = [f"s3://{BUCKET}/{output_key('acme', 'test-t2i', n, prefix=prefix)}" for n in range(images)]
    return Task(
        id="test-t2i",
        tenant="acme",
        status=status,
        task_type=task_type,  # type: ignore[arg-type]
        model="sd15",
        runtime="sd15",
        priority="normal",  # type: ignore[arg-type]
        input=parse_input(task_type, data),
        output=TaskOutput(images=out) if status is TaskStatus.SUCCEEDED else None,
        error=TaskError(code="input_refused", message="input 'x' refused: host")
        if status is TaskStatus.FAILED
        else None,
        context=context,
        output_prefix=prefix,
        compat=CompatInfo(api=api, runtime="sdruntime", context=context_sent),  # type: ignore[arg-type]
        created_at=datetime.now(UTC),
    )


def png_with_seed(seed: int | None) -> bytes:
    meta = PngImagePlugin.PngInfo()
    if seed is not None:
        meta.add_text(
            "parameters", f"A dog\nSteps: 16, Sampler: Euler a, CFG scale: 7, Seed: {seed}, Size: 8x8"
        )
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="PNG", pnginfo=meta)
    return out.getvalue()


# -- result message fields ----------------------------------------------------------------------------------
def test_result_fields_of_a_succeeded_compat_task() -> None:
    t = task(images=2, context_sent={"job": 7}, context={"job": 7})
    assert compat.result_fields(t, BUCKET) == {
        "id": "test-t2i",
        "result": True,
        "image_url": [
            "s3://outs/tenants/acme/output/test-t2i/0.png",
            "s3://outs/tenants/acme/output/test-t2i/1.png",
        ],
        "output_url": "s3://outs/tenants/acme/output/test-t2i/test-t2i.out",
        "context": {"job": 7},
    }


@pytest.mark.parametrize(
    ("sent", "easel", "expected"),
    [
        ({"a": 1}, {"a": 1}, {"a": 1}),  # an object: the client's own value
        (None, None, {}),  # absent: {} as the reference sends it
        ("", None, None),  # not an object: the task object's context stays an object (or null)
        ("run-9", {"v1alpha2": "run-9"}, {"v1alpha2": "run-9"}),
    ],
)
def test_result_context(sent: Any, easel: Any, expected: Any) -> None:
    assert compat.result_fields(task(context_sent=sent, context=easel), BUCKET)["context"] == expected


def test_result_fields_of_failed_canceled_and_other_tasks() -> None:
    failed = compat.result_fields(task(status=TaskStatus.FAILED), BUCKET)
    assert failed["result"] is False and failed["image_url"] == []
    assert failed["output_url"] == "s3://outs/tenants/acme/output/test-t2i/test-t2i.out"
    assert compat.result_fields(task(status=TaskStatus.CANCELED), BUCKET)["result"] is False
    # Not terminal, or not a compat task: no reference fields.
    assert compat.result_fields(task(status=TaskStatus.PROCESSING), BUCKET) == {}
    assert compat.result_fields(task().model_copy(update={"compat": None}), BUCKET) == {}
    # Without a prefix the task's folder is tasks/ (v1alpha1 without save_dir).
    assert (
        compat.output_url(task(prefix=None), BUCKET) == "s3://outs/tenants/acme/tasks/test-t2i/test-t2i.out"
    )


# -- the .out document ------------------------------------------------------------------------------------
def test_out_of_a_generation_has_parameters_seeds_and_no_input_images() -> None:
    doc = compat.succeeded_document(task(images=2), [png_with_seed(11), png_with_seed(12)])
    assert doc["images"] == [""] and doc["info"] == ""
    params = doc["parameters"]
    assert (params["id_task"], params["image_seed"], params["error_msg"]) == ("test-t2i", "11,12", "")
    assert (params["prompt"], params["steps"], params["width"]) == ("A dog", 16, 512)
    i2i = compat.succeeded_document(task(task_type="image-to-image"), [png_with_seed(3)])
    assert i2i["parameters"]["init_images"] is None  # as A1111 echoes it: the bytes are not repeated
    json.loads(compat.encode(doc))


def test_out_seeds_fall_back_to_the_requested_seed() -> None:
    # No infotext in the images: a fixed seed gives A1111's seed, seed+1, ...; a random one gives "".
    fixed = compat.succeeded_document(task(seed=40, batch_size=2), [png_with_seed(None)] * 2)
    assert fixed["parameters"]["image_seed"] == "40,41"
    random = compat.succeeded_document(task(seed=-1), [png_with_seed(None)])
    assert random["parameters"]["image_seed"] == ""
    assert compat.image_seeds([b"not an image"]) == []


def test_out_of_upscale_pipeline_and_failures() -> None:
    up = compat.succeeded_document(task(task_type="upscale"), [png_with_seed(None)])
    assert up == {
        "images": [""],
        "parameters": {"html_info": "", "id_task": "test-t2i", "error_msg": ""},
        "info": "",
    }
    assert compat.succeeded_document(task(task_type="pipeline"), []) == {"code": 200}
    assert compat.failed_document(task(task_type="pipeline", status=TaskStatus.FAILED)) == {"code": 500}
    failed = compat.failed_document(task(status=TaskStatus.FAILED))
    assert failed["parameters"] == {
        "id_task": "test-t2i",
        "status": 0,
        "error_msg": "input_refused: input 'x' refused: host",
        "reason": None,
    }
    canceled = compat.failed_document(task(status=TaskStatus.CANCELED))
    assert canceled["parameters"]["error_msg"] == "canceled"


# -- prefix resolution ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prefix", "folder"),
    [
        (None, "tenants/acme/tasks/t1/"),
        ("output", "tenants/acme/output/t1/"),
        ("a/b.c/d-e/f_g", "tenants/acme/a/b.c/d-e/f_g/t1/"),
        ("out..put", "tenants/acme/out..put/t1/"),  # dots inside a segment are a name, not a step up
    ],
)
def test_output_prefix_inside_the_tenant(prefix: str | None, folder: str) -> None:
    assert output_dir("acme", "t1", prefix) == folder
    assert result_document_key("acme", "t1", prefix) == f"{folder}t1.out"
    assert output_key("acme", "t1", 0, prefix=prefix) == f"{folder}0.png"


@pytest.mark.parametrize(
    "prefix",
    [
        "..",
        "../globex",
        "output/../../globex",
        "./x",
        "/abs",
        "a//b",
        "a/",
        "",
        "a/b/c/d/e",
        "inputs",
        "loras/x",
        "out put",
        "output\n",
        "a\\..\\b",
        "%2e%2e",
        "x" * 65,
    ],
)
def test_output_prefix_that_could_escape_is_refused(prefix: str) -> None:
    assert not safe_output_prefix(prefix)
    with pytest.raises(ValueError, match="output prefix"):
        output_dir("acme", "t1", prefix)
    t = task().model_copy(update={"output_prefix": prefix})
    with pytest.raises(InvalidMessage, match="output_prefix"):
        compat.check_prefix(t)
    assert compat.output_url(t, BUCKET) is None  # no .out for a task whose prefix was refused


# -- the notifier's message ---------------------------------------------------------------------------------
class FakeS3:
    def __init__(self) -> None:
        self.puts: dict[str, tuple[bytes, str]] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str, **_: Any) -> None:
        self.puts[Key] = (Body, ContentType)


def test_notifier_message_adds_fields_and_writes_the_failure_out() -> None:
    s3 = FakeS3()
    notifier = Notifier(sns=None, topic_arn="arn", store=None, outputs=OutputWriter(s3, BUCKET))  # type: ignore[arg-type]
    ok = json.loads(notifier.message(task(context_sent={"k": 1}, context={"k": 1})))
    assert ok["status"] == "succeeded" and ok["result"] is True and ok["context"] == {"k": 1}
    assert ok["compat"]["runtime"] == "sdruntime" and "urls" not in ok
    assert not s3.puts  # a succeeded task's .out is written with its images, by the finisher
    failed = json.loads(notifier.message(task(status=TaskStatus.FAILED)))
    assert failed["result"] is False and failed["error"]["code"] == "input_refused"
    body, ctype = s3.puts["tenants/acme/output/test-t2i/test-t2i.out"]
    assert ctype == "application/json"
    assert json.loads(body)["parameters"]["error_msg"].startswith("input_refused")
    # Easel's own tasks: the task object only.
    plain = json.loads(notifier.message(task().model_copy(update={"compat": None})))
    assert "result" not in plain and "output_url" not in plain
    Task.model_validate(ok)  # still the task object for webhook receivers and subscribers
