"""Kommo callbacks (digital pipeline, install). For now only its health route."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.logs import logger

app = APIGatewayHttpResolver()


@app.get("/hooks/health")
def health() -> dict[str, str]:
    return {"status": "ok", "function": "webhook"}


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
