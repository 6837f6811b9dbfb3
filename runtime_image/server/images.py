"""Base64 PNG in and out, the way the SD WebUI API carries images."""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from runtime_image.server.errors import RequestError

# Decoding refuses anything larger: a decompression bomb must not take the GPU host down.
MAX_INPUT_PIXELS = 4096 * 4096


def encode_png(image: Image.Image, infotext: str | None = None) -> str:
    """PNG bytes as base64, with A1111's ``parameters`` text chunk (no timestamps: same input, same bytes)."""
    meta = None
    if infotext:
        meta = PngImagePlugin.PngInfo()
        meta.add_text("parameters", infotext)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=meta)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_image(data: str, field: str) -> Image.Image:
    """Decode a base64 image (raw or a ``data:image/...;base64,`` URL) into RGB."""
    if not isinstance(data, str) or not data:
        raise RequestError(field, "", "must be a non-empty base64 image")
    payload = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(field, data[:32] + "...", "is not valid base64") from None
    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.width * img.height > MAX_INPUT_PIXELS:
                raise RequestError(field, f"{img.width}x{img.height}", f"more than {MAX_INPUT_PIXELS} pixels")
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise RequestError(field, data[:32] + "...", "is not a decodable image") from None
