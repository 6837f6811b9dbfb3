"""The exported JSON Schemas in docs/schemas match the models, and accept what the models accept."""

from __future__ import annotations

import json

import jsonschema
import pytest

from easel.contract import parse_task_request
from easel.contract.schema import SCHEMAS, render
from tests.conftest import ROOT


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_checked_in_schema_is_current(name: str) -> None:
    path = ROOT / "docs" / "schemas" / f"{name}.schema.json"
    assert path.exists(), "run `make schema`"
    assert path.read_text() == render(name), f"{path} is stale: run `make schema`"


def test_schema_validates_like_the_model() -> None:
    schema = json.loads(render("task-request"))
    good = {"task_type": "text-to-image", "model": "sd15", "input": {"prompt": "a cat", "steps": 4}}
    jsonschema.validate(good, schema)
    parse_task_request(good)
    bad = {"task_type": "text-to-image", "model": "sd15", "input": {"prompt": "a cat", "steps": 0}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
