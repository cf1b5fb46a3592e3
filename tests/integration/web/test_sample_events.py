"""Every sample event in events/ (used with `sam local invoke`) runs against its handler."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.api_client import LambdaContext, load_handler

EVENTS = Path(__file__).resolve().parents[3] / "events"

# event file -> (function, what the response must show)
EXPECTED: dict[str, tuple[str, dict[str, Any]]] = {
    "api-health": ("api", {"statusCode": 200, "json": {"status": "ok"}}),
    "api-openapi": ("api", {"statusCode": 200, "json_has": "openapi"}),
    "api-preflight": (
        "api",
        {"statusCode": 204, "header": ("Access-Control-Allow-Origin", "https://mailerdemo.kommo.com")},
    ),
    "api-unauthorized": ("api", {"statusCode": 401, "json_has": "error"}),
    "track-health": ("track", {"statusCode": 200, "json": {"status": "ok", "function": "track"}}),
    "webhook-health": ("webhook", {"statusCode": 200, "json": {"status": "ok", "function": "webhook"}}),
    "webhook-kommo-install-declined": ("webhook", {"statusCode": 200}),
    # Kommo's uninstall hook without its signature: refused, nothing switched off.
    "webhook-kommo-uninstall-unsigned": ("webhook", {"statusCode": 400, "json_has": "error"}),
    # A digital pipeline post (form, base64 as API Gateway passes it) for an account not installed.
    "webhook-kommo-dp-not-installed": ("webhook", {"statusCode": 404, "json_has": "error"}),
    "send-sqs": ("send", {"result": {"batchItemFailures": []}}),
    # A pipeline job for an account not installed: dropped with the reason, not retried.
    "pipeline-sqs": ("pipeline", {"result": {"batchItemFailures": []}}),
    "timers-send": ("timers", {"result": {"result": "ignored"}}),
    # A not-opened timer only announces the event; the actions function checks the open.
    "timers-not-opened": ("timers", {"result": {"result": "queued"}}),
    # An "opened" event for a message that does not exist is dropped, not retried.
    "actions-sqs": ("actions", {"result": {"batchItemFailures": []}}),
    # EventBridge Scheduler's rate(5 minutes) event carries no input: no mailbox is due.
    "bounces-schedule": ("bounces", {"result": {"queued": 0}}),
    # A poll job for a mailbox that is gone (deleted since the schedule queued it): nothing to do.
    "bounces-sqs": ("bounces", {"result": {"batchItemFailures": [], "polls": []}}),
}


def test_every_event_file_is_covered() -> None:
    assert sorted(p.stem for p in EVENTS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.usefixtures("aws_stack")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_event(name: str) -> None:
    function, expected = EXPECTED[name]
    event = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))

    result = load_handler(function).lambda_handler(event, LambdaContext())

    if "result" in expected:
        assert result == expected["result"]
        return
    assert result["statusCode"] == expected["statusCode"]
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    if "json" in expected:
        assert json.loads(body) == expected["json"]
    if "json_has" in expected:
        assert expected["json_has"] in json.loads(body)
    if "header" in expected:
        key, value = expected["header"]
        assert result["headers"][key] == value
