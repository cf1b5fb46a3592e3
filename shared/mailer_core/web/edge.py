"""HTTP rules of the widget's API: who is calling, CORS for Kommo origins, JSON errors.

The API function registers its routes on a Powertools resolver and installs `api_middleware`;
everything about authentication, CORS and error bodies lives here. Every route needs the
widget's token except the documented public ones (`PUBLIC_ROUTES`) and CORS preflights, so a
route added anywhere, under /v1 or not, is protected until it is named public here and in the
OpenAPI document. A request no route takes is authenticated the same way, then answered 404
with the API's error body (`not_found`). Whether the caller may use Mailer at all (account
status, allowed users, administrators) is mailer_core.accounts.access's rule, applied here to
every protected route. Each authenticated request takes a token of its Kommo account's API
bucket (`throttle`): over `api_requests_per_second` (and its burst), 429 with Retry-After.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

from mailer_core.accounts.auth import Caller, verify_widget_token
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.config import get_settings
from mailer_core.base.errors import InvalidInput, MailerError, MalformedRequest, NotFound, TooManyRequests
from mailer_core.base.logs import logger
from mailer_core.kommo.hosts import is_account_origin
from mailer_core.store import rate_buckets

ALLOWED_HEADERS = "X-Auth-Token, Content-Type"
ALLOWED_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
# (method, path) of the routes anyone may call: the health check and the API's own description.
PUBLIC_ROUTES = frozenset({("GET", "/health"), ("GET", "/openapi.json")})
API_BUCKET_PREFIX = "api#"  # an account's bucket of API requests in the RateLimits table
_NO_DAILY_CAP = 10**12


def is_public(method: str, path: str) -> bool:
    """Whether a request may go without the widget's token (a public route; preflights are
    answered before any route)."""
    return (method.upper(), path) in PUBLIC_ROUTES


def origin_allowed(origin: str | None) -> bool:
    """A Kommo (or amoCRM) account page, `https://<subdomain>.kommo.com`, or an origin configured extra."""
    if not origin:
        return False
    return is_account_origin(origin) or origin in get_settings().extra_cors_origins


def cors_headers(origin: str | None, *, preflight: bool = False) -> dict[str, str]:
    if not origin_allowed(origin):
        return {}
    headers = {"Access-Control-Allow-Origin": str(origin), "Vary": "Origin"}
    if preflight:
        headers.update(
            {
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Max-Age": "600",
            }
        )
    return headers


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        headers=headers or {},
    )


def error_response(exc: MailerError, origin: str | None = None) -> Response[str]:
    headers = cors_headers(origin)
    if isinstance(exc, TooManyRequests) and isinstance(exc.details.get("retry_after"), int):
        headers["Retry-After"] = str(exc.details["retry_after"])
    return json_response(exc.status, exc.to_body(), headers)


def throttle(caller: Caller, *, clock: Clock = SYSTEM_CLOCK) -> None:
    """One token of the account's API bucket (a token bucket: `api_requests_per_second`, and
    `api_burst` on top), one conditional UpdateItem; over it, 429 with the seconds to wait. Per
    Kommo account, so one account's script or stuck widget cannot take the API from the others."""
    settings = get_settings()
    decision = rate_buckets.take(
        f"{API_BUCKET_PREFIX}{caller.account_id}",
        rate_per_second=settings.api_requests_per_second,
        daily_cap=_NO_DAILY_CAP,
        now=clock.timestamp(),
        burst=max(1, settings.api_burst),
    )
    if not decision.allowed:
        wait = max(1, math.ceil(decision.retry_after))
        raise TooManyRequests(
            f"too many requests for this Kommo account; try again in {wait} s",
            limit="api_requests_per_second",
            retry_after=wait,
        )


def authenticate(headers: dict[str, str], *, clock: Clock = SYSTEM_CLOCK) -> Caller:
    settings = get_settings()
    token = headers.get("x-auth-token") or headers.get("X-Auth-Token")
    return verify_widget_token(
        token, secret=settings.kommo_client_secret, audience=settings.token_audience, now=clock.timestamp()
    )


def json_body(app: APIGatewayHttpResolver) -> Any:
    """The request's JSON body; a body that is not base64 where API Gateway says it is, not
    UTF-8, empty or not JSON is the caller's 400 naming `body`."""
    event = app.current_event
    raw = event.body or ""
    if event.is_base64_encoded and raw:
        raw = _base64_text(raw)
    if not raw.strip():
        raise MalformedRequest("the request needs a JSON body", field="body")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}", field="body") from exc


def csv_body(app: APIGatewayHttpResolver) -> str:
    """The CSV text of a request: the body itself when it is `text/csv`, else a JSON object's
    `csv` string. Refused as `json_body` refuses, or 422 naming `csv`."""
    event = app.current_event
    kind = (event.headers.get("content-type") or "").split(";")[0].strip().lower()
    if kind == "text/csv":
        raw = event.body or ""
        if event.is_base64_encoded and raw:
            raw = _base64_text(raw)
        return raw
    payload = json_body(app)
    if not isinstance(payload, dict) or not isinstance(payload.get("csv"), str):
        raise InvalidInput("send text/csv, or a JSON object whose csv is the file's text", field="csv")
    return str(payload["csv"])


def _base64_text(raw: str) -> str:
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequest("the body is not valid base64", field="body") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("the body is not UTF-8 text", field="body") from None


def caller_of(app: APIGatewayHttpResolver) -> Caller:
    caller = app.context.get("caller")
    if not isinstance(caller, Caller):  # a protected route always runs behind the middleware
        raise RuntimeError("route has no authenticated caller")
    return caller


def api_middleware(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """Answer preflights, authenticate every call but the public routes', add CORS headers, turn
    errors into JSON."""
    event = app.current_event
    origin = event.headers.get("origin")
    path = event.path
    if event.http_method == "OPTIONS":
        allowed = origin_allowed(origin)
        return Response(
            status_code=204 if allowed else 403, body="", headers=cors_headers(origin, preflight=True)
        )
    try:
        if not is_public(event.http_method, path):
            from mailer_core.accounts import access  # cold start: pynamodb (the health route needs no model)

            caller = authenticate(event.headers)
            logger.append_keys(account_id=caller.account_id, user_id=caller.user_id)
            throttle(caller)  # the account's share of the API: 429 with Retry-After over it
            # The account's status and settings: 403 with a reason, or the effective admin flag.
            caller = access.authorize(caller)
            app.append_context(caller=caller)
        response = next_middleware(app)
    except MailerError as exc:
        if exc.status >= 500:
            logger.exception("request failed", extra={"path": path})
        else:
            logger.info("request refused", extra={"path": path, "status": exc.status, "reason": exc.message})
        return error_response(exc, origin)
    for key, value in cors_headers(origin).items():
        response.headers[key] = value
    return response


def not_found(app: APIGatewayHttpResolver) -> Response[str]:
    """404 with the API's error body, for a request no route takes: an unknown path, or an id in
    the path that is not of the route's form (control characters, quotes …)."""
    event = app.current_event
    words = f"no route takes {event.http_method} for this path, or an id in it is not one this API gives out"
    return error_response(NotFound(words, field="path"), event.headers.get("origin"))


def limit_param(query: dict[str, str], *, default: int = 50, maximum: int = 200) -> int:
    raw = query.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise MalformedRequest(f"limit must be a whole number from 1 to {maximum}", field="limit")
    return int(raw)
