"""Output upload to deterministic keys ``tenants/<tenant>/tasks/<id>/<n>.<png|jpg|webp>`` (first writer wins);
a task's ``output_prefix`` (compat ``prefix``/``save_dir``) takes the place of ``tasks``, still inside the
tenant's prefix (:func:`easel.naming.output_dir` refuses anything else).

The suffix and Content-Type follow the task's ``output_format``; the runtime already encodes in that format
(with the infotext), and anything else it answers (a stock WebUI set otherwise) is converted here.

Keys depend only on the task, so a redelivered task can never produce a second set of files. Each put is
conditional (``If-None-Match: *``): an object already there (an earlier attempt, or a concurrent agent on
a duplicate delivery) is kept, so outputs a client may already have seen never change under it.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from botocore.exceptions import ClientError
from PIL import Image

from easel.naming import lora_key, output_key, result_document_key
from queue_agent.errors import RuntimeFault, aws_call

log = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_EXISTS = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412"})


# output_format -> (PIL format, key suffix, Content-Type)
FORMATS: dict[str, tuple[str, str, str]] = {
    "png": ("PNG", "png", "image/png"),
    "jpeg": ("JPEG", "jpg", "image/jpeg"),
    "webp": ("WEBP", "webp", "image/webp"),
}


def suffix(output_format: str) -> str:
    return FORMATS[output_format][1]


def as_format(data: bytes, output_format: str, quality: int = 80) -> bytes:
    """``data`` in ``output_format``: kept as is when it already is, else re-encoded."""
    if output_format == "png":
        return as_png(data)
    pil = FORMATS[output_format][0]
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format == pil:
                return data
            out = io.BytesIO()
            img.convert("RGB").save(out, format=pil, quality=quality)
            return out.getvalue()
    except (OSError, ValueError) as exc:
        raise RuntimeFault(f"runtime returned an image that cannot be decoded: {exc}") from exc


def as_png(data: bytes) -> bytes:
    """The runtime answers PNG; anything else it might send (a stock WebUI set to JPEG) is converted."""
    if data.startswith(PNG_MAGIC):
        return data
    try:
        with Image.open(io.BytesIO(data)) as img:
            out = io.BytesIO()
            img.save(out, format="PNG")
            return out.getvalue()
    except (OSError, ValueError) as exc:
        raise RuntimeFault(f"runtime returned an image that cannot be decoded: {exc}") from exc


class OutputWriter:
    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    @property
    def bucket(self) -> str:
        return self._bucket

    def uri(self, tenant: str, task_id: str, index: int, ext: str = "png", prefix: str | None = None) -> str:
        return f"s3://{self._bucket}/{output_key(tenant, task_id, index, ext, prefix)}"

    def upload(
        self,
        tenant: str,
        task_id: str,
        images: list[bytes],
        *,
        output_format: str = "png",
        quality: int = 80,
        prefix: str | None = None,
    ) -> list[str]:
        _, ext, content_type = FORMATS[output_format]
        uris = []
        for n, data in enumerate(images):
            key = output_key(tenant, task_id, n, ext, prefix)
            try:
                with aws_call("upload output"):
                    self._s3.put_object(
                        Bucket=self._bucket,
                        Key=key,
                        Body=as_format(data, output_format, quality),
                        ContentType=content_type,
                        IfNoneMatch="*",
                    )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code", "") not in _EXISTS:
                    raise
                log.info("output exists, kept", extra={"task_id": task_id, "key": key})
            uris.append(self.uri(tenant, task_id, n, ext, prefix))
        return uris

    def put_result_document(self, tenant: str, task_id: str, body: bytes, prefix: str | None = None) -> str:
        """The stable-diffusion-on-eks ``<id>.out`` JSON beside a compat task's images. Overwrites: it is
        written once per terminal state, from that state only, so a rewrite writes the same bytes."""
        key = result_document_key(tenant, task_id, prefix)
        with aws_call("upload result document"):
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/json")
        return f"s3://{self._bucket}/{key}"

    def upload_lora(self, tenant: str, name: str, data: bytes) -> str:
        """A trained adapter to ``tenants/<tenant>/loras/<name>.safetensors``.

        Unlike images this overwrites: a new train-lora task for the same ``output_name`` replaces the
        tenant's adapter (a redelivery of the same seeded task writes the same adapter again).
        """
        key = lora_key(tenant, name)
        with aws_call("upload lora"):
            self._s3.put_object(
                Bucket=self._bucket, Key=key, Body=data, ContentType="application/octet-stream"
            )
        return f"s3://{self._bucket}/{key}"

    def discard_lora(self, tenant: str, name: str) -> None:
        """Best effort removal of the adapter of a task canceled right after training."""
        try:
            with aws_call("discard lora"):
                self._s3.delete_object(Bucket=self._bucket, Key=lora_key(tenant, name))
        except Exception:
            log.exception("could not discard lora", extra={"tenant": tenant, "lora": name})

    def discard(
        self, tenant: str, task_id: str, count: int, ext: str = "png", prefix: str | None = None
    ) -> None:
        """Best effort removal of a canceled task's outputs."""
        if count <= 0:
            return
        try:
            with aws_call("discard outputs"):
                self._s3.delete_objects(
                    Bucket=self._bucket,
                    Delete={
                        "Objects": [
                            {"Key": output_key(tenant, task_id, n, ext, prefix)} for n in range(count)
                        ],
                        "Quiet": True,
                    },
                )
        except Exception:
            log.exception("could not discard outputs", extra={"task_id": task_id})
