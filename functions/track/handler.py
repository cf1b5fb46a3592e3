"""Public tracking routes: the open pixel (/o/{token}) and clicks (/c/{token}, trigger links
included); an attachment's tracked download (/d/{token}); a campaign email's unsubscribe
(/u/{token}: GET shows a button, POST unsubscribes);
health.

Thin: the rules are in mailer_core.tracking.routes and mailer_core.messages.opt_out. These
routes write facts and never call Kommo or SMTP. This function answers every pixel, so its
cold start is kept small: its routes are read straight from API Gateway's HTTP API event
(payload 2.0) instead of through Powertools' resolver, whose import alone (about 30 ms: every
resolver, asyncio) cost more than the rest of the function.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.logs import logger
from mailer_core.messages import opt_out
from mailer_core.tracking import routes as tracking

clock: Clock = SYSTEM_CLOCK  # tests replace it

NOT_FOUND_PAGE = (
    '<!doctype html><html><head><meta charset="utf-8"><title>Link not found</title></head>'
    "<body><p>Link not found.</p></body></html>"
)
_NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}
_HTML = "text/html; charset=utf-8"


def _answer(
    status: int, body: str | bytes = "", content_type: str | None = None, **headers: str
) -> dict[str, Any]:
    """An HTTP API (payload 2.0) response; binary bodies go base64-encoded, as API Gateway wants."""
    all_headers = {**_NO_STORE, **headers}
    if content_type:
        all_headers["Content-Type"] = content_type
    if isinstance(body, bytes):
        return {
            "statusCode": status,
            "headers": all_headers,
            "body": base64.b64encode(body).decode("ascii"),
            "isBase64Encoded": True,
        }
    return {"statusCode": status, "headers": all_headers, "body": body, "isBase64Encoded": False}


def _request(event: dict[str, Any], token: str) -> tracking.TrackRequest:
    http = event.get("requestContext", {}).get("http", {})
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    return tracking.TrackRequest(
        token=token,
        method=str(http.get("method") or "GET"),
        user_agent=headers.get("user-agent") or str(http.get("userAgent") or ""),
        source_ip=str(http.get("sourceIp") or ""),
        headers=headers,
        now=clock.now(),
    )


def pixel(event: dict[str, Any], token: str) -> dict[str, Any]:
    tracking.handle_open(_request(event, token))
    return _answer(200, tracking.PIXEL_GIF, "image/gif")


def click(event: dict[str, Any], token: str) -> dict[str, Any]:
    answer = tracking.handle_click(_request(event, token))
    if answer is None:
        return _answer(404, NOT_FOUND_PAGE, _HTML)
    if answer.location:
        return _answer(302, "", Location=answer.location)
    # A trigger link without a target: the localized thank-you page.
    return _answer(200, answer.page or "", _HTML)


def download(event: dict[str, Any], token: str) -> dict[str, Any]:
    """An attachment's download link: a redirect to the file; a person's first GET counts."""
    from mailer_core.tracking import downloads  # cold start: only downloads need it (S3 presigning)

    request = _request(event, token)
    location = downloads.handle(
        token,
        method=request.method,
        user_agent=request.user_agent,
        source_ip=request.source_ip,
        headers=request.headers,
        now_seconds=request.now.timestamp(),
    )
    if location is None:
        return _answer(404, NOT_FOUND_PAGE, _HTML)
    return _answer(302, "", Location=location)


def unsubscribe(event: dict[str, Any], token: str, method: str) -> dict[str, Any]:
    """GET and HEAD: the page with the button; POST (RFC 8058's one-click, or the button): done.
    Whatever the POST's body says, it unsubscribes: it is never needed to read it."""
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    answer = opt_out.handle(
        token, method=method, accept_language=headers.get("accept-language", ""), now=clock.now()
    )
    return _answer(answer.status, "" if method == "HEAD" else answer.page, _HTML)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    method = str(event.get("requestContext", {}).get("http", {}).get("method") or "").upper()
    path = str(event.get("rawPath") or "")
    if path == "/t/health" and method == "GET":
        return _answer(200, json.dumps({"status": "ok", "function": "track"}), "application/json")
    kind, _, token = path.removeprefix("/").partition("/")
    if method in ("GET", "HEAD") and token and "/" not in token:
        if kind == "o":
            return pixel(event, token)
        if kind == "c":
            return click(event, token)
        if kind == "d":
            return download(event, token)
    if kind == "u" and token and "/" not in token and method in ("GET", "HEAD", "POST"):
        return unsubscribe(event, token, method)
    return _answer(404, NOT_FOUND_PAGE, _HTML)
