"""Inpainting the way A1111's img2img does it with a ``mask``, around a diffusers inpainting pipeline.

Before the pipeline: the mask (white = repaint) is inverted if asked, blurred (``mask_blur_x/y``); with
``inpaint_full_res`` ("only masked") the masked region plus padding, widened to the output's aspect ratio, is
cut out and generated at the full output size; the masked area of the init image is pre-filled as
``inpainting_fill`` says. After it: the generated pixels are pasted back through the blurred mask over the
original, so every pixel outside the mask is the original pixel (exactly, with ``mask_blur`` 0).

``inpainting_fill`` 2 and 3 (A1111's "latent noise" and "latent nothing") replace the masked area of the
latents; here the same area is filled in pixel space before encoding (seeded noise, resp. flat grey, which
encodes close to a zero latent): the same intent, not the same numbers as A1111.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps

FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING = 0, 1, 2, 3


@dataclass(frozen=True)
class InpaintSpec:
    mask: Image.Image  # "L", the init image's size, white = repaint (already inverted when asked)
    blur_x: int = 4
    blur_y: int = 4
    fill: int = ORIGINAL
    full_res: bool = True
    padding: int = 0


@dataclass(frozen=True)
class Prepared:
    image: Image.Image  # what the pipeline starts from (width x height)
    mask: Image.Image  # the pipeline's mask (width x height)
    base: Image.Image  # the init image at width x height: what the result is pasted into
    overlay_mask: Image.Image  # where (and how much) generated pixels replace base pixels
    crop: tuple[int, int, int, int] | None  # the region of base that was generated (inpaint_full_res)


def _blur(mask: Image.Image, bx: int, by: int) -> Image.Image:
    if bx <= 0 and by <= 0:
        return mask
    return mask.filter(ImageFilter.GaussianBlur(radius=(max(bx, 0), max(by, 0))))


def crop_region(mask: Image.Image, padding: int) -> tuple[int, int, int, int]:
    """Bounding box of the non-zero mask pixels, grown by ``padding`` and kept inside the image."""
    box = mask.getbbox()
    if box is None:
        return 0, 0, mask.width, mask.height
    x1, y1, x2, y2 = box
    return (
        max(x1 - padding, 0),
        max(y1 - padding, 0),
        min(x2 + padding, mask.width),
        min(y2 + padding, mask.height),
    )


def expand_to_ratio(
    box: tuple[int, int, int, int], width: int, height: int, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Widen ``box`` to the aspect ratio width:height (so the cut-out is not distorted), inside ``size``."""
    x1, y1, x2, y2 = box
    iw, ih = size
    bw, bh = x2 - x1, y2 - y1
    if bw * height < bh * width:
        want = min(round(bh * width / height), iw)
        grow = want - bw
        x1 = max(x1 - grow // 2, 0)
        x2 = min(x1 + want, iw)
        x1 = max(x2 - want, 0)
    elif bw * height > bh * width:
        want = min(round(bw * height / width), ih)
        grow = want - bh
        y1 = max(y1 - grow // 2, 0)
        y2 = min(y1 + want, ih)
        y1 = max(y2 - want, 0)
    return x1, y1, x2, y2


def _prefill(image: Image.Image, mask: Image.Image, fill: int, seed: int) -> Image.Image:
    if fill == ORIGINAL:
        return image
    if fill == FILL:
        # The surrounding colours: the mean of the unmasked pixels, then blurred into the edges.
        arr = np.asarray(image, dtype=np.float32)
        keep = np.asarray(mask) < 128
        mean = arr[keep].mean(axis=0) if keep.any() else np.full(3, 127.0)
        flat = Image.composite(Image.new("RGB", image.size, tuple(int(c) for c in mean)), image, mask)
        source = flat.filter(ImageFilter.GaussianBlur(radius=max(image.size) / 16))
    elif fill == LATENT_NOISE:
        rng = np.random.default_rng(seed)
        source = Image.fromarray(rng.integers(0, 256, (image.height, image.width, 3), dtype=np.uint8))
    else:
        source = Image.new("RGB", image.size, (127, 127, 127))
    return Image.composite(source, image, mask)


def prepare_inpaint(init: Image.Image, spec: InpaintSpec, width: int, height: int, *, seed: int) -> Prepared:
    base = init.resize((width, height), Image.Resampling.LANCZOS)
    # A hard mask stays hard when resized (nearest), so mask_blur 0 keeps the exact-outside-mask promise.
    mask = spec.mask.convert("L").resize((width, height), Image.Resampling.NEAREST)
    mask = _blur(mask, spec.blur_x, spec.blur_y)
    if spec.full_res:
        box = expand_to_ratio(crop_region(mask, spec.padding), width, height, mask.size)
        cut_mask = mask.crop(box).resize((width, height), Image.Resampling.LANCZOS)
        cut_image = base.crop(box).resize((width, height), Image.Resampling.LANCZOS)
        image = _prefill(cut_image, cut_mask, spec.fill, seed)
        return Prepared(image=image, mask=cut_mask, base=base, overlay_mask=mask, crop=box)
    # As A1111: the overlay mask is the blurred mask doubled (a soft edge that reaches full strength sooner).
    overlay = Image.fromarray(np.clip(np.asarray(mask, dtype=np.float32) * 2, 0, 255).astype(np.uint8))
    image = _prefill(base, mask, spec.fill, seed)
    return Prepared(image=image, mask=mask, base=base, overlay_mask=overlay, crop=None)


def composite(generated: Image.Image, prepared: Prepared) -> Image.Image:
    """Paste the generated pixels into the original through the overlay mask."""
    full = prepared.base.copy()
    if prepared.crop is not None:
        x1, y1, x2, y2 = prepared.crop
        full.paste(generated.convert("RGB").resize((x2 - x1, y2 - y1), Image.Resampling.LANCZOS), (x1, y1))
    else:
        full = generated.convert("RGB").resize(full.size, Image.Resampling.LANCZOS)
    return Image.composite(full, prepared.base, prepared.overlay_mask)


def invert(mask: Image.Image) -> Image.Image:
    return ImageOps.invert(mask.convert("L"))
