"""The stable-diffusion-on-eks sample requests (tests/fixtures/sd_on_eks), normalized unchanged."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from easel.config import EaselConfig, load_config, parse_config
from easel.contract import GenerationInput, PipelineInput, TaskType, UpscaleInput
from easel.errors import ConfigError, FieldError
from lambdas.api import inputs, sdwebui, v1alpha1, v1alpha2
from lambdas.api.deps import Deps
from tests.unit.api.conftest import event, invoke

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "sd_on_eks"
COMPAT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "compat-samples.yaml"


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


@pytest.fixture
def samples_config() -> EaselConfig:
    """'sdruntime' aliases the Easel pool and a ComfyUI pool (tests/configs/compat-samples.yaml)."""
    return load_config(COMPAT_CONFIG)


def test_v1alpha2_extra_single_image_sample_is_an_upscale(samples_config: EaselConfig) -> None:
    body = sample("v1alpha2/extra-single-image.json")
    req = v1alpha2.normalize(body, samples_config)
    assert (req.id, req.task_type, req.model, req.output_prefix) == (
        "test-extra",
        TaskType.UPSCALE,
        "sd15",
        "output",
    )
    assert isinstance(req.input, UpscaleInput)
    # resize_mode 0: scale by upscaling_resize (A1111 ignores upscaling_resize_w/_h then).
    assert (req.input.upscaler, req.input.upscaling_resize, req.input.upscaling_crop) == (
        "R-ESRGAN 4x+",
        4,
        False,
    )
    assert (req.input.upscaling_resize_w, req.input.upscaling_resize_h) == (None, None)
    assert req.input.image == body["task"]["content"]["image"]


def test_v1alpha2_pipeline_sample_goes_to_the_comfyui_pool(samples_config: EaselConfig) -> None:
    body = sample("v1alpha2/pipeline.json")
    req = v1alpha2.normalize(body, samples_config)
    assert (req.task_type, req.model) == (TaskType.PIPELINE, "flows")
    assert isinstance(req.input, PipelineInput) and req.input.workflow == body["task"]["content"]
    assert req.compat is not None and req.compat.runtime == "sdruntime"
    # The same alias, a generation: the Easel pool.
    assert v1alpha2.normalize(sample("v1alpha2/t2i.json"), samples_config).model == "sd15"


@pytest.mark.parametrize(
    ("name", "needs"),
    [("v1alpha2/extra-single-image.json", "not 'upscale'"), ("v1alpha2/pipeline.json", "comfyui runtime")],
)
def test_v1alpha2_samples_without_their_runtime_name_it(
    two_runtimes_config: EaselConfig, name: str, needs: str
) -> None:
    """two-runtimes.yaml: no ComfyUI pool, and the sdruntime pool's model does not upscale."""
    with pytest.raises(FieldError) as err:
        v1alpha2.normalize(sample(name), two_runtimes_config)
    assert err.value.field == "task.metadata.tasktype"
    assert needs in err.value.reason and ("'sdruntime'" in err.value.reason or "'sd15'" in err.value.reason)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"gfpgan_visibility": 0.5}, "task.content.gfpgan_visibility"),
        ({"codeformer_visibility": 1}, "task.content.codeformer_visibility"),
        (
            {"upscaler_2": "Lanczos", "extras_upscaler_2_visibility": 0.3},
            "task.content.extras_upscaler_2_visibility",
        ),
        ({"resize_mode": 2}, "task.content.resize_mode"),
        ({"upscaling_resize": 100}, "task.content.upscaling_resize"),
        ({"upscaler_1": "Latent"}, "task.content.upscaler_1"),
        ({"resize_mode": 1, "upscaling_resize_w": 4}, "task.content.upscaling_resize_w"),
        ({"image": ""}, "task.content.image"),
        ({"imag": "x"}, "task.content.imag"),
    ],
)
def test_extra_single_image_fields_are_named(
    samples_config: EaselConfig, change: dict[str, Any], field: str
) -> None:
    body = sample("v1alpha2/extra-single-image.json")
    body["task"]["content"].update(change)
    with pytest.raises(FieldError) as err:
        v1alpha2.normalize(body, samples_config)
    assert err.value.field == field, err.value


def test_extra_single_image_to_a_size_and_defaults(samples_config: EaselConfig) -> None:
    body = sample("v1alpha2/extra-single-image.json")
    body["task"]["content"] = {"image": "s3://b/tenants/acme/inputs/x.png", "resize_mode": 1}
    inp = v1alpha2.normalize(body, samples_config).input
    assert isinstance(inp, UpscaleInput)
    # SD WebUI's defaults: upscaler_1 "None", 512 x 512, crop on.
    assert (inp.upscaler, inp.upscaling_resize_w, inp.upscaling_resize_h, inp.upscaling_crop) == (
        "None",
        512,
        512,
        True,
    )


def test_pipeline_and_batch_errors_are_named(samples_config: EaselConfig) -> None:
    body = sample("v1alpha2/pipeline.json")
    body["task"]["content"]["3"]["inputs"]["model"] = ["99", 0]
    with pytest.raises(FieldError) as err:
        v1alpha2.normalize(body, samples_config)
    assert err.value.field.startswith("task.content.3"), err.value
    body = sample("v1alpha2/extra-single-image.json")
    body["task"]["metadata"]["tasktype"] = "extra-batch-images"
    with pytest.raises(FieldError) as err:
        v1alpha2.normalize(body, samples_config)
    assert err.value.field == "task.metadata.tasktype" and "extra-single-image" in err.value.reason


def test_an_alias_names_one_pool_per_kind_of_task(samples_config: EaselConfig) -> None:
    data = samples_config.model_dump(mode="json")
    data["runtimes"].append(
        {**data["runtimes"][1], "name": "webui", "kind": "sdwebui", "aliases": ["sdruntime"]}
    )
    with pytest.raises(ConfigError, match="'sdruntime' already names a runtime"):
        parse_config(data, "test")


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


def test_extra_single_image_url_is_checked_at_submit(samples_config: EaselConfig) -> None:
    """The sample's image URL is refused before anything is queued unless its host is allowed; an S3 image
    of another tenant too. The error names the client's field once renamed by the route."""
    req = v1alpha2.normalize(sample("v1alpha2/extra-single-image.json"), samples_config)
    refs = inputs.request_refs(req)
    assert refs == [("input.image", sample("v1alpha2/extra-single-image.json")["task"]["content"]["image"])]

    def check(refs: list[tuple[str, str]], config: EaselConfig) -> None:
        inputs.check_refs(refs, tenant="acme", bucket="outs", config=config, objects=None, pending=set())  # type: ignore[arg-type]

    with pytest.raises(FieldError, match=r"not in inputs\.allowed_https_hosts") as err:
        check(refs, samples_config)
    assert err.value.field == "input.image"
    allowed = samples_config.model_copy(
        update={
            "inputs": samples_config.inputs.model_copy(update={"allowed_https_hosts": ["huggingface.co"]})
        }
    )
    check(refs, allowed)
    with pytest.raises(FieldError, match="outside your tenant"):
        check([("input.image", "s3://outs/tenants/globex/inputs/cat.png")], samples_config)
