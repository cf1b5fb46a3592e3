"""A body API Gateway marks base64-encoded is decoded strictly: anything else is the caller's 400."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.support.api_client import ApiClient, LambdaContext, Reply, http_event
from tests.support.constants import TEST_AUDIENCE, TEST_SECRET


def post_encoded(body: str) -> Reply:
    """POST /v1/templates with `body` as API Gateway's base64-encoded body, as it is."""
    client = ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE)
    headers = {"x-auth-token": client.token(), "content-type": "application/octet-stream"}
    event: dict[str, Any] = http_event("POST", "/v1/templates", headers=headers, body=b"{}")
    event["body"] = body
    result = client.module.lambda_handler(event, LambdaContext())
    return Reply(int(result["statusCode"]), result.get("headers") or {}, result.get("body") or "")


@pytest.mark.usefixtures("aws_stack")
@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("eyJuYW1lIjogIk9mZmVyIn0", "not valid base64"),  # padding cut off
        ("not base64 at all!", "not valid base64"),
        ("e30=\n%%", "not valid base64"),
        (base64.b64encode(b'{"name": "\xff\xfe"}').decode(), "not UTF-8"),
    ],
)
def test_a_body_that_is_not_base64_text_is_a_400_naming_the_body(body: str, words: str) -> None:
    reply = post_encoded(body)

    assert reply.status == 400
    assert reply.json()["field"] == "body"
    assert words in reply.json()["message"]


@pytest.mark.usefixtures("aws_stack")
def test_a_base64_json_body_is_read_as_json() -> None:
    template = {"name": "Offer", "subject": "Hello", "html": "<p>Hi</p>"}
    reply = post_encoded(base64.b64encode(json.dumps(template).encode()).decode())
    assert reply.status == 201, reply.body
    assert reply.json()["name"] == "Offer"
