"""Malformed stable-diffusion-on-eks requests (/v1alpha1, /v1alpha2): each a 4xx naming the field by the
client's own path, and none leaves a task or a message behind. Built from the reference's sample bodies
(tests/fixtures/sd_on_eks) with one thing wrong each."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from easel.client import EaselClient
from infra.local.stack import LocalStack
from tests.integration.api.helpers import call, client_for, message_counts, table_items

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "sd_on_eks"


def _sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return data


def v2(change: Callable[[dict[str, Any]], Any], name: str = "t2i") -> dict[str, Any]:
    body = copy.deepcopy(_sample(f"v1alpha2/{name}.json"))
    change(body)
    return body


def v1(change: Callable[[dict[str, Any]], Any], name: str = "t2i") -> dict[str, Any]:
    body = copy.deepcopy(_sample(f"v1alpha1/{name}.json"))
    change(body)
    return body


def meta(**kv: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda b: b["task"]["metadata"].update(kv)


def content(**kv: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda b: b["task"]["content"].update(kv)


def scripts(**kv: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda b: b["alwayson_scripts"].update(kv)


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    body: Any
    field: str
    status: int = 400


C = "task.content"
CASES = [
    # -- v1alpha2 envelope and metadata
    Case("v2 body is a list", "/v1alpha2", [], "body"),
    Case("v2 task not an object", "/v1alpha2", {"task": "t2i"}, "task"),
    Case("v2 no content", "/v1alpha2", v2(lambda b: b["task"].pop("content")), "task.content"),
    Case("v2 content a string", "/v1alpha2", v2(lambda b: b["task"].update(content="A dog")), "task.content"),
    Case("v2 no id", "/v1alpha2", v2(lambda b: b["task"]["metadata"].pop("id")), "task.metadata.id"),
    Case("v2 id with a slash", "/v1alpha2", v2(meta(id="a/b")), "task.metadata.id"),
    Case("v2 id a number", "/v1alpha2", v2(meta(id=7)), "task.metadata.id"),
    Case(
        "v2 no runtime",
        "/v1alpha2",
        v2(lambda b: b["task"]["metadata"].pop("runtime")),
        "task.metadata.runtime",
    ),
    Case("v2 runtime not a string", "/v1alpha2", v2(meta(runtime=["sd15"])), "task.metadata.runtime"),
    Case("v2 runtime unknown", "/v1alpha2", v2(meta(runtime="sdwebui")), "task.metadata.runtime"),
    Case("v2 tasktype unknown", "/v1alpha2", v2(meta(tasktype="text-to-video")), "task.metadata.tasktype"),
    Case(
        "v2 extra-batch-images",
        "/v1alpha2",
        v2(meta(tasktype="extra-batch-images")),
        "task.metadata.tasktype",
    ),
    Case("v2 prefix escapes the tenant", "/v1alpha2", v2(meta(prefix="../globex")), "task.metadata.prefix"),
    Case("v2 prefix into inputs", "/v1alpha2", v2(meta(prefix="inputs")), "task.metadata.prefix"),
    Case("v2 prefix a number", "/v1alpha2", v2(meta(prefix=3)), "task.metadata.prefix"),
    Case("v2 context too large", "/v1alpha2", v2(meta(context="x" * 9000)), "task.metadata.context"),
    Case("v2 unknown metadata key", "/v1alpha2", v2(meta(owner="me")), "task.metadata.owner"),
    # -- v1alpha2 content (an SD WebUI body)
    Case("v2 no prompt", "/v1alpha2", v2(lambda b: b["task"]["content"].pop("prompt")), f"{C}.prompt"),
    Case("v2 steps zero", "/v1alpha2", v2(content(steps=0)), f"{C}.steps"),
    Case("v2 steps over max", "/v1alpha2", v2(content(steps=500)), f"{C}.steps"),
    Case("v2 width odd", "/v1alpha2", v2(content(width=513)), f"{C}.width"),
    Case("v2 height over max", "/v1alpha2", v2(content(height=4096)), f"{C}.height"),
    Case("v2 sampler unknown", "/v1alpha2", v2(content(sampler_name="LCM")), f"{C}.sampler_name"),
    Case("v2 hires fix on", "/v1alpha2", v2(content(enable_hr=True, hr_scale=2)), f"{C}.enable_hr"),
    Case("v2 hires field while on", "/v1alpha2", v2(content(hr_scale=2, enable_hr=True)), f"{C}.hr_scale"),
    Case("v2 two iterations", "/v1alpha2", v2(content(n_iter=2)), f"{C}.n_iter"),
    Case("v2 restore faces", "/v1alpha2", v2(content(restore_faces=True)), f"{C}.restore_faces"),
    Case("v2 a script", "/v1alpha2", v2(content(script_name="x/y/z plot")), f"{C}.script_name"),
    Case("v2 unknown field", "/v1alpha2", v2(content(guidance_scale=7)), f"{C}.guidance_scale"),
    Case("v2 scheduler unknown", "/v1alpha2", v2(content(scheduler="Exponential")), f"{C}.scheduler"),
    Case(
        "v2 controlnet script",
        "/v1alpha2",
        v2(content(alwayson_scripts={"controlnet": {"args": []}})),
        f"{C}.alwayson_scripts.controlnet",
    ),
    Case("v2 alwayson not an object", "/v1alpha2", v2(content(alwayson_scripts=[])), f"{C}.alwayson_scripts"),
    Case(
        "v2 override another setting",
        "/v1alpha2",
        v2(content(override_settings={"CLIP_stop_at_last_layers": 2})),
        f"{C}.override_settings.CLIP_stop_at_last_layers",
    ),
    Case(
        "v2 unknown checkpoint",
        "/v1alpha2",
        v2(content(alwayson_scripts={"sd_model_checkpoint": "sd_xl_base_1.0.safetensors"})),
        f"{C}.alwayson_scripts.sd_model_checkpoint",
    ),
    Case(
        "v2 two different checkpoints",
        "/v1alpha2",
        v2(
            content(
                override_settings={"sd_model_checkpoint": "sd15"},
                alwayson_scripts={"sd_model_checkpoint": "other.safetensors"},
            )
        ),
        f"{C}.alwayson_scripts.sd_model_checkpoint",
    ),
    Case(
        "v2 i2i without image",
        "/v1alpha2",
        v2(lambda b: b["task"]["content"].pop("init_images"), "i2i"),
        f"{C}.init_images",
    ),
    Case(
        "v2 i2i two images",
        "/v1alpha2",
        v2(content(init_images=["s3://b/1.png", "s3://b/2.png"]), "i2i"),
        f"{C}.init_images",
    ),
    Case(
        "v2 t2i with an init image",
        "/v1alpha2",
        v2(content(init_images=["s3://b/1.png"])),
        f"{C}.init_images",
    ),
    Case(
        "v2 denoising over 1",
        "/v1alpha2",
        v2(content(denoising_strength=2), "i2i"),
        f"{C}.denoising_strength",
    ),
    # -- v1alpha1 (the SD WebUI body is the request; alwayson_scripts route it)
    Case("v1 no alwayson_scripts", "/v1alpha1", v1(lambda b: b.pop("alwayson_scripts")), "alwayson_scripts"),
    Case("v1 no task", "/v1alpha1", v1(lambda b: b["alwayson_scripts"].pop("task")), "alwayson_scripts.task"),
    Case(
        "v1 no id_task",
        "/v1alpha1",
        v1(lambda b: b["alwayson_scripts"].pop("id_task")),
        "alwayson_scripts.id_task",
    ),
    Case(
        "v1 no checkpoint",
        "/v1alpha1",
        v1(lambda b: b["alwayson_scripts"].pop("sd_model_checkpoint")),
        "alwayson_scripts.sd_model_checkpoint",
    ),
    Case("v1 id_task with spaces", "/v1alpha1", v1(scripts(id_task="my task")), "alwayson_scripts.id_task"),
    Case("v1 task unknown", "/v1alpha1", v1(scripts(task="inpaint")), "alwayson_scripts.task"),
    Case("v1 save_dir escapes", "/v1alpha1", v1(scripts(save_dir="a/../../b")), "alwayson_scripts.save_dir"),
    Case(
        "v1 unknown checkpoint",
        "/v1alpha1",
        v1(scripts(sd_model_checkpoint="v2-1_768.safetensors")),
        "alwayson_scripts.sd_model_checkpoint",
    ),
    Case(
        "v1 image_link empty", "/v1alpha1", v1(scripts(image_link=""), "i2i"), "alwayson_scripts.image_link"
    ),
    Case("v1 custom vae", "/v1alpha1", v1(scripts(sd_vae="kl-f8.safetensors")), "alwayson_scripts.sd_vae"),
    Case("v1 prompt blank", "/v1alpha1", v1(lambda b: b.update(prompt="  ")), "prompt"),
    Case("v1 width as text", "/v1alpha1", v1(lambda b: b.update(width="wide")), "width"),
    Case("v1 batch over max", "/v1alpha1", v1(lambda b: b.update(batch_size=32)), "batch_size"),
    Case("v1 tiling", "/v1alpha1", v1(lambda b: b.update(tiling=True)), "tiling"),
]


def test_there_are_at_least_30_distinct_malformed_compat_requests() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 30


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> Iterator[EaselClient]:
    stack.reset()
    with client_for(stack, "acme") as c:
        yield c


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_compat_request_is_a_4xx_naming_the_field_and_leaves_no_trace(
    case: Case, client: EaselClient, stack: LocalStack
) -> None:
    reply = call(client, "POST", case.path, json_body=case.body)
    assert reply.status == case.status, reply.body
    assert reply.error.get("field") == case.field, reply.error
    assert reply.error["message"]
    assert table_items(stack) == []
    assert sum(message_counts(stack).values()) == 0
