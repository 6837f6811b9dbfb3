"""Task request, task object, queue message and their routing attributes.

Field names of ``input`` follow the SD WebUI (AUTOMATIC1111) API so existing payloads carry over.
Static rules (types, ranges, multiples of 8) live here; limits that come from config (max size, max steps,
prompt length) are checked by :func:`easel.limits.check_limits`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from easel.contract.pipeline import PipelineInput, check_workflow
from easel.contract.status import TaskStatus
from easel.contract.values import FLOAT_BOUNDS_SCHEMA, JSON_VALUE_BOUNDS, check_json_value, storable_float
from easel.errors import FieldError

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$"
# Where outputs go inside the tenant's own prefix (``tenants/<tenant>/<output_prefix>/<id>/``): 1-4 path
# segments; the segments the tenant prefix already uses for other things are refused by the validator.
OUTPUT_PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}){0,3}$"
RESERVED_PREFIXES = frozenset({"inputs", "loras"})

# SD WebUI sampler names the runtime maps to diffusers schedulers.
SAMPLERS: tuple[str, ...] = (
    "Euler",
    "Euler a",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DDIM",
    "UniPC",
    "Heun",
    "PNDM",
)


class TaskType(StrEnum):
    TEXT_TO_IMAGE = "text-to-image"
    IMAGE_TO_IMAGE = "image-to-image"
    TRAIN_LORA = "train-lora"
    # A ComfyUI workflow (API format) run as given on a comfyui runtime (easel.contract.pipeline).
    PIPELINE = "pipeline"
    UPSCALE = "upscale"


# Output encodings (S3 key suffix and Content-Type follow); quality applies to jpeg and webp, as in A1111.
OutputFormat = Literal["png", "jpeg", "webp"]
# ControlNet preprocessors the runtime runs from code alone (the extension's names); the weight-needing
# ones (depth, openpose, ...) are refused here rather than failing on the GPU.
CONTROLNET_MODULES: tuple[str, ...] = (
    "none",
    "invert",
    "canny",
    "threshold",
    "binary",
    "blur_gaussian",
    "tile_resample",
)
# Hires upscalers every runtime has: A1111's latent modes and its built-in image resamplers. Names of
# ESRGAN-family files in the models store are accepted too (the runtime refuses an unknown one).
BUILTIN_UPSCALERS: tuple[str, ...] = ("None", "Lanczos", "Nearest")
LATENT_UPSCALERS: tuple[str, ...] = (
    "Latent",
    "Latent (antialiased)",
    "Latent (bicubic)",
    "Latent (bicubic antialiased)",
    "Latent (nearest)",
    "Latent (nearest-exact)",
)
UPSCALER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.()+-]{0,127}$"


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class Lane(StrEnum):
    """Queue lanes per runtime. ``low`` priority shares the normal lane (documented in docs/api.md)."""

    HIGH = "high"
    NORMAL = "normal"


def lane_for(priority: Priority | str) -> Lane:
    return Lane.HIGH if Priority(priority) is Priority.HIGH else Lane.NORMAL


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*")
    @classmethod
    def _storable_decimals(cls, v: Any) -> Any:
        # Every decimal of a request within what the store holds (the schema's `not` on each one).
        return storable_float(v) if isinstance(v, float) else v


# Numbers are typed as the schema publishes them: an integer field takes JSON integers only (not "1",
# true or 1.0), a decimal field takes integers and decimals (bounded by _Strict to what the store can
# hold, easel.contract.values). New numeric fields use these two.
Int = Annotated[int, Field(strict=True)]
Real = Annotated[float, Field(strict=True, json_schema_extra=FLOAT_BOUNDS_SCHEMA)]


class LoraRef(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN, description="LoRA adapter name in the model store")]
    weight: Annotated[Real, Field(ge=-4.0, le=4.0, description="adapter scale")] = 1.0


S3Uri = Annotated[str, Field(pattern=S3_URI_PATTERN, max_length=1024)]
ImageRef = Annotated[str, Field(min_length=1, max_length=2048, description="s3:// URI or https URL")]


class ControlNetUnitInput(_Strict):
    """One ControlNet unit (the sd-webui-controlnet extension's field names and defaults)."""

    image: ImageRef
    model: Annotated[str, Field(pattern=NAME_PATTERN, description="a ControlNet in the models store")]
    module: str = "none"
    weight: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    guidance_start: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    guidance_end: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    control_mode: Literal["Balanced", "ControlNet is more important"] = "Balanced"
    resize_mode: Literal["Just Resize", "Crop and Resize", "Resize and Fill"] = "Crop and Resize"
    processor_res: Annotated[int, Field(ge=-1, le=2048)] = -1
    threshold_a: Annotated[float, Field(ge=-1, le=255)] = -1
    threshold_b: Annotated[float, Field(ge=-1, le=255)] = -1
    pixel_perfect: bool = False
    enabled: bool = True

    @field_validator("module")
    @classmethod
    def _known_module(cls, v: str) -> str:
        if v not in CONTROLNET_MODULES:
            raise ValueError(
                f"unknown or unavailable preprocessor '{v}'; use one of: {', '.join(CONTROLNET_MODULES)}"
            )
        return v

    @model_validator(mode="after")
    def _guidance_order(self) -> ControlNetUnitInput:
        if self.guidance_start > self.guidance_end:
            raise ValueError("guidance_start must not exceed guidance_end")
        return self


def _known_upscaler(v: str, *, latent: bool) -> str:
    if v in LATENT_UPSCALERS and not latent:
        raise ValueError("latent upscalers only exist for the hires fix")
    return v


class GenerationInput(_Strict):
    """Input of text-to-image and image-to-image (SD WebUI field names)."""

    prompt: Annotated[str, Field(min_length=1)]
    negative_prompt: str = ""
    # The upper bounds are the ceilings of the config's limits (api.limits, checked per deployment).
    steps: Annotated[Int, Field(ge=1, le=500)] = 20
    width: Annotated[Int, Field(ge=64, le=4096, multiple_of=8)] = 512
    height: Annotated[Int, Field(ge=64, le=4096, multiple_of=8)] = 512
    cfg_scale: Annotated[Real, Field(ge=0.0, le=30.0)] = 7.0
    sampler_name: str = "Euler a"
    seed: Annotated[Int, Field(ge=-1, le=2**32 - 1, description="-1 picks a random seed")] = -1
    batch_size: Annotated[Int, Field(ge=1, le=16)] = 1
    init_images: Annotated[list[ImageRef], Field(max_length=1)] = []
    denoising_strength: Annotated[Real, Field(ge=0.0, le=1.0)] = 0.75
    loras: Annotated[list[LoraRef], Field(max_length=5)] = []
    output_format: OutputFormat = "png"
    jpeg_quality: Annotated[int, Field(ge=1, le=100, description="jpeg and webp quality (A1111's)")] = 80
    # Inpainting (image-to-image with a mask; A1111's img2img fields and API defaults).
    mask: ImageRef | None = None
    mask_blur: Annotated[int, Field(ge=0, le=64)] = 4
    inpainting_fill: Annotated[
        int, Field(ge=0, le=3, description="fill, original, latent noise, nothing")
    ] = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: Annotated[int, Field(ge=0, le=256)] = 0
    inpainting_mask_invert: Literal[0, 1] = 0
    # Hires fix (text-to-image; the second pass uses denoising_strength, as in A1111).
    enable_hr: bool = False
    hr_scale: Annotated[float, Field(ge=1.0, le=4.0)] = 2.0
    hr_resize_x: Annotated[int, Field(ge=0, multiple_of=8)] = 0
    hr_resize_y: Annotated[int, Field(ge=0, multiple_of=8)] = 0
    hr_upscaler: Annotated[str, Field(pattern=UPSCALER_PATTERN)] = "Latent"
    hr_second_pass_steps: Annotated[int, Field(ge=0)] = 0
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    hr_sampler_name: str | None = None
    controlnet: Annotated[list[ControlNetUnitInput], Field(max_length=4)] = []

    @field_validator("sampler_name", "hr_sampler_name")
    @classmethod
    def _known_sampler(cls, v: str | None) -> str | None:
        if v is not None and v not in SAMPLERS:
            raise ValueError(f"unknown sampler '{v}'; use one of: {', '.join(SAMPLERS)}")
        return v

    def hires_size(self) -> tuple[int, int] | None:
        """The final size of a hires-fix request (A1111's rules), None without hires fix."""
        if not self.enable_hr:
            return None
        if self.hr_resize_x or self.hr_resize_y:
            w = self.hr_resize_x or round(self.hr_resize_y * self.width / self.height)
            h = self.hr_resize_y or round(self.hr_resize_x * self.height / self.width)
        else:
            w, h = int(self.width * self.hr_scale), int(self.height * self.hr_scale)
        return w // 8 * 8, h // 8 * 8

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v


class TrainLoraInput(_Strict):
    """Input of train-lora: a few images of a subject and the name to save the adapter under."""

    images: Annotated[list[ImageRef], Field(min_length=1, max_length=50)]
    instance_prompt: Annotated[str, Field(min_length=1)]
    output_name: Annotated[str, Field(pattern=NAME_PATTERN)]
    steps: Annotated[Int, Field(ge=1, le=10_000)] = 500
    learning_rate: Annotated[Real, Field(gt=0.0, le=1.0)] = 1e-4
    rank: Annotated[Int, Field(ge=1, le=128)] = 4
    resolution: Annotated[Int, Field(ge=64, le=1024, multiple_of=8)] = 512
    seed: Annotated[Int, Field(ge=0, le=2**32 - 1)] = 0


class UpscaleInput(_Strict):
    """Input of upscale (A1111 "extras"): one image, an upscaler, a factor or a target size."""

    image: ImageRef
    upscaler: Annotated[
        str, Field(pattern=UPSCALER_PATTERN, description="None, Lanczos, Nearest or a file")
    ] = "Lanczos"
    upscaling_resize: Annotated[float, Field(gt=0.0, le=8.0)] = 2.0
    upscaling_resize_w: Annotated[int | None, Field(ge=8, le=8192)] = None
    upscaling_resize_h: Annotated[int | None, Field(ge=8, le=8192)] = None
    upscaling_crop: bool = True
    output_format: OutputFormat = "png"
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 80

    @field_validator("upscaler")
    @classmethod
    def _image_upscaler(cls, v: str) -> str:
        return _known_upscaler(v, latent=False)

    @model_validator(mode="after")
    def _both_sides(self) -> UpscaleInput:
        if (self.upscaling_resize_w is None) != (self.upscaling_resize_h is None):
            raise ValueError("give both upscaling_resize_w and upscaling_resize_h, or neither")
        return self


TaskInput = GenerationInput | TrainLoraInput | UpscaleInput | PipelineInput

_INPUT_MODEL: dict[
    TaskType, type[GenerationInput] | type[TrainLoraInput] | type[UpscaleInput] | type[PipelineInput]
] = {
    TaskType.TEXT_TO_IMAGE: GenerationInput,
    TaskType.IMAGE_TO_IMAGE: GenerationInput,
    TaskType.TRAIN_LORA: TrainLoraInput,
    TaskType.UPSCALE: UpscaleInput,
    TaskType.PIPELINE: PipelineInput,
}

WebhookEvent = Literal["start", "completed"]


class CompatInfo(_Strict):
    """How a task arrived on a stable-diffusion-on-eks compat route; the agent then also writes the
    reference's ``.out`` file and result fields. Set by the API only (``/v1/tasks`` cannot send it)."""

    api: Literal["v1alpha1", "v1alpha2"]
    runtime: str = Field(description="the runtime name as the client sent it (may be an alias)")
    checkpoint: str | None = Field(default=None, description="sd_model_checkpoint as sent (v1alpha1)")
    context: Any = Field(default=None, description="metadata.context as sent, echoed in result messages")


def _check_output_prefix(v: str | None) -> str | None:
    if v is not None and v.split("/", 1)[0] in RESERVED_PREFIXES:
        raise ValueError(f"'{v.split('/', 1)[0]}' is reserved inside the tenant prefix")
    return v


class TaskRequest(_Strict):
    """Body of ``POST /v1/tasks``. Build it with :func:`parse_task_request` to get field-named errors."""

    id: Annotated[str | None, Field(pattern=ID_PATTERN, description="client id; makes submit idempotent")] = (
        None
    )
    task_type: TaskType
    model: Annotated[str, Field(pattern=NAME_PATTERN)]
    priority: Priority = Priority.NORMAL
    input: TaskInput
    webhook: AnyHttpUrl | None = None
    webhook_events_filter: list[WebhookEvent] = ["completed"]
    context: Annotated[
        dict[str, Any] | None,
        Field(description=f"any JSON object, returned as given; {JSON_VALUE_BOUNDS}"),
    ] = None
    output_prefix: Annotated[
        str | None,
        Field(pattern=OUTPUT_PREFIX_PATTERN, description="outputs go to tenants/<you>/<prefix>/<id>/"),
    ] = None
    compat: CompatInfo | None = None

    _prefix = field_validator("output_prefix")(_check_output_prefix)

    @field_validator("context")
    @classmethod
    def _storable_context(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        check_json_value(v, "context")
        return v

    @field_validator("webhook")
    @classmethod
    def _https_only(cls, v: AnyHttpUrl | None, info: ValidationInfo) -> AnyHttpUrl | None:
        if v is not None and v.scheme != "https":
            # Local mode only (`easel local up --webhook-allow-origin`): explicitly allowed loopback origins.
            allowed = (info.context or {}).get("insecure_webhook_origins", frozenset())
            if f"{v.scheme}://{v.host}:{v.port}" not in allowed:
                raise ValueError("must be an https:// URL")
        return v

    @model_validator(mode="after")
    def _input_matches_type(self) -> TaskRequest:
        check_input_for_type(self.task_type, self.input)
        return self


def check_input_for_type(task_type: TaskType, data: TaskInput) -> None:
    expected = _INPUT_MODEL[task_type]
    if not isinstance(data, expected):
        raise FieldError("input", f"does not match task_type '{task_type}'")
    if isinstance(data, PipelineInput):
        check_workflow(data.workflow)
    if isinstance(data, GenerationInput):
        if task_type is TaskType.IMAGE_TO_IMAGE and not data.init_images:
            raise FieldError("input.init_images", "image-to-image needs exactly one init image")
        if task_type is TaskType.TEXT_TO_IMAGE and data.init_images:
            raise FieldError("input.init_images", "only image-to-image accepts init_images")
        if task_type is not TaskType.IMAGE_TO_IMAGE and data.mask is not None:
            raise FieldError("input.mask", "only image-to-image accepts a mask")
        if task_type is not TaskType.TEXT_TO_IMAGE and data.enable_hr:
            raise FieldError("input.enable_hr", "the hires fix is for text-to-image")


def _field_errors(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> FieldError:
    errors = []
    for err in exc.errors(include_url=False):
        # An empty key still names a field ('""'); long ones are cut so the error stays readable.
        loc = ".".join(str(p)[:64] or '""' for p in (*prefix, *err["loc"])) or "body"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "field required"
        errors.append({"field": loc, "message": msg})
    first = errors[0]
    return FieldError(first["field"], first["message"], errors)


def compact_input(value: TaskInput) -> dict[str, Any]:
    """``value`` without the fields left at their defaults: what the table and the task queues carry.

    The /v1 input models have grown to some thirty fields, most of them defaults, and every DynamoDB read
    and write of a task is billed (and every SQS message parsed) by size. Reading the compact form back
    through :func:`parse_input` restores every default, so tenants see the same task either way."""
    return value.model_dump(mode="json", exclude_defaults=True)


def parse_input(task_type: TaskType | str, data: Any) -> TaskInput:
    """Validate ``data`` as the input of ``task_type``; errors name fields as ``input.<name>``."""
    model = _INPUT_MODEL[TaskType(task_type)]
    if not isinstance(data, dict):
        raise FieldError("input", "must be a JSON object")
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise _field_errors(exc, ("input",)) from None
    check_input_for_type(TaskType(task_type), parsed)
    return parsed


class _Envelope(_Strict):
    """TaskRequest with ``input`` left raw, so the input can be validated against the right model."""

    id: Annotated[str | None, Field(pattern=ID_PATTERN)] = None
    task_type: TaskType
    model: Annotated[str, Field(pattern=NAME_PATTERN)]
    priority: Priority = Priority.NORMAL
    input: Any
    webhook: Any = None
    webhook_events_filter: Any = ["completed"]
    context: dict[str, Any] | None = None
    output_prefix: Annotated[str | None, Field(pattern=OUTPUT_PREFIX_PATTERN)] = None

    _prefix = field_validator("output_prefix")(_check_output_prefix)


def parse_task_request(body: Any, *, insecure_webhook_origins: frozenset[str] = frozenset()) -> TaskRequest:
    """Validate a decoded JSON body; raise :class:`FieldError` naming the first bad field.

    ``insecure_webhook_origins`` (local mode only): ``http://host:port`` origins accepted as ``webhook``."""
    if not isinstance(body, dict):
        raise FieldError("body", "must be a JSON object")
    check_json_value(body)
    try:
        env = _Envelope.model_validate(body)
    except ValidationError as exc:
        raise _field_errors(exc) from None
    task_input = parse_input(env.task_type, env.input)
    try:
        return TaskRequest.model_validate(
            {**body, "input": task_input}, context={"insecure_webhook_origins": insecure_webhook_origins}
        )
    except ValidationError as exc:
        raise _field_errors(exc) from None


def request_fingerprint(request: TaskRequest) -> str:
    """Stable hash of a request's meaning (id excluded): same id + same fingerprint = same task."""
    data = request.model_dump(mode="json", exclude={"id"})
    for key in ("output_prefix", "compat"):  # fields added later: unset keeps earlier fingerprints
        if data.get(key) is None:
            data.pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class TaskOutput(BaseModel):
    images: list[str] = []
    urls: list[str] = Field(default=[], description="presigned GET URLs, filled on read")
    lora: str | None = Field(default=None, description="s3:// URI of a trained adapter (train-lora)")


class TaskError(BaseModel):
    code: str
    message: str


class TaskMetrics(BaseModel):
    queue_seconds: float | None = None
    predict_seconds: float | None = None
    gpu_seconds: float | None = None


class ProgressPhase(StrEnum):
    """Where a processing task is: the runtime loads its model, runs its steps, or its outputs upload."""

    LOADING = "loading"
    GENERATING = "generating"
    UPLOADING = "uploading"


class TaskProgress(BaseModel):
    """What the agent records on a processing task as it runs (``GET /v1/tasks/{id}`` returns it).

    Written at most about once a second, and only while the task is ``processing``; a terminal task keeps
    the last value (so ``step``/``steps`` say how far a failed or canceled task got).
    """

    phase: ProgressPhase
    step: Annotated[int | None, Field(ge=0, description="sampling (or training) steps done")] = None
    steps: Annotated[int | None, Field(ge=1, description="steps in all")] = None
    queue_seconds: Annotated[
        float | None, Field(ge=0, description="seconds from submit until a worker took the task")
    ] = None
    updated_at: datetime | None = None


class TaskUrls(BaseModel):
    get: str
    cancel: str


class _TypedInput(BaseModel):
    """Validates ``input`` with the model of ``task_type`` (field errors named ``input.<name>``)."""

    @model_validator(mode="before")
    @classmethod
    def _typed_input(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("input"), dict) and "task_type" in data:
            data = {**data, "input": parse_input(data["task_type"], data["input"])}
        return data


class Task(_TypedInput):
    """The task object: API responses, webhook bodies and result notifications."""

    model_config = ConfigDict(extra="ignore")

    id: str
    tenant: str
    status: TaskStatus
    task_type: TaskType
    model: str
    runtime: str
    priority: Priority
    input: TaskInput
    output: TaskOutput | None = None
    error: TaskError | None = None
    context: dict[str, Any] | None = None
    webhook: str | None = None
    webhook_events_filter: list[WebhookEvent] = ["completed"]
    output_prefix: str | None = None
    compat: CompatInfo | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    # Set once the task's message reached the tasks topic; an idempotent replay re-publishes only
    # while it is unset (a crash between the write and the publish), so a retry never double-queues.
    dispatched_at: datetime | None = None
    attempts: int = 0
    metrics: TaskMetrics = TaskMetrics()
    progress: TaskProgress | None = None
    urls: TaskUrls | None = None


class QueueMessage(_TypedInput):
    """What the agent receives (SNS raw delivery): routing fields, input and the trace context."""

    model_config = ConfigDict(extra="ignore")

    version: Literal[1] = 1
    id: Annotated[str, Field(pattern=ID_PATTERN)]
    tenant: str
    task_type: TaskType
    model: str
    runtime: str
    priority: Priority
    input: TaskInput
    created_at: datetime
    trace_context: dict[str, str] = {}
    output_prefix: str | None = None
    compat: CompatInfo | None = None

    def body(self) -> str:
        """The SQS body of this message: JSON with the input in its compact form (:func:`compact_input`)."""
        doc = self.model_dump(mode="json", exclude={"input"})
        doc["input"] = compact_input(self.input)
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_task(cls, task: Task, trace_context: dict[str, str] | None = None) -> QueueMessage:
        return cls(
            id=task.id,
            tenant=task.tenant,
            task_type=task.task_type,
            model=task.model,
            runtime=task.runtime,
            priority=task.priority,
            input=task.input,
            created_at=task.created_at,
            trace_context=trace_context or {},
            output_prefix=task.output_prefix,
            compat=task.compat,
        )


def parse_queue_message(body: str) -> QueueMessage:
    """Decode an SQS body; raise :class:`FieldError` (a permanent error for the agent) if malformed."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise FieldError("body", f"not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise FieldError("body", "must be a JSON object")
    try:
        return QueueMessage.model_validate(data)
    except ValidationError as exc:
        raise _field_errors(exc) from None


def routing_attributes(task: Task | QueueMessage) -> dict[str, str]:
    """SNS message attributes on the tasks topic; the lane queues' filter policies match on these."""
    return {
        "runtime": task.runtime,
        "model": task.model,
        "priority": str(task.priority),
        "task_type": str(task.task_type),
        "tenant": task.tenant,
    }


def result_attributes(task: Task) -> dict[str, str]:
    """SNS message attributes on the results topic, for subscribers' filter policies."""
    return {
        "status": str(task.status),
        "tenant": task.tenant,
        "runtime": task.runtime,
        "task_type": str(task.task_type),
    }


def sns_attributes(attrs: dict[str, str]) -> dict[str, dict[str, str]]:
    """Turn plain attributes into the SNS ``MessageAttributes`` shape."""
    return {k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()}
