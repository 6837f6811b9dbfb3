"""Request bodies of the SD WebUI API subset, with AUTOMATIC1111's field names and defaults.

Every field AUTOMATIC1111 (1.10) accepts on txt2img/img2img is declared, so a stock client's full body parses;
fields this runtime does not implement are checked by :mod:`runtime_image.server.policy`. Unknown fields are
ignored, as A1111's own request models do (clients send one superset body to txt2img and img2img); Easel's
/v1 contract is the strict one. Easel's own bodies (training) still refuse unknown fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,254}$"
# Hard safety caps of the runtime itself; the API enforces the (smaller) configured limits before queuing.
MAX_SIDE = 2048
MAX_STEPS = 500
MAX_BATCH = 16
MAX_ITER = 100
MAX_LORAS = 8
MAX_UPSCALE_SIDE = 8192


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraItem(_Body):
    name: Annotated[str, Field(pattern=NAME_PATTERN, description="adapter name: loras/<name>.safetensors")]
    weight: Annotated[float, Field(ge=-4.0, le=4.0)] = 1.0


class _A1111Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class GenerationRequest(_A1111Body):
    """Fields shared by txt2img and img2img (A1111's StableDiffusionProcessing)."""

    prompt: str = ""
    negative_prompt: str | None = ""
    styles: list[str] | None = None
    seed: Annotated[int, Field(ge=-1, le=2**32 - 1, description="-1 picks one; the info reports it")] = -1
    subseed: int | None = -1
    subseed_strength: float | None = 0.0
    seed_resize_from_h: int | None = -1
    seed_resize_from_w: int | None = -1
    sampler_name: str | None = None
    sampler_index: str | None = Field(default="Euler", description="deprecated alias of sampler_name")
    scheduler: str | None = None
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 1
    n_iter: Annotated[int, Field(ge=1, le=MAX_ITER)] = 1
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 50
    cfg_scale: Annotated[float, Field(ge=0.0, le=30.0)] = 7.0
    width: Annotated[int, Field(ge=64, le=MAX_SIDE, multiple_of=8)] = 512
    height: Annotated[int, Field(ge=64, le=MAX_SIDE, multiple_of=8)] = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    firstpass_image: str | None = None
    comments: dict[str, Any] | None = None
    script_name: str | None = None
    script_args: list[Any] = []
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = {}
    force_task_id: str | None = None
    infotext: str | None = None
    # Easel extension: adapters with weights (the A1111 prompt syntax <lora:name:weight> works too).
    loras: Annotated[list[LoraItem], Field(max_length=MAX_LORAS)] = []


class Txt2ImgRequest(GenerationRequest):
    enable_hr: bool = False
    # Used by A1111 only for the hires pass; ignored here like there.
    denoising_strength: float | None = 0.75
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""


class Img2ImgRequest(GenerationRequest):
    init_images: Annotated[list[str], Field(min_length=1, description="base64 images (data: URLs accepted)")]
    resize_mode: int = 0
    image_cfg_scale: float | None = None
    denoising_strength: Annotated[float, Field(ge=0.0, le=1.0)] = 0.75
    mask: str | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool = False


class ExtrasBase(_A1111Body):
    """A1111's ExtrasBaseRequest (same defaults and bounds); face restoration is accepted only at 0."""

    resize_mode: Literal[0, 1] = 0
    show_extras_results: bool = True
    gfpgan_visibility: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0
    codeformer_visibility: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0
    codeformer_weight: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0
    upscaling_resize: Annotated[float, Field(gt=0, le=8, allow_inf_nan=False)] = 2
    upscaling_resize_w: Annotated[int, Field(ge=1, le=MAX_UPSCALE_SIDE)] = 512
    upscaling_resize_h: Annotated[int, Field(ge=1, le=MAX_UPSCALE_SIDE)] = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0
    upscale_first: bool = False
    # Easel extension (A1111 uses its samples_format setting): the answer's image encoding.
    output_format: str | None = None


class ExtrasSingleImageRequest(ExtrasBase):
    image: str = ""


class FileData(_A1111Body):
    data: str
    name: str


class ExtrasBatchImagesRequest(ExtrasBase):
    imageList: Annotated[list[FileData], Field(max_length=MAX_BATCH)]


class OptionsUpdate(BaseModel):
    """``POST /sdapi/v1/options``: A1111 settings; the ones this runtime has are applied, others reported."""

    model_config = ConfigDict(extra="allow")

    sd_model_checkpoint: str | None = None
    CLIP_stop_at_last_layers: Annotated[int | None, Field(ge=1, le=12)] = None


class TrainLoraRequest(_Body):
    """``POST /easel/v1/train-lora``: easel.contract.TrainLoraInput with the images inline as base64."""

    model: str | None = Field(default=None, description="base model; default: the loaded one")
    images: Annotated[list[str], Field(min_length=1, max_length=50)]
    instance_prompt: Annotated[str, Field(min_length=1)]
    output_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    steps: Annotated[int, Field(ge=1, le=10_000)] = 500
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-4
    rank: Annotated[int, Field(ge=1, le=128)] = 4
    resolution: Annotated[int, Field(ge=64, le=1024, multiple_of=8)] = 512
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    # Easel agent options: the models store is read-only in production, so the agent asks for the bytes
    # (base64 ``weights_b64`` in the answer) and stores them itself.
    save: bool = Field(default=True, description="write loras/<output_name>.safetensors into the store")
    return_weights: bool = Field(default=False, description="answer with weights_b64 (safetensors)")


class BatchRequest(_Body):
    """Easel's mixed batch: txt2img bodies validated one by one (an invalid item fails alone)."""

    items: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=16)]
