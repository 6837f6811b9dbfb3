"""The stable-diffusion-on-eks sample requests through the signed local gateway, bodies unchanged except image
URLs (pointed at the tenant's S3 prefix): answered in the reference's shape, queued with their prefix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from easel.client import EaselClient
from infra.local.demo import tiny_png, upload_init_image
from infra.local.stack import LocalStack
from tests.integration.api.helpers import call, drain, message_counts, table_items

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "sd_on_eks"


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return data


def _only_nonempty(found: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {k: v for k, v in found.items() if v}


def test_v1alpha2_text_to_image_sample_answers_like_the_reference(
    acme: EaselClient, fresh: LocalStack
) -> None:
    assert fresh.resources is not None
    reply = acme.submit_v1alpha2(sample("v1alpha2/t2i.json"))
    bucket = fresh.resources.outputs_bucket
    assert {k: reply[k] for k in ("id", "runtime", "output_location")} == {
        "id": "test-t2i",
        "runtime": "sdruntime",
        "output_location": f"s3://{bucket}/tenants/acme/output/test-t2i",
    }
    assert reply["task"]["status"] == "queued" and reply["task"]["runtime"] == "sd15"
    queued = _only_nonempty(drain(fresh))
    assert list(queued) == ["sd15-normal"]
    message = queued["sd15-normal"][0]["body"]
    assert message["output_prefix"] == "output"
    assert message["compat"] == {"api": "v1alpha2", "runtime": "sdruntime", "checkpoint": None, "context": ""}


def test_replay_of_a_sample_is_200_and_enqueues_nothing_more(acme: EaselClient, fresh: LocalStack) -> None:
    first = acme.submit_v1alpha2(sample("v1alpha2/t2i.json"))
    again = call(acme, "POST", "/v1alpha2", json_body=sample("v1alpha2/t2i.json"))
    assert again.status == 200 and again.body["id"] == first["id"]
    assert sum(message_counts(fresh).values()) == 1
    changed = sample("v1alpha2/t2i.json")
    changed["task"]["content"]["prompt"] = "A cat"
    assert call(acme, "POST", "/v1alpha2", json_body=changed).status == 409


def _cat(stack: LocalStack) -> str:
    assert stack.resources is not None
    return upload_init_image(stack.client("s3"), stack.resources.outputs_bucket, "acme", tiny_png())


def test_v1alpha2_image_to_image_sample_with_a_tenant_s3_image(acme: EaselClient, fresh: LocalStack) -> None:
    body = sample("v1alpha2/i2i.json")
    image = _cat(fresh)
    body["task"]["content"]["init_images"] = [image]
    reply = acme.submit_v1alpha2(body)
    assert reply["id"] == "test-i2i" and reply["task"]["input"]["init_images"] == [image]
    assert reply["task"]["task_type"] == "image-to-image"


def test_v1alpha1_samples_answer_like_the_reference(acme: EaselClient, fresh: LocalStack) -> None:
    assert fresh.resources is not None
    bucket = fresh.resources.outputs_bucket
    t2i = acme.submit_v1alpha1(sample("v1alpha1/t2i.json"))
    assert {k: t2i[k] for k in ("id_task", "sd_model_checkpoint", "output_location")} == {
        "id_task": "test-t2i",
        "sd_model_checkpoint": "sd_xl_turbo_1.0.safetensors",
        "output_location": f"s3://{bucket}/tenants/acme/outputs/test-t2i",
    }
    body = sample("v1alpha1/i2i.json")
    body["alwayson_scripts"]["image_link"] = _cat(fresh)
    i2i = acme.submit_v1alpha1(body)
    assert i2i["task"]["input"]["init_images"] == [body["alwayson_scripts"]["image_link"]]
    assert sum(message_counts(fresh).values()) == 2


@pytest.mark.parametrize(
    ("path", "name", "field"),
    [
        # This config's sdruntime model does not upscale, and it has no ComfyUI pool: the runtime is named.
        ("/v1alpha2", "v1alpha2/extra-single-image.json", "task.metadata.tasktype"),
        ("/v1alpha2", "v1alpha2/pipeline.json", "task.metadata.tasktype"),
        ("/v1alpha1", "v1alpha1/t2v.json", "alwayson_scripts.AnimateDiff"),
    ],
)
def test_samples_this_config_cannot_run_are_4xx_naming_the_field(
    acme: EaselClient, fresh: LocalStack, path: str, name: str, field: str
) -> None:
    reply = call(acme, "POST", path, json_body=sample(name))
    assert reply.status == 400 and reply.error["field"] == field, reply.body
    assert table_items(fresh) == [] and sum(message_counts(fresh).values()) == 0


def test_the_same_client_id_in_two_tenants_is_two_tasks(
    acme: EaselClient, globex: EaselClient, fresh: LocalStack
) -> None:
    a = acme.submit_v1alpha2(sample("v1alpha2/t2i.json"))
    b = globex.submit_v1alpha2(sample("v1alpha2/t2i.json"))
    assert a["output_location"].replace("/acme/", "/globex/") == b["output_location"]
    assert len(table_items(fresh)) == 2


@pytest.mark.parametrize(
    ("path", "name", "field"),
    [
        ("/v1alpha2", "v1alpha2/i2i.json", "task.content.init_images.0"),
        ("/v1alpha1", "v1alpha1/i2i.json", "alwayson_scripts.image_link"),
    ],
)
def test_sample_image_urls_on_hosts_not_allowed_are_refused_at_submit(
    acme: EaselClient, fresh: LocalStack, path: str, name: str, field: str
) -> None:
    reply = call(acme, "POST", path, json_body=sample(name))
    assert reply.status == 400 and reply.error["field"] == field, reply.body
    assert "allowed_https_hosts" in reply.error["message"]
    assert table_items(fresh) == [] and sum(message_counts(fresh).values()) == 0


def test_inline_base64_init_image_of_a_v1alpha2_request_is_moved_to_s3(
    acme: EaselClient, fresh: LocalStack
) -> None:
    import base64

    body = sample("v1alpha2/i2i.json")
    body["task"]["content"]["init_images"] = [base64.b64encode(tiny_png()).decode()]
    reply = acme.submit_v1alpha2(body)
    assert reply["task"]["input"]["init_images"][0].startswith("s3://")
