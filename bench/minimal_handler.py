"""The baseline of the cold-import bench: the smallest useful Powertools REST handler.

Imported as a top-level module (``minimal_handler``) in a fresh interpreter, next to ``lambdas.api.app``.
Keep it minimal: it stands for "what any Powertools REST Lambda pays at import".
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

app = APIGatewayRestResolver()


@app.get("/ping")
def ping() -> dict[str, str]:
    return {"status": "ok"}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
