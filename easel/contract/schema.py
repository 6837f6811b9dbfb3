"""JSON Schema export of the contract (docs/schemas/*.schema.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from easel.contract.tasks import QueueMessage, Task, TaskRequest

SCHEMAS: dict[str, type[BaseModel]] = {
    "task-request": TaskRequest,
    "task": Task,
    "queue-message": QueueMessage,
}


def schema_of(name: str) -> dict[str, Any]:
    model = SCHEMAS[name]
    schema = model.model_json_schema(mode="validation" if name == "task-request" else "serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def render(name: str) -> str:
    return json.dumps(schema_of(name), indent=2, sort_keys=True) + "\n"


def write_schemas(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SCHEMAS:
        path = out / f"{name}.schema.json"
        path.write_text(render(name))
        paths.append(path)
    return paths
