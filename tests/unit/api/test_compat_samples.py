"""The stable-diffusion-on-eks sample requests (tests/fixtures/sd_on_eks), normalized unchanged."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from easel.config import EaselConfig
from easel.contract import GenerationInput, TaskType
from easel.errors import FieldError
from lambdas.api import sdwebui, v1alpha1, v1alpha2
from lambdas.api.deps import Deps
from tests.unit.api.conftest import event, invoke

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "sd_on_eks"


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return data


def test_v1alpha2_text_to_image_sample(two_runtimes_config: EaselConfig) -> None:
    req = v1alpha2.normalize(sample("v1alpha2/t2i.json"), two_runtimes_config)
    assert (req.id, req.model, req.task_type, req.output_prefix) == (
        "test-t2i",
        "sd15",
        TaskType.TEXT_TO_IMAGE,
        "output",
    )
    assert req.compat is not None and (req.compat.api, req.compat.runtime, req.compat.context) == (
        "v1alpha2",
        "sdruntime",
        "",
    )
    assert isinstance(req.input, GenerationInput) and (req.input.prompt, req.input.steps) == ("A dog", 16)


def test_v1alpha2_image_to_image_sample_keeps_its_url(two_runtimes_config: EaselConfig) -> None:
    body = sample("v1alpha2/i2i.json")
    req = v1alpha2.normalize(body, two_runtimes_config)
    assert isinstance(req.input, GenerationInput)
    assert req.input.init_images == body["task"]["content"]["init_images"]
    assert req.task_type is TaskType.IMAGE_TO_IMAGE


@pytest.mark.parametrize(
    ("name", "needs"),
    [("v1alpha2/extra-single-image.json", "upscale"), ("v1alpha2/pipeline.json", "ComfyUI")],
)
def test_v1alpha2_samples_of_missing_runtimes_name_the_runtime(
    two_runtimes_config: EaselConfig, name: str, needs: str
) -> None:
    with pytest.raises(FieldError) as err:
        v1alpha2.normalize(sample(name), two_runtimes_config)
    assert err.value.field == "task.metadata.tasktype"
    assert needs in err.value.reason and "runtime 'sdruntime'" in err.value.reason


def test_v1alpha1_samples(two_runtimes_config: EaselConfig) -> None:
    t2i = v1alpha1.normalize(sample("v1alpha1/t2i.json"), two_runtimes_config)
    assert (t2i.id, t2i.model, t2i.output_prefix) == ("test-t2i", "sd15", "outputs")
    assert t2i.compat is not None and t2i.compat.checkpoint == "sd_xl_turbo_1.0.safetensors"
    i2i = v1alpha1.normalize(sample("v1alpha1/i2i.json"), two_runtimes_config)
    assert isinstance(i2i.input, GenerationInput)
    assert i2i.input.init_images == [sample("v1alpha1/i2i.json")["alwayson_scripts"]["image_link"]]


def test_v1alpha1_animatediff_sample_is_refused_by_name(two_runtimes_config: EaselConfig) -> None:
    with pytest.raises(FieldError) as err:
        v1alpha1.normalize(sample("v1alpha1/t2v.json"), two_runtimes_config)
    assert err.value.field == "alwayson_scripts.AnimateDiff"


def test_full_sd_webui_body_with_defaults_is_accepted(two_runtimes_config: EaselConfig) -> None:
    body = sample("v1alpha2/t2i.json")
    body["task"]["content"].update(
        {
            "styles": [],
            "n_iter": 1,
            "restore_faces": False,
            "tiling": False,
            "enable_hr": False,
            "hr_scale": 2,
            "hr_upscaler": "Latent",
            "send_images": True,
            "save_images": False,
            "sampler_index": "DPM++ 2M",
            "scheduler": "Karras",
            "override_settings": {"sd_model_checkpoint": "sd_xl_turbo_1.0.safetensors [e869ac7d69]"},
            "cfg_scale": 7,
            "subseed": 12,
            "s_noise": 1.0,
        }
    )
    req = v1alpha2.normalize(body, two_runtimes_config)
    assert isinstance(req.input, GenerationInput) and req.input.sampler_name == "DPM++ 2M Karras"


def test_checkpoint_by_a1111_title_on_a_dynamic_runtime(two_runtimes_config: EaselConfig) -> None:
    body = sample("v1alpha2/t2i.json")
    body["task"]["metadata"]["runtime"] = "community"
    body["task"]["content"]["alwayson_scripts"] = {
        "sd_model_checkpoint": "dreamshaper-8.safetensors [879db523c3]"
    }
    assert v1alpha2.normalize(body, two_runtimes_config).model == "dreamshaper"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"enable_hr": True}, "task.content.enable_hr"),
        ({"n_iter": 2}, "task.content.n_iter"),
        ({"n_iter": True}, "task.content.n_iter"),
        ({"restore_faces": True}, "task.content.restore_faces"),
        ({"mask": "s3://b/k.png", "mask_blur": 4}, "task.content.mask"),
        ({"scheduler": "Exponential"}, "task.content.scheduler"),
        (
            {"override_settings": {"CLIP_stop_at_last_layers": 2}},
            "task.content.override_settings.CLIP_stop_at_last_layers",
        ),
        ({"promt": "typo"}, "task.content.promt"),
        ({"alwayson_scripts": {"sd_vae": "vae-ft-mse.safetensors"}}, "task.content.alwayson_scripts.sd_vae"),
        ({"steps": "many"}, "task.content.steps"),
    ],
)
def test_non_default_sd_webui_fields_are_named(
    two_runtimes_config: EaselConfig, change: dict[str, Any], field: str
) -> None:
    body = sample("v1alpha2/t2i.json")
    body["task"]["content"].update(change)
    with pytest.raises(FieldError) as err:
        v1alpha2.normalize(body, two_runtimes_config)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [("output", "output"), ("a/b/", "a/b"), ("/x", "x"), ("../up", None), ("inputs", None), ("a//b", None)],
)
def test_prefix_stays_inside_the_tenant(
    two_runtimes_config: EaselConfig, prefix: str, ok: str | None
) -> None:
    body = copy.deepcopy(sample("v1alpha2/t2i.json"))
    body["task"]["metadata"]["prefix"] = prefix
    if ok is None:
        with pytest.raises(FieldError) as err:
            v1alpha2.normalize(body, two_runtimes_config)
        assert err.value.field == "task.metadata.prefix"
    else:
        assert v1alpha2.normalize(body, two_runtimes_config).output_prefix == ok


def test_split_ignores_only_what_cannot_change_pixels() -> None:
    assert sdwebui.IGNORED.isdisjoint(sdwebui.MAPPED) and sdwebui.IGNORED.isdisjoint(sdwebui.DEFAULTS)


def test_trailing_slash_as_the_reference_test_script_posts(deps: Deps) -> None:
    status, body = invoke(event("POST", "/v1alpha2/", body=sample("v1alpha2/t2i.json")))
    assert status == 200, body
    assert body["output_location"].endswith("/tenants/acme/output/test-t2i")
    # Same client id, another body: the idempotency check holds across both compat routes.
    status, body = invoke(event("POST", "/v1alpha1/", body=sample("v1alpha1/t2i.json")))
    assert (status, body["error"]["code"]) == (409, "task_conflict"), body
