"""The local API Gateway: routing, the payload 2.0 event, and response translation."""

from __future__ import annotations

import base64
import http.client
import json
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mailer_core.base.clock import FakeClock

from devstack.gateway import MAX_BODY_BYTES, Gateway, Router
from devstack.template import HttpRoute, http_routes
from tests.support.stack_helpers import MiniStack, mini_stack

TEMPLATE = """
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../functions/echo
      Handler: handler.lambda_handler
      Events:
        Exact: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: /v1/messages/special}}
        One: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: "/v1/messages/{message_id}"}}
        Cancel:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: POST, Path: "/v1/messages/{message_id}/cancel"}
        Upload: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: PUT, Path: /v1/upload}}
        GetAll: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: "/v1/{proxy+}"}}
        AnyAll: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: ANY, Path: "/v1/{proxy+}"}}
  ResponderFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../functions/responder
      Handler: handler.lambda_handler
      Events:
        Kind: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: "/r/{kind}"}}
"""

ECHO = """
import json

def lambda_handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}
"""

RESPONDER = """
import base64

GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")

def lambda_handler(event, context):
    kind = event["pathParameters"]["kind"]
    if kind == "binary":
        return {
            "statusCode": 200,
            "headers": {"content-type": "image/gif"},
            "body": base64.b64encode(GIF).decode(),
            "isBase64Encoded": True,
        }
    if kind == "cookies":
        return {
            "statusCode": 201,
            "headers": {"x-one": "1"},
            "multiValueHeaders": {"x-multi": ["a", "b"]},
            "cookies": ["session=abc; Path=/; HttpOnly", "theme=dark"],
            "body": "created",
        }
    if kind == "dict":
        return {"hello": "world"}
    if kind == "string":
        return "just text"
    if kind == "boom":
        raise RuntimeError("the handler broke")
    if kind == "bytes":
        return {"statusCode": 200, "body": b"not JSON-serialisable"}
    return {"statusCode": 204}
"""

NOW = datetime(2026, 11, 24, 9, 30, 15, 250000, tzinfo=UTC)


@pytest.fixture
def project(tmp_path: Path) -> MiniStack:
    return mini_stack(tmp_path, TEMPLATE, {"echo": ECHO, "responder": RESPONDER}, create=False)


@pytest.fixture
def gateway(project: MiniStack) -> Iterator[Gateway]:
    gw = Gateway(http_routes(project.template), project.functions, clock=FakeClock(current=NOW))
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def request(
    gw: Gateway,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body or method in {"POST", "PUT", "PATCH"}:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def echoed(gw: Gateway, method: str, target: str, **kwargs: Any) -> dict[str, Any]:
    status, _, body = request(gw, method, target, **kwargs)
    assert status == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


# ---------------------------------------------------------------- routing


def _routes(*keys: str) -> list[HttpRoute]:
    return [HttpRoute("Fn", f"E{i}", k.split()[0], k.split()[1]) for i, k in enumerate(keys)]


@pytest.mark.parametrize(
    ("method", "path", "route_key", "params"),
    [
        ("GET", "/pets/dog/1", "GET /pets/dog/1", {}),
        ("GET", "/pets/dog/2", "GET /pets/dog/{id}", {"id": "2"}),
        ("GET", "/pets/cat/1", "GET /pets/{proxy+}", {"proxy": "cat/1"}),
        ("POST", "/pets/dog/1", "ANY /pets/dog/{id}", {"id": "1"}),
        ("POST", "/pets/cat/1", "ANY /{proxy+}", {"proxy": "pets/cat/1"}),
        ("GET", "/pets", "ANY /{proxy+}", {"proxy": "pets"}),
        ("GET", "/pets/dog", "GET /pets/{proxy+}", {"proxy": "dog"}),
        ("DELETE", "/pets/dog/7", "DELETE /pets/dog/{id}", {"id": "7"}),
        ("GET", "/pets/x/y/z", "GET /pets/{proxy+}", {"proxy": "x/y/z"}),
    ],
)
def test_router_picks_the_most_specific_route_like_api_gateway(
    method: str, path: str, route_key: str, params: dict[str, str]
) -> None:
    # GIVEN the routes of API Gateway's own routing example, plus a method-specific twin
    router = Router(
        _routes(
            "ANY /{proxy+}",
            "GET /pets/{proxy+}",
            "ANY /pets/dog/{id}",
            "DELETE /pets/dog/{id}",
            "GET /pets/dog/{id}",
            "GET /pets/dog/1",
        )
    )
    # WHEN a request is routed
    matched = router.match(method, path)
    # THEN the most specific route wins and its parameters are extracted
    assert matched is not None
    route, found = matched
    assert (route.route_key, found) == (route_key, params)


def test_router_finds_nothing_for_a_bare_greedy_prefix_or_an_empty_parameter() -> None:
    router = Router(_routes("GET /v1/{proxy+}", "GET /v1/items/{id}"))
    assert router.match("GET", "/v1") is None
    assert router.match("GET", "/v1/") is None
    assert router.match("GET", "/v1/items/")[0].route_key == "GET /v1/{proxy+}"  # type: ignore[index]
    assert router.match("POST", "/v1/items/3") is None


def test_default_route_catches_what_no_route_matches() -> None:
    router = Router([*_routes("GET /health"), HttpRoute("Fn", "Default", None, None)])
    assert router.match("GET", "/health")[0].route_key == "GET /health"  # type: ignore[index]
    assert router.match("POST", "/anything")[0].route_key == "$default"  # type: ignore[index]


def test_gateway_routes_requests_to_the_declared_routes(gateway: Gateway) -> None:
    assert echoed(gateway, "GET", "/v1/messages/special")["routeKey"] == "GET /v1/messages/special"
    one = echoed(gateway, "GET", "/v1/messages/m1")
    assert (one["routeKey"], one["pathParameters"]) == ("GET /v1/messages/{message_id}", {"message_id": "m1"})
    deep = echoed(gateway, "GET", "/v1/messages/m1/parts")
    assert (deep["routeKey"], deep["pathParameters"]) == ("GET /v1/{proxy+}", {"proxy": "messages/m1/parts"})
    assert echoed(gateway, "DELETE", "/v1/messages/m1")["routeKey"] == "ANY /v1/{proxy+}"


# ---------------------------------------------------------------- the event


def test_event_has_the_payload_2_0_fields_api_gateway_sends(gateway: Gateway) -> None:
    # GIVEN a request with a percent-encoded path, repeated query keys and headers, cookies
    event = echoed(
        gateway,
        "POST",
        "/v1/messages/m%201/cancel?b=2&a=1&a=x%20y",
        headers=[
            ("Content-Type", "application/json"),
            ("X-Custom", "one"),
            ("X-Custom", "two"),
            ("Cookie", "c1=v1; c2=v2"),
            ("User-Agent", "tests/1.0"),
        ],
        body=b'{"reason": "changed my mind"}',
    )
    # THEN the event is what API Gateway's HTTP API sends (format 2.0)
    context = event.pop("requestContext")
    request_id = context.pop("requestId")
    assert len(request_id) == 16
    headers = event.pop("headers")
    assert event == {
        "version": "2.0",
        "routeKey": "POST /v1/messages/{message_id}/cancel",
        "rawPath": "/v1/messages/m 1/cancel",
        "rawQueryString": "b=2&a=1&a=x%20y",
        "cookies": ["c1=v1", "c2=v2"],
        "queryStringParameters": {"b": "2", "a": "1,x y"},
        "pathParameters": {"message_id": "m 1"},
        "body": '{"reason": "changed my mind"}',
        "isBase64Encoded": False,
    }
    assert headers["x-custom"] == "one,two"
    assert headers["content-type"] == "application/json"
    assert headers["host"] == f"127.0.0.1:{gateway.port}"
    assert "cookie" not in headers
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-port"] == str(gateway.port)
    assert all(name == name.lower() for name in headers)
    assert context == {
        "accountId": "123456789012",
        "apiId": gateway.api_id,
        "domainName": f"127.0.0.1:{gateway.port}",
        "domainPrefix": "127",
        "http": {
            "method": "POST",
            "path": "/v1/messages/m 1/cancel",
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": "tests/1.0",
        },
        "routeKey": "POST /v1/messages/{message_id}/cancel",
        "stage": "$default",
        "time": "24/Nov/2026:09:30:15 +0000",
        "timeEpoch": 1795512615250,
    }


def test_event_leaves_out_what_the_request_does_not_have(gateway: Gateway) -> None:
    event = echoed(gateway, "GET", "/v1/messages/special")
    for absent in ("cookies", "queryStringParameters", "pathParameters", "body"):
        assert absent not in event
    assert event["rawQueryString"] == ""
    assert event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("content_type", "encoded"),
    [
        ("application/octet-stream", True),
        ("application/x-www-form-urlencoded", True),
        (None, True),
        ("text/plain; charset=utf-8", False),
        ("application/problem+json", False),
    ],
)
def test_non_text_bodies_arrive_base64_encoded(
    gateway: Gateway, content_type: str | None, encoded: bool
) -> None:
    payload = b"a=1&b=\xc3\xa9"
    headers = [("Content-Type", content_type)] if content_type else []
    event = echoed(gateway, "PUT", "/v1/upload", headers=headers, body=payload)
    assert event["isBase64Encoded"] is encoded
    assert (base64.b64decode(event["body"]) if encoded else event["body"].encode()) == payload


def test_a_body_over_ten_megabytes_is_refused_with_413(gateway: Gateway) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        conn.putrequest("PUT", "/v1/upload")
        conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        conn.endheaders()  # the server answers before reading the body
        response = conn.getresponse()
        assert response.status == 413
        assert json.loads(response.read()) == {"message": "Request Entity Too Large"}
    finally:
        conn.close()


def test_a_chunked_body_is_read_whole(gateway: Gateway) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        conn.request(
            "PUT",
            "/v1/upload",
            body=iter([b"hello ", b"chunked ", b"world"]),
            headers={"Content-Type": "text/plain"},
            encode_chunked=True,
        )
        event = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert event["body"] == "hello chunked world"


# ---------------------------------------------------------------- responses


def test_base64_response_body_is_sent_as_bytes(gateway: Gateway) -> None:
    status, headers, body = request(gateway, "GET", "/r/binary")
    assert status == 200
    assert headers["Content-Type"] == "image/gif"
    assert body.startswith(b"GIF89a")
    assert int(headers["Content-Length"]) == len(body)


def test_cookies_and_multi_value_headers_become_repeated_headers(gateway: Gateway) -> None:
    status, headers, body = request(gateway, "GET", "/r/cookies")
    assert (status, body) == (201, b"created")
    assert headers.get_all("Set-Cookie") == ["session=abc; Path=/; HttpOnly", "theme=dark"]
    assert headers.get_all("x-multi") == ["a", "b"]
    assert headers["x-one"] == "1"


@pytest.mark.parametrize(("kind", "body"), [("dict", {"hello": "world"}), ("string", "just text")])
def test_a_result_without_status_code_is_a_200_json_response(gateway: Gateway, kind: str, body: Any) -> None:
    status, headers, raw = request(gateway, "GET", f"/r/{kind}")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert (json.loads(raw) if isinstance(body, dict) else raw.decode()) == body


def test_unknown_path_is_404_like_api_gateway(gateway: Gateway) -> None:
    status, headers, body = request(gateway, "GET", "/nowhere")
    assert (status, body) == (404, b'{"message":"Not Found"}')
    assert headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("kind", ["boom", "bytes"])
def test_a_failing_handler_is_a_500_and_its_traceback_is_logged(
    gateway: Gateway, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="devstack.gateway"):
        status, _, body = request(gateway, "GET", f"/r/{kind}")
    assert (status, body) == (500, b'{"message":"Internal Server Error"}')
    assert any(r.exc_info and "ResponderFunction" in r.getMessage() for r in caplog.records)


def test_head_gets_headers_without_a_body(gateway: Gateway) -> None:
    # API Gateway sends HEAD only to HEAD or ANY routes: here ANY /v1/{proxy+}
    status, headers, body = request(gateway, "HEAD", "/v1/anything")
    assert status == 200
    assert body == b""
    assert int(headers["Content-Length"]) > 0


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "LOCK", "FOO"])
@pytest.mark.parametrize("target", ["/v1/anything", "/v1/messages/1", "/r/dict", "/nowhere"])
def test_a_method_no_route_can_declare_is_404_like_api_gateway(
    gateway: Gateway, method: str, target: str
) -> None:
    # not even the ANY /v1/{proxy+} route takes it, and nothing answers 501 before routing
    status, headers, body = request(gateway, method, target)
    assert (status, body) == (404, b'{"message":"Not Found"}')
    assert headers["Content-Type"] == "application/json"
