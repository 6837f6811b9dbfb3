"""Output image encodings as A1111's API writes them: PNG with a ``parameters`` text chunk, JPEG and WebP
with the infotext in EXIF UserComment (``UNICODE`` charset prefix, UTF-16 big-endian, as piexif dumps it).

The format comes from ``override_settings.samples_format`` (A1111) or the Easel ``output_format``; quality
from ``jpeg_quality`` (both JPEG and WebP, as in A1111) and ``webp_lossless``.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

from PIL import Image, PngImagePlugin

from runtime_image.server.errors import RequestError

FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_UNICODE_PREFIX = b"UNICODE\x00"


@dataclass(frozen=True)
class OutputFormat:
    format: str = "PNG"  # PIL format name
    quality: int = 80  # A1111's jpeg_quality default
    lossless: bool = False

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


def output_format(name: object, quality: object, lossless: object, *, field: str) -> OutputFormat:
    """Validate the three settings; ``field`` is where the format name came from (for the 422)."""
    key = str(name).strip().lower() if name is not None else "png"
    if key not in FORMATS:
        raise RequestError(field, name, f"unsupported format; use one of: {', '.join(sorted(set(FORMATS)))}")
    q = 80 if quality is None else quality
    if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 100:
        raise RequestError("override_settings.jpeg_quality", quality, "must be an integer 1..100")
    if lossless is not None and not isinstance(lossless, bool):
        raise RequestError("override_settings.webp_lossless", lossless, "must be true or false")
    return OutputFormat(FORMATS[key], q, bool(lossless))


def user_comment(text: str) -> bytes:
    return _UNICODE_PREFIX + text.encode("utf-16-be")


def read_user_comment(raw: bytes) -> str:
    if raw.startswith(_UNICODE_PREFIX):
        return raw[len(_UNICODE_PREFIX) :].decode("utf-16-be")
    return raw[8:].decode("ascii", errors="replace")


def encode(image: Image.Image, fmt: OutputFormat, infotext: str | None) -> bytes:
    buf = io.BytesIO()
    if fmt.format == "PNG":
        meta = None
        if infotext:
            meta = PngImagePlugin.PngInfo()
            meta.add_text("parameters", infotext)
        image.save(buf, format="PNG", pnginfo=meta)
        return buf.getvalue()
    exif = Image.Exif()
    if infotext:
        exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = user_comment(infotext)
    rgb = image.convert("RGB")
    if fmt.format == "JPEG":
        rgb.save(buf, format="JPEG", quality=fmt.quality, exif=exif.tobytes())
    else:
        rgb.save(buf, format="WEBP", quality=fmt.quality, lossless=fmt.lossless, exif=exif.tobytes())
    return buf.getvalue()


def encode_b64(image: Image.Image, fmt: OutputFormat, infotext: str | None) -> str:
    return base64.b64encode(encode(image, fmt, infotext)).decode("ascii")


def read_infotext(data: bytes) -> str | None:
    """The infotext of an encoded image (PNG chunk or EXIF UserComment); None when it has none."""
    with Image.open(io.BytesIO(data)) as img:
        if img.format == "PNG":
            text = img.info.get("parameters")
            return text if isinstance(text, str) else None
        raw = img.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
        return read_user_comment(raw) if isinstance(raw, bytes) else None
