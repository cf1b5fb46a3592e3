"""API fuzzing: schemathesis generates requests from the served OpenAPI document and sends
them, with a widget token, to the api function in this process (moto behind it).

Every answer must be a 4xx or a success, never a 5xx, and match the document's schema for its
status. Examples are derandomized (the same ones every run) and few per operation, to keep the
test near a minute; `MAILER_FUZZ_EXAMPLES` raises the count for a deeper run by hand.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from mailer_core.base import network_addresses
from mailer_core.base.config import reset_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.api_client import ApiClient, load_handler
from tests.support.constants import TEST_AUDIENCE, TEST_SECRET
from tests.support.lambda_wsgi import wsgi_app

APP = wsgi_app(load_handler("api"))
# The document the API serves, read through the API itself.
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP).exclude(method="OPTIONS")
EXAMPLES = int(os.environ.get("MAILER_FUZZ_EXAMPLES", "20"))


def _no_dns(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "the fuzzing test resolves no name")


@pytest.fixture
def deployed_api(aws_stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiClient]:
    """The api function as deployed (no loopback mailboxes), with an administrator's token; no
    generated host name is looked up (a mailbox check finds every host unknown at once)."""
    monkeypatch.delenv("MAILER_ALLOW_LOOPBACK_MAILBOXES")
    monkeypatch.setenv("MAILER_MAILBOX_CHECK_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setattr(network_addresses, "system_resolve", _no_dns)
    reset_settings()
    yield ApiClient(secret=TEST_SECRET, audience=TEST_AUDIENCE, is_admin=True)
    reset_settings()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_request_gets_a_server_error_or_an_answer_off_the_document(
    case: schemathesis.Case, deployed_api: ApiClient
) -> None:
    headers = {"X-Auth-Token": deployed_api.token()}
    case.call_and_validate(app=APP, headers=headers, checks=[not_a_server_error, response_schema_conformance])
