"""Kommo callbacks: the install redirect (OAuth), and health. The digital pipeline comes next."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.kommo_oauth import InstallPage, receive_install
from mailer_core.logs import logger

app = APIGatewayHttpResolver()
# The page carries nothing to cache, and the code in its URL must not leak through a Referer.
_PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@app.get("/hooks/health")
def health() -> dict[str, str]:
    return {"status": "ok", "function": "webhook"}


@app.get("/hooks/kommo/install")
def kommo_install() -> Response[str]:
    params = {k: v for k, v in (app.current_event.query_string_parameters or {}).items() if v is not None}
    try:
        page = receive_install(params)
    except Exception:
        logger.exception("Kommo install redirect failed")
        page = InstallPage(
            503, "Mailer was not connected", "Something went wrong on our side. Please try again."
        )
    return Response(
        status_code=page.status,
        content_type="text/html; charset=utf-8",
        body=page.html,
        headers=dict(_PAGE_HEADERS),
    )


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
