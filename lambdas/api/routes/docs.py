"""OpenAPI response descriptions shared by the routes (also the source of docs/openapi.json)."""

from __future__ import annotations

from typing import cast

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel

from easel.config import Limits
from easel.contract import Task, TaskType


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class TaskList(BaseModel):
    tasks: list[Task]
    next: str | None = None


class ModelInfo(BaseModel):
    name: str
    runtime: str
    task_types: list[TaskType]


class ModelList(BaseModel):
    models: list[ModelInfo]
    limits: Limits


def ok(description: str, model: type[BaseModel]) -> OpenAPIResponse:
    return cast(
        OpenAPIResponse, {"description": description, "content": {"application/json": {"model": model}}}
    )


def errors(*codes: int) -> dict[int, OpenAPIResponse]:
    text = {
        400: "invalid request; `error.field` names the field",
        403: "the caller's principal maps to no tenant",
        404: "no such task for this tenant",
        409: "conflict (idempotency mismatch, or a status the task no longer allows)",
        413: "body over api.limits.max_body_bytes",
        415: "content-type is not application/json",
        503: "AWS unavailable or the task could not be queued; retry",
    }
    return {c: ok(text[c], ErrorBody) for c in (*codes, 403)}
