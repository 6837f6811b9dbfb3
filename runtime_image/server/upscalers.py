"""Upscalers as A1111 names them: built-ins (None, Lanczos, Nearest), ESRGAN-family files, latent modes.

Image upscalers follow A1111's ``Upscaler.upscale``: run the model (or the resampler) until the image is at
least the destination size (at most 3 times), then resize to the destination exactly with Lanczos; the
destination of "scale by s" is ``floor(side * s / 8) * 8``. The latent modes (hires fix only) resize the
latents with torch interpolation, as A1111's ``latent_upscale_modes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from runtime_image.server.errors import RequestError

# A1111's shared.latent_upscale_modes: name -> (torch interpolate mode, antialias).
LATENT_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
BUILTIN: dict[str, Image.Resampling | None] = {
    "None": None,
    "Lanczos": Image.Resampling.LANCZOS,
    "Nearest": Image.Resampling.NEAREST,
}
# The hires fix default when a request names none (A1111's hr_upscaler setting default).
DEFAULT_HR_UPSCALER = "Latent"


@dataclass(frozen=True)
class Upscaler:
    """A resolved upscaler: a built-in resampler or a loaded network (``net``, an RRDBNet)."""

    name: str
    resample: Image.Resampling | None = None
    net: Any = None
    nbytes: int = 0

    @property
    def scale(self) -> int:
        return int(self.net.scale) if self.net is not None else 4

    def release(self) -> None:
        """Cache protocol (nothing to park: upscalers live on the host between uses)."""


def builtin(name: str) -> Upscaler:
    return Upscaler(name, resample=BUILTIN[name])


def _step(up: Upscaler, image: Image.Image, scale: float) -> Image.Image:
    if up.net is not None:
        param = next(up.net.parameters())
        arr = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
        x = arr.permute(2, 0, 1).unsqueeze(0).to(param.device, param.dtype)
        from runtime_image.server.esrgan import upscale

        with torch.inference_mode():
            y = upscale(up.net, x)
        out = (y[0].permute(1, 2, 0).float().cpu().numpy() * 255.0).round().astype(np.uint8)
        return Image.fromarray(out)
    if up.resample is None:
        return image
    return image.resize((int(image.width * scale), int(image.height * scale)), up.resample)


def upscale_by(up: Upscaler, image: Image.Image, scale: float) -> Image.Image:
    """A1111 ``Upscaler.upscale``: destination sides rounded down to a multiple of 8."""
    dest_w = int((image.width * scale) // 8 * 8)
    dest_h = int((image.height * scale) // 8 * 8)
    for i in range(3):
        if image.width >= dest_w and image.height >= dest_h and (i > 0 or scale != 1):
            break
        shape = image.size
        image = _step(up, image, scale)
        if image.size == shape:
            break
    if image.size != (dest_w, dest_h):
        image = image.resize((dest_w, dest_h), Image.Resampling.LANCZOS)
    return image


def upscale_image(up: Upscaler, image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111 ``images.resize_image(0, ...)`` with an upscaler: upscale when growing, then exact size."""
    scale = max(width / image.width, height / image.height)
    if scale > 1.0:
        image = upscale_by(up, image, scale)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image


def extras_upscale(
    up: Upscaler, image: Image.Image, *, mode: int, by: float, to_w: int, to_h: int, crop: bool
) -> Image.Image:
    """A1111's extras "Upscale" step (``resize_mode`` 0: scale by; 1: scale to, centred crop if asked)."""
    if up.name == "None":
        return image
    if mode == 1:
        by = max(to_w / image.width, to_h / image.height)
    out = upscale_by(up, image, by)
    if mode == 1 and crop:
        canvas = Image.new("RGB", (to_w, to_h))
        canvas.paste(out, (to_w // 2 - out.width // 2, to_h // 2 - out.height // 2))
        out = canvas
    return out


def check_name(name: str | None, field: str, available: list[str], *, latent: bool) -> str:
    """The upscaler name as given, or 422 naming ``field`` with the names that exist."""
    known = [*BUILTIN, *available] + (list(LATENT_MODES) if latent else [])
    if name is None or name in known:
        return name or ("None" if not latent else DEFAULT_HR_UPSCALER)
    lower = {k.lower(): k for k in known}
    if name.lower() in lower:
        return lower[name.lower()]
    raise RequestError(field, name, f"unknown upscaler; use one of: {', '.join(known)}")
