"""Call a function's handler in-process with API Gateway HTTP API (payload 2.0) events."""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mailer_core.accounts.auth import mint_widget_token

from devstack.invocations import isolate_invocations

ROOT = Path(__file__).resolve().parents[2]


def load_handler(function: str, environment: int = 1) -> ModuleType:
    """Import functions/<function>/handler.py once per environment, under a unique module name.

    Each environment is a Lambda execution environment of its own: its own module globals (the
    Powertools resolver keeps the current event there), so calls made at once from several
    threads each need one, as Lambda never runs two invocations in one environment.
    """
    isolate_invocations()  # Powertools keeps the current event on a class: per thread instead
    name = f"mailer_function_{function}" + (f"_env{environment}" if environment > 1 else "")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / function / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class LambdaContext:
    function_name: str = "mailer-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:mailer-test"
    aws_request_id: str = "req"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def http_event(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    route_key: str | None = None,
) -> dict[str, Any]:
    parts = urlsplit(url)
    raw = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
    binary = isinstance(raw, bytes)
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key or f"{method} {parts.path}",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": {k.lower(): v for k, v in (headers or {}).items()},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": method,
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "pytest",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key or f"{method} {parts.path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": binary,
    }
    if query:
        event["queryStringParameters"] = query
    if raw is not None:
        event["body"] = base64.b64encode(raw).decode() if binary else raw
    return event


class ApiClient:
    """A widget user calling the api function with Kommo's signed token."""

    def __init__(
        self,
        *,
        secret: str,
        audience: str,
        account_id: int = 31000001,
        user_id: int = 501,
        is_admin: bool = False,
        subdomain: str = "mailerdemo",
        function: str = "api",
    ) -> None:
        self.secret, self.audience = secret, audience
        self.account_id, self.user_id, self.is_admin, self.subdomain = (
            account_id,
            user_id,
            is_admin,
            subdomain,
        )
        self.function = function
        self.module = load_handler(function)

    def in_environment(self, environment: int) -> ApiClient:
        """The same user calling through another execution environment (for concurrent calls)."""
        twin = copy.copy(self)
        twin.module = load_handler(self.function, environment)
        return twin

    def token(self) -> str:
        return mint_widget_token(
            secret=self.secret,
            audience=self.audience,
            account_id=self.account_id,
            subdomain=self.subdomain,
            user_id=self.user_id,
            is_admin=self.is_admin,
            now=time.time(),
        )

    def call(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Reply:
        all_headers = {"content-type": "application/json", **(headers or {})}
        if auth:
            all_headers["x-auth-token"] = self.token()
        result = self.module.lambda_handler(
            http_event(method, url, headers=all_headers, body=body), LambdaContext()
        )
        text = result.get("body") or ""
        if result.get("isBase64Encoded"):
            text = base64.b64decode(text).decode()
        return Reply(
            int(result["statusCode"]), {k.lower(): v for k, v in (result.get("headers") or {}).items()}, text
        )

    def get(self, url: str, **kw: Any) -> Reply:
        return self.call("GET", url, **kw)

    def post(self, url: str, body: Any = None, **kw: Any) -> Reply:
        return self.call("POST", url, body, **kw)

    def put(self, url: str, body: Any = None, **kw: Any) -> Reply:
        return self.call("PUT", url, body, **kw)

    def patch(self, url: str, body: Any = None, **kw: Any) -> Reply:
        return self.call("PATCH", url, body, **kw)

    def delete(self, url: str, **kw: Any) -> Reply:
        return self.call("DELETE", url, **kw)
