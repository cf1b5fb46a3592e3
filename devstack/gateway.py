"""An HTTP server that plays API Gateway (HTTP API, payload format 2.0) for the handlers.

It serves the routes the template declares, picks the most specific one as API Gateway does
(literal segments beat `{param}`, which beats a greedy `{proxy+}`; a method beats `ANY`),
builds the event API Gateway would send, calls the handler in this process and turns its
result into the HTTP response API Gateway would give. Behaviours copied from the service:

- the path is URL-decoded before routing (`rawPath` is decoded too); `rawQueryString` is not;
- header names are lower-cased, repeated headers and query keys are joined with commas;
- Cookie headers go to `cookies`, not `headers`;
- `requestContext.domainName` is the Host header, here with its port, so absolute URLs a
  handler builds from it point back at this server;
- a body whose content type is not textual arrives base64-encoded (`isBase64Encoded`);
- a result without `statusCode` becomes a 200 `application/json` response;
- no route: 404 `{"message":"Not Found"}`; a failing handler: 500
  `{"message":"Internal Server Error"}`; a body over 10 MB: 413;
- any request method is taken and routed: one an HTTP API route cannot declare (TRACE,
  CONNECT, PROPFIND …) matches no route, not even `ANY`, so it gets the same 404 (the
  standard library's server would answer 501 before any routing).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from mailer_core.base.clock import SYSTEM_CLOCK, Clock

from devstack.functions import FunctionRegistry
from devstack.resources import ACCOUNT_ID
from devstack.template import HttpRoute

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_API_ID = "devstack01"
_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|javascript|xml|[\w.+-]+\+json|[\w.+-]+\+xml))$", re.IGNORECASE
)
# The methods an HTTP API route can declare (besides ANY, which stands for these).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class _CompiledRoute:
    route: HttpRoute
    segments: tuple[str, ...]
    greedy: bool

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The path parameters if the (decoded) path segments match this route."""
        fixed = self.segments[:-1] if self.greedy else self.segments
        if len(segments) < len(fixed) or (not self.greedy and len(segments) != len(fixed)):
            return None
        params: dict[str, str] = {}
        for pattern, value in zip(fixed, segments, strict=False):
            if pattern.startswith("{") and pattern.endswith("}"):
                if not value:
                    return None
                params[pattern[1:-1]] = value
            elif pattern != value:
                return None
        if self.greedy:
            rest = "/".join(segments[len(fixed) :])
            if not rest:
                return None
            params[self.segments[-1][1:-2]] = rest  # "{proxy+}" is passed as "proxy"
        return params

    def rank(self) -> tuple[Any, ...]:
        """Sort key: lower is more specific."""
        kinds = tuple(0 if not s.startswith("{") else 2 if s.endswith("+}") else 1 for s in self.segments)
        return (self.greedy, kinds, self.route.method == "ANY")


class Router:
    """Finds the route API Gateway would choose for a method and a decoded path."""

    def __init__(self, routes: Iterable[HttpRoute]) -> None:
        self._routes: list[_CompiledRoute] = []
        self._default: HttpRoute | None = None
        for route in routes:
            if route.path is None or route.method is None:
                self._default = route
                continue
            segments = tuple(route.path.split("/")[1:])
            greedy = bool(segments) and segments[-1].endswith("+}")
            self._routes.append(_CompiledRoute(route, segments, greedy))

    def match(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        if method not in _METHODS:
            return None
        segments = path.split("/")[1:]
        found: list[tuple[tuple[Any, ...], HttpRoute, dict[str, str]]] = []
        for compiled in self._routes:
            if compiled.route.method not in (method, "ANY"):
                continue
            params = compiled.match(segments)
            if params is not None:
                found.append((compiled.rank(), compiled.route, params))
        if found:
            _, route, params = min(found, key=lambda item: item[0])
            return route, params
        if self._default is not None:
            return self._default, {}
        return None


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    return bool(_TEXT_TYPES.match(content_type.split(";", 1)[0].strip()))


def _request_id() -> str:
    return base64.b64encode(os.urandom(10)).decode()


def build_event(
    *,
    route: HttpRoute,
    path_parameters: dict[str, str],
    method: str,
    path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    protocol: str = "HTTP/1.1",
    api_id: str = DEFAULT_API_ID,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The API Gateway HTTP API payload format 2.0 event for one request."""
    now = now or datetime.now(UTC)
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    domain = joined.get("host", "localhost")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": method,
            "path": path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": _request_id(),
        "routeKey": route.route_key,
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if path_parameters:
        event["pathParameters"] = path_parameters
    is_base64 = False
    if body:
        text: str | None = None
        if _is_text(joined.get("content-type")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            text, is_base64 = base64.b64encode(body).decode("ascii"), True
        event["body"] = text
    event["isBase64Encoded"] = is_base64
    return event


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _json_response(status: int, payload: dict[str, Any]) -> HttpResponse:
    return HttpResponse(
        status, [("Content-Type", "application/json")], json.dumps(payload, separators=(",", ":")).encode()
    )


NOT_FOUND = _json_response(404, {"message": "Not Found"})
INTERNAL_ERROR = _json_response(500, {"message": "Internal Server Error"})
TOO_LARGE = _json_response(413, {"message": "Request Entity Too Large"})


def translate_result(result: Any) -> HttpResponse:
    """Turn a handler's return value into the response API Gateway (format 2.0) would send.

    The value goes through JSON first, as Lambda serialises it; a value JSON cannot hold
    raises TypeError/ValueError, which the caller answers with a 500 like API Gateway.
    """
    result = json.loads(json.dumps(result))
    if not (isinstance(result, dict) and "statusCode" in result):
        body = result if isinstance(result, str) else json.dumps(result)
        return HttpResponse(200, [("Content-Type", "application/json")], body.encode())
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((name, value if isinstance(value, str) else json.dumps(value)))
    single = {name.lower() for name, _ in headers}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if name.lower() in single:
            continue  # `headers` wins over `multiValueHeaders` for the same name
        headers.extend((name, str(v)) for v in values or [])
    headers.extend(("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or [])
    raw = result.get("body")
    if raw is None:
        body_bytes = b""
    elif result.get("isBase64Encoded"):
        body_bytes = base64.b64decode(raw)
    else:
        body_bytes = (raw if isinstance(raw, str) else json.dumps(raw)).encode("utf-8")
    return HttpResponse(int(result["statusCode"]), headers, body_bytes)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        started = time.monotonic()
        response, function_id = self.server.gateway.handle(self)
        self._send(response)
        log.info(
            "%s %s -> %d (%s, %.0f ms)",
            self.command,
            self.path,
            response.status,
            function_id or "no route",
            (time.monotonic() - started) * 1000,
        )

    def _send(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        skip = {"content-length", "transfer-encoding", "connection"}
        for name, value in response.headers:
            if name.lower() not in skip:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def __getattr__(self, name: str) -> Any:
        """Every `do_<METHOD>`: the gateway routes any method (the base class answers 501 to one
        it has no `do_` for)."""
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)


class _BodyTooLarge(Exception):
    pass


def _read_body(request: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in (request.headers.get("Transfer-Encoding") or "").lower():
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(request.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while request.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _BodyTooLarge
            chunks.append(request.rfile.read(size))
            request.rfile.readline()
    length = int(request.headers.get("Content-Length") or 0)
    if length > MAX_BODY_BYTES:
        raise _BodyTooLarge
    return request.rfile.read(length) if length else b""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # API Gateway takes every connection: a burst (Kommo posting many hooks at once) must not
    # overflow the listen queue (socketserver's default is 5), or clients wait seconds for SYN retries.
    request_queue_size = 128
    gateway: Gateway


class Gateway:
    """Serves the template's HTTP API routes on 127.0.0.1."""

    def __init__(
        self,
        routes: Iterable[HttpRoute],
        functions: FunctionRegistry,
        *,
        port: int = 0,
        api_id: str = DEFAULT_API_ID,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.router = Router(routes)
        self.functions = functions
        self.api_id = api_id
        self.clock = clock
        self._server = _Server(("127.0.0.1", port), _RequestHandler)
        self._server.gateway = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="devstack-gateway", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def handle(self, request: BaseHTTPRequestHandler) -> tuple[HttpResponse, str | None]:
        """Answer one request; returns the response and the function that handled it."""
        try:
            body = _read_body(request)
        except _BodyTooLarge:
            request.close_connection = True
            return TOO_LARGE, None
        target = urlsplit(request.path)
        path = unquote(target.path) or "/"
        matched = self.router.match(request.command, path)
        if matched is None:
            return NOT_FOUND, None
        route, params = matched
        event = build_event(
            route=route,
            path_parameters=params,
            method=request.command,
            path=path,
            raw_query=target.query,
            headers=self._headers(request),
            body=body,
            source_ip=request.client_address[0],
            protocol=request.request_version,
            api_id=self.api_id,
            now=self.clock.now(),
        )
        try:
            result = self.functions.get(route.function_id).invoke(event)
            return translate_result(result), route.function_id
        except Exception:
            log.exception("%s failed on %s %s", route.function_id, request.command, request.path)
            return INTERNAL_ERROR, route.function_id

    def _headers(self, request: BaseHTTPRequestHandler) -> list[tuple[str, str]]:
        """The request's headers plus the X-Forwarded-* headers API Gateway sets."""
        replaced = {"x-forwarded-port", "x-forwarded-proto"}
        headers = [(n, v) for n, v in request.headers.items() if n.lower() not in replaced]
        headers += [
            ("X-Forwarded-For", request.client_address[0]),  # appended to a client's own, comma-joined
            ("X-Forwarded-Port", str(self.port)),
            ("X-Forwarded-Proto", "http"),
        ]
        return headers
