"""docs/openapi.json is generated from the registered routes and must be current."""

from __future__ import annotations

import json
import re

from lambdas.api import openapi
from lambdas.api.app import app
from tests.conftest import ROOT


def test_checked_in_document_is_current() -> None:
    path = ROOT / "docs" / "openapi.json"
    assert path.read_text() == openapi.render(), "run: python -m lambdas.api.openapi docs/openapi.json"


def test_every_route_is_documented_with_its_method() -> None:
    doc = openapi.build()
    for route in app._static_routes + app._dynamic_routes:
        path = re.sub(r"<(\w+)>", r"{\1}", route.path)
        assert route.method.lower() in doc["paths"][path], (route.method, path)


def test_submit_documents_its_request_body_and_errors() -> None:
    doc = openapi.build()
    post = doc["paths"]["/v1/tasks"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"task_type", "model", "input"} <= set(schema["required"])
    assert {"202", "200", "400", "403", "409", "413", "415", "503"} <= set(post["responses"])
    # every $ref resolves
    for target in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(doc)):
        assert target in doc["components"]["schemas"], target
