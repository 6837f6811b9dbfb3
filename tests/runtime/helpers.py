"""Small helpers shared by the runtime tests."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from PIL import Image


def png_bytes(b64: str) -> bytes:
    return base64.b64decode(b64)


def open_png(b64: str) -> Image.Image:
    raw = png_bytes(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    img = Image.open(io.BytesIO(raw))
    img.load()
    return img


def to_b64_png(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def info(body: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(body["info"])
    return parsed
