"""Public web pages (/p/{token}), an email's web version (/w/{token}) and its forms'
submissions (/f/{token}); docs/pages.md.

Thin: the rules are in mailer_core.pages. Unlike the track function this one renders
(Jinja2) and calls Kommo (fresh CRM data for a page, a form's answers), so it is a function
of its own: the pixel and clicks stay light.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.logs import logger
from mailer_core.pages import forms, views

clock: Clock = SYSTEM_CLOCK  # tests replace it

_NO_STORE = {"Cache-Control": "no-store, private", "Pragma": "no-cache"}
_HTML = "text/html; charset=utf-8"


def _answer(answer: views.Answer, method: str) -> dict[str, Any]:
    return {
        "statusCode": answer.status,
        "headers": {
            **_NO_STORE,
            "Content-Type": _HTML,
            "X-Robots-Tag": "noindex",
            "Referrer-Policy": "no-referrer",
        },
        "body": "" if method == "HEAD" else answer.html,
        "isBase64Encoded": False,
    }


def _request(event: dict[str, Any], token: str, method: str) -> views.PageRequest:
    http = event.get("requestContext", {}).get("http", {})
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    return views.PageRequest(
        token=token,
        method=method,
        user_agent=headers.get("user-agent") or str(http.get("userAgent") or ""),
        source_ip=str(http.get("sourceIp") or ""),
        headers=headers,
        now=clock.now(),
    )


def _form(event: dict[str, Any], token: str, method: str) -> views.Answer:
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    if method == "POST":
        raw = event.get("body") or ""
        body = base64.b64decode(raw) if event.get("isBase64Encoded") else str(raw).encode("utf-8")
        content_type = headers.get("content-type", "application/x-www-form-urlencoded")
    else:
        body = str(event.get("rawQueryString") or "").encode("utf-8")
        content_type = "application/x-www-form-urlencoded"
    submission = forms.Submission(
        token=token, method=method, content_type=content_type, body=body, now=clock.now()
    )
    return forms.handle(submission)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    method = str(event.get("requestContext", {}).get("http", {}).get("method") or "").upper()
    path = str(event.get("rawPath") or "")
    if path == "/p/health" and method == "GET":
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"status": "ok", "function": "pages"}),
        }
    kind, _, rest = path.removeprefix("/").partition("/")
    token, _, tail = rest.partition("/")
    if token and "/" not in tail:
        if kind == "p" and method in ("GET", "HEAD"):
            return _answer(views.open_page(_request(event, token, method)), method)
        if kind == "w" and method in ("GET", "HEAD") and not tail:
            return _answer(views.web_version(_request(event, token, method)), method)
        if kind == "f" and method in ("GET", "POST") and not tail:
            return _answer(_form(event, token, method), method)
    return _answer(views.NOT_FOUND, method)
