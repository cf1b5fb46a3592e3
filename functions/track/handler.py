"""Public tracking routes: the open pixel (/o/{token}) and clicks (/c/{token}, trigger links
included); health.

Thin: the rules are in mailer_core.tracking (and machine_traffic). These routes write one
fact and never call Kommo or SMTP.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.logs import logger
from mailer_core.tracking import routes as tracking

app = APIGatewayHttpResolver()
clock: Clock = SYSTEM_CLOCK  # tests replace it

NOT_FOUND_PAGE = (
    '<!doctype html><html><head><meta charset="utf-8"><title>Link not found</title></head>'
    "<body><p>Link not found.</p></body></html>"
)
_NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}


@app.get("/t/health")
def health() -> dict[str, str]:
    return {"status": "ok", "function": "track"}


def _request(token: str) -> tracking.TrackRequest:
    event = app.current_event
    http = event.request_context.http
    return tracking.TrackRequest(
        token=token,
        method=http.method,
        user_agent=event.headers.get("user-agent") or http.user_agent or "",
        source_ip=http.source_ip or "",
        headers={k.lower(): v for k, v in (event.headers or {}).items()},
        now=clock.now(),
    )


@app.route("/o/<token>", method=["GET", "HEAD"])
def pixel(token: str) -> Response[bytes]:
    tracking.handle_open(_request(token))
    return Response(
        status_code=200, content_type="image/gif", body=tracking.PIXEL_GIF, headers=dict(_NO_STORE)
    )


@app.route("/c/<token>", method=["GET", "HEAD"])
def click(token: str) -> Response[str]:
    answer = tracking.handle_click(_request(token))
    if answer is None:
        return Response(
            status_code=404,
            content_type="text/html; charset=utf-8",
            body=NOT_FOUND_PAGE,
            headers=dict(_NO_STORE),
        )
    if answer.location:
        return Response(status_code=302, body="", headers={**_NO_STORE, "Location": answer.location})
    # A trigger link without a target: the localized thank-you page.
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=answer.page or "",
        headers=dict(_NO_STORE),
    )


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
