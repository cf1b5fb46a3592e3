"""Which routes need the widget's token, and what a request no route takes is answered.

Authentication follows the routes, not a path prefix: every route but the documented public
ones needs the token, so a route added outside /v1 is protected by default. A path whose id
does not fit its route's pattern (control characters, quotes, `¶` after URL-decoding) gets the
API's documented error body, not Powertools' default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from mailer_core.web import edge

from tests.support.api_client import ApiClient, LambdaContext, http_event
from tests.support.constants import TEST_AUDIENCE, TEST_SECRET

ROOT = Path(__file__).resolve().parents[3]
DOCUMENT = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
ERROR_CODES = set(DOCUMENT["components"]["schemas"]["Error"]["properties"]["error"]["enum"])


def is_error_body(body: dict[str, Any]) -> bool:
    """The API's documented error body (components.schemas.Error)."""
    allowed = set(DOCUMENT["components"]["schemas"]["Error"]["properties"])
    return body.get("error") in ERROR_CODES and isinstance(body.get("message"), str) and set(body) <= allowed


def test_the_public_routes_are_the_ones_the_document_says_need_no_token() -> None:
    documented = {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete", "head"} and operation.get("security") == []
    }
    assert documented == edge.PUBLIC_ROUTES


@pytest.mark.usefixtures("aws_stack")
def test_a_new_route_outside_v1_is_protected_by_default() -> None:
    # GIVEN a route added outside /v1, behind the API's middleware
    app = APIGatewayHttpResolver()
    app.use(middlewares=[edge.api_middleware])

    @app.get("/reports/daily")
    def daily() -> dict[str, str]:
        return {"report": "everyone's data"}

    def call(headers: dict[str, str]) -> dict[str, Any]:
        return app.resolve(http_event("GET", "/reports/daily", headers=headers), LambdaContext())

    # THEN without the widget's token it answers 401 with the API's error body
    refused = call({})
    assert refused["statusCode"] == 401
    assert is_error_body(json.loads(refused["body"]))
    # AND with a token it runs for that caller
    token = ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE).token()
    assert call({"x-auth-token": token})["statusCode"] == 200


@pytest.mark.usefixtures("aws_stack")
@pytest.mark.parametrize(
    "path",
    [
        '/v1/mailboxes/01J"X',
        "/v1/messages/01J\x01X",
        "/v1/templates/\u00b6",
        "/v1/suppressions/anna\x00@example.com",
        "/v1/links/7/extra",
        "/v1/nothing-here",
        "/health/",
    ],
)
def test_a_path_no_route_takes_answers_the_apis_error_body(path: str) -> None:
    client = ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE)

    found = client.get(path)
    anonymous = client.get(path, auth=False)

    assert found.status == 404
    assert found.headers["content-type"] == "application/json"
    assert is_error_body(found.json())
    assert found.json()["error"] == "not_found"
    assert found.json()["field"] == "path"
    # the token is checked first, as on every route that is not public
    assert anonymous.status == 401 and is_error_body(anonymous.json())


@pytest.mark.usefixtures("aws_stack")
def test_the_webhook_function_answers_an_unknown_path_with_the_error_body() -> None:
    client = ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE, function="webhook")

    reply = client.get("/hooks/kommo/nothing\x01", auth=False)

    assert reply.status == 404
    assert reply.headers["content-type"] == "application/json"
    assert is_error_body(reply.json()) and reply.json()["error"] == "not_found"
