"""Input images: a presigned POST to the local S3 endpoint over real HTTP, then an image-to-image task using
it; refused inputs (oversized, not an image, another tenant's, disallowed host) are 400 at submit naming
the field, with nothing stored or queued; inline base64 images are moved to S3 by the API."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from easel.client import EaselClient
from infra.local.demo import tiny_png
from infra.local.stack import LocalStack
from tests.integration.api.helpers import call, drain, message_counts, table_items

pytestmark = pytest.mark.integration


def i2i(image: str) -> dict[str, Any]:
    return {
        "task_type": "image-to-image",
        "model": "sd15",
        "input": {"prompt": "a cat", "steps": 2, "init_images": [image]},
    }


def upload(client: EaselClient, data: bytes, content_type: str = "image/png") -> tuple[str, httpx.Response]:
    grant = client.request("POST", "/v1/uploads", json_body={"content_type": content_type})
    form = grant["upload"]
    # A plain multipart POST, as a browser or curl sends it: no AWS credentials involved.
    reply = httpx.post(
        form["url"], data=form["fields"], files={"file": ("x", data, content_type)}, timeout=30
    )
    return str(grant["uri"]), reply


def _nothing_left(stack: LocalStack) -> None:
    assert table_items(stack) == [] and sum(message_counts(stack).values()) == 0


def test_presigned_post_then_image_to_image(acme: EaselClient, fresh: LocalStack) -> None:
    assert fresh.resources is not None
    png = tiny_png()
    uri, reply = upload(acme, png)
    assert reply.status_code in (200, 201, 204), reply.text
    assert uri.startswith(f"s3://{fresh.resources.outputs_bucket}/tenants/acme/inputs/") and uri.endswith(
        ".png"
    )
    key = uri.split("/", 3)[3]
    stored = fresh.client("s3").get_object(Bucket=fresh.resources.outputs_bucket, Key=key)
    assert stored["Body"].read() == png and stored["ContentType"] == "image/png"
    task = acme.submit(i2i(uri))
    assert task["status"] == "queued" and task["input"]["init_images"] == [uri]


def test_presigned_post_policy_carries_the_conditions(acme: EaselClient, fresh: LocalStack) -> None:
    grant = acme.request("POST", "/v1/uploads", json_body={"content_type": "image/jpeg"})
    policy = json.loads(base64.b64decode(grant["upload"]["fields"]["policy"]))
    conditions = policy["conditions"]
    assert {"Content-Type": "image/jpeg"} in conditions
    assert ["content-length-range", 1, fresh.config.inputs.max_bytes] in conditions
    assert {"key": grant["uri"].split("/", 3)[3]} in conditions
    assert grant["max_bytes"] == fresh.config.inputs.max_bytes


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content_type": "text/html"}, "content_type"),
        ({"content_type": "image/png", "key": "x"}, "key"),
        ({}, "content_type"),
    ],
)
def test_bad_upload_requests_name_the_field(
    acme: EaselClient, fresh: LocalStack, body: Any, field: str
) -> None:
    reply = call(acme, "POST", "/v1/uploads", json_body=body)
    assert reply.status == 400 and reply.error["field"] == field


def test_uploaded_file_that_is_not_an_image_is_refused_at_submit(
    acme: EaselClient, fresh: LocalStack
) -> None:
    uri, reply = upload(acme, b"<html>not an image</html>" * 4)
    assert reply.status_code < 300  # the local S3 takes it; the API still refuses to queue it
    refused = call(acme, "POST", "/v1/tasks", json_body=i2i(uri))
    assert refused.status == 400 and refused.error["field"] == "input.init_images.0"
    assert "not a PNG, JPEG or WebP" in refused.error["message"]
    _nothing_left(fresh)


def test_oversized_upload_is_refused_at_submit(acme: EaselClient, fresh: LocalStack) -> None:
    big = tiny_png() + b"\0" * (fresh.config.inputs.max_bytes + 1)
    uri, reply = upload(acme, big)
    assert reply.status_code < 300  # moto ignores POST policy conditions; S3 itself refuses (EntityTooLarge)
    refused = call(acme, "POST", "/v1/tasks", json_body=i2i(uri))
    assert refused.status == 400 and refused.error["field"] == "input.init_images.0"
    assert "over inputs.max_bytes" in refused.error["message"]
    _nothing_left(fresh)


def test_another_tenants_upload_and_missing_objects_are_refused(
    acme: EaselClient, globex: EaselClient, fresh: LocalStack
) -> None:
    uri, _ = upload(acme, tiny_png())
    theirs = call(globex, "POST", "/v1/tasks", json_body=i2i(uri))
    assert theirs.status == 400 and "outside your tenant" in theirs.error["message"]
    missing = call(acme, "POST", "/v1/tasks", json_body=i2i(uri.replace(".png", "-gone.png")))
    assert missing.status == 400 and "no such object" in missing.error["message"]
    _nothing_left(fresh)


@pytest.mark.parametrize(
    "image",
    [
        "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/cat.png",
        "http://127.0.0.1:9/cat.png",
        "file:///etc/passwd",
        "s3://some-other-bucket/tenants/acme/inputs/cat.png",
    ],
)
def test_inputs_the_agent_would_refuse_are_refused_at_submit(
    acme: EaselClient, fresh: LocalStack, image: str
) -> None:
    reply = call(acme, "POST", "/v1/tasks", json_body=i2i(image))
    assert reply.status == 400 and reply.error["field"] == "input.init_images.0", reply.body
    _nothing_left(fresh)


def test_inline_base64_images_are_moved_to_s3(acme: EaselClient, fresh: LocalStack) -> None:
    assert fresh.resources is not None
    png = tiny_png(256, 256)
    inline = base64.b64encode(png).decode()
    task = acme.submit(i2i(f"data:image/png;base64,{inline}"))
    [uri] = task["input"]["init_images"]
    assert uri.startswith(f"s3://{fresh.resources.outputs_bucket}/tenants/acme/inputs/")
    body = fresh.client("s3").get_object(Bucket=fresh.resources.outputs_bucket, Key=uri.split("/", 3)[3])[
        "Body"
    ]
    assert body.read() == png
    [message] = drain(fresh)["sd15-normal"]
    assert len(json.dumps(message["body"])) < 4096 < len(inline)
    # SD WebUI clients send bare base64 (no data: header): the same.
    raw = acme.submit(i2i(inline))
    assert raw["input"]["init_images"] == [uri]


def test_inline_text_is_not_an_image(acme: EaselClient, fresh: LocalStack) -> None:
    text = base64.b64encode(b"hello world, this is not an image at all" * 4).decode()
    reply = call(acme, "POST", "/v1/tasks", json_body=i2i(f"data:image/png;base64,{text}"))
    assert reply.status == 400 and reply.error["field"] == "input.init_images.0"
    _nothing_left(fresh)
