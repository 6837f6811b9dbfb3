"""SD WebUI sampler names -> diffusers schedulers (the mapping of the diffusers scheduler docs).

A fresh scheduler is built per request from the model's own scheduler config: schedulers keep per-run state,
and the model's config carries its training betas and timestep offsets.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import diffusers
from diffusers import SchedulerMixin

from runtime_image.server.errors import RequestError


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    scheduler: str
    options: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec("Euler", "EulerDiscreteScheduler", aliases=("k_euler",)),
    SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler", aliases=("k_euler_a", "euler_ancestral")),
    SamplerSpec("DPM++ 2M", "DPMSolverMultistepScheduler", aliases=("k_dpmpp_2m",)),
    SamplerSpec("DPM++ 2M Karras", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    SamplerSpec("DPM++ 2M SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    SamplerSpec(
        "DPM++ 2M SDE Karras",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    SamplerSpec("DPM2", "KDPM2DiscreteScheduler", aliases=("k_dpm_2",)),
    SamplerSpec("DPM2 Karras", "KDPM2DiscreteScheduler", {"use_karras_sigmas": True}),
    SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler", aliases=("k_dpm_2_a",)),
    SamplerSpec("DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
    SamplerSpec("Heun", "HeunDiscreteScheduler", aliases=("k_heun",)),
    SamplerSpec("DDIM", "DDIMScheduler", aliases=("ddim",)),
    SamplerSpec("PNDM", "PNDMScheduler", aliases=("plms", "PLMS")),
    SamplerSpec("UniPC", "UniPCMultistepScheduler", aliases=("unipc",)),
)
# The sampler A1111 uses when a request names none.
DEFAULT_SAMPLER = "Euler a"
# A1111 >= 1.9 sends the sigma schedule separately ("scheduler"); the neutral value lets the sampler decide.
SIGMA_SCHEDULES: dict[str, dict[str, Any]] = {
    "automatic": {},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
}
_BY_NAME = {key.lower(): s for s in SAMPLERS for key in (s.name, *s.aliases)}


def sampler_names() -> list[str]:
    return [s.name for s in SAMPLERS]


def find_sampler(name: str, *, field_name: str = "sampler_name") -> SamplerSpec:
    spec = _BY_NAME.get(name.strip().lower())
    if spec is None:
        raise RequestError(field_name, name, f"unknown sampler; use one of: {', '.join(sampler_names())}")
    return spec


def sigma_options(spec: SamplerSpec, schedule: str | None) -> dict[str, Any]:
    """Scheduler options for A1111's ``scheduler`` field, refused when the sampler cannot honour them."""
    key = (schedule or "automatic").strip().lower()
    if key not in SIGMA_SCHEDULES:
        raise RequestError("scheduler", schedule, f"unsupported; use one of: {', '.join(SIGMA_SCHEDULES)}")
    options = SIGMA_SCHEDULES[key]
    accepted = inspect.signature(getattr(diffusers, spec.scheduler).__init__).parameters
    for option in options:
        if option not in accepted:
            raise RequestError("scheduler", schedule, f"sampler '{spec.name}' has no {key} sigma schedule")
    return options


def make_scheduler(spec: SamplerSpec, base_config: Any, schedule: str | None = None) -> SchedulerMixin:
    cls = getattr(diffusers, spec.scheduler)
    scheduler: SchedulerMixin = cls.from_config(
        base_config, **{**spec.options, **sigma_options(spec, schedule)}
    )
    return scheduler
