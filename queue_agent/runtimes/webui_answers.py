"""Reading an SD WebUI dialect answer: images, JSON, the error code and detail, and the agent's error for a
refusal (the table in :mod:`queue_agent.runtimes.webui`)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import httpx

from queue_agent.errors import LoraMissing, ModelMissing, RuntimeFault, RuntimeRejected, RuntimeUnavailable


def refusal(what: str, r: httpx.Response, not_found: Callable[[str], Exception] | None) -> Exception:
    """The agent's error for an Easel runtime's answer >= 400."""
    detail = error_detail(r)
    if r.status_code == 503:
        return RuntimeUnavailable(f"{what}: 503 {detail}")
    if r.status_code == 404 and not_found is not None:
        return not_found(detail)
    if r.status_code == 404 and error_code(r) == "lora_not_found":
        return LoraMissing(f"runtime refused {what}: {detail}")
    if r.status_code in (400, 404, 413, 422):
        return RuntimeRejected(f"runtime refused {what} ({r.status_code}): {detail}")
    return RuntimeFault(f"{what}: HTTP {r.status_code}: {detail}")


def decode_images(kind: str, data: dict[str, Any]) -> list[bytes]:
    images = data.get("images")
    if not isinstance(images, list):
        raise RuntimeFault(f"{kind}: answer has no 'images' list")
    out = []
    for i, item in enumerate(images):
        if not isinstance(item, str):
            raise RuntimeFault(f"{kind}: images[{i}] is not a string")
        _, _, b64 = item.rpartition(",")  # tolerate data: URLs
        try:
            out.append(base64.b64decode(b64, validate=True))
        except (binascii.Error, ValueError):
            raise RuntimeFault(f"{kind}: images[{i}] is not base64") from None
    return out


def item_error(path: str, item: dict[str, Any]) -> Exception:
    """One batch item's refusal, mapped as the same status of a lone generation is."""
    status, code = item.get("status"), str(item.get("error", ""))
    detail = str(item.get("detail", code))[:300]
    what = f"POST {path}"
    if status == 404 and code == "lora_not_found":
        return LoraMissing(f"runtime refused {what}: {detail}")
    if status == 404 and code == "model_not_found":
        return ModelMissing(f"runtime has no model: {detail}")
    if status in (400, 404, 413, 422):
        return RuntimeRejected(f"runtime refused {what} ({status}): {detail}")
    return RuntimeFault(f"{what}: item status {status}: {detail}")


def answer_json(r: httpx.Response) -> dict[str, Any]:
    try:
        data = r.json()
    except ValueError:
        raise RuntimeFault(f"{r.request.method} {r.request.url.path}: answer is not JSON") from None
    if not isinstance(data, dict):
        raise RuntimeFault(f"{r.request.method} {r.request.url.path}: answer is not a JSON object")
    return data


def error_code(r: httpx.Response) -> str:
    try:
        data = r.json()
    except ValueError:
        return ""
    return str(data.get("error", "")) if isinstance(data, dict) else ""


def error_detail(r: httpx.Response) -> str:
    try:
        data = r.json()
    except ValueError:
        return r.text[:300]
    if isinstance(data, dict):
        for key in ("detail", "error", "message", "errors"):
            if key in data:
                return str(data[key])[:300]
    return str(data)[:300]
