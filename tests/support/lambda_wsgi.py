"""A function's Lambda handler as a WSGI application: API Gateway's HTTP API event in between.

Tools that speak WSGI (schemathesis in the API fuzzing test) call the handler in this process:
each request becomes the payload 2.0 event `api_client.http_event` builds, with the path
URL-decoded as API Gateway decodes it, and the handler's result becomes the response.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any
from urllib.parse import unquote

from tests.support.api_client import LambdaContext, http_event

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content"}


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers


def _body(environ: dict[str, Any], headers: dict[str, str]) -> bytes | str | None:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    if not raw:
        return None
    if "json" in headers.get("content-type", "") or headers.get("content-type", "").startswith("text/"):
        try:
            return raw.decode("utf-8")  # API Gateway passes textual bodies as text
        except UnicodeDecodeError:
            return raw  # and anything else base64-encoded
    return raw


def wsgi_app(handler: ModuleType) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI application calling `handler.lambda_handler`."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        headers = _headers(environ)
        # WSGI hands the path as latin-1 text of the raw bytes; API Gateway decodes it as UTF-8.
        raw_path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
        query = environ.get("QUERY_STRING", "")
        url = raw_path + (f"?{query}" if query else "")
        event = http_event(environ["REQUEST_METHOD"], url, headers=headers, body=_body(environ, headers))
        event["rawPath"] = event["requestContext"]["http"]["path"] = unquote(raw_path)  # decoded, as AWS does
        result = handler.lambda_handler(event, LambdaContext())
        status = int(result["statusCode"])
        body = result.get("body") or ""
        data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
        out = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
        start_response(f"{status} {_REASONS.get(status, 'Status')}", out)
        return [data]

    return app
