"""Fixtures for the digital pipeline and Salesbot: the demo account installed, its mailboxes and
template, the Kommo stand-in, and helpers that post hooks and run the pipeline function."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from mailer_core.base.config import reset_settings
from mailer_core.rendering import variables
from mailer_core.store.models import AutomationFactModel, MessageModel

from devstack import kommo_seed as seed
from devstack.kommo_seed import Seed, demo_seed
from devstack.kommo_standin import KommoStandIn
from devstack.resources import StackResources
from tests.conftest import TEST_AUDIENCE, TEST_SECRET
from tests.support.api_client import ApiClient, LambdaContext, Reply, http_event, load_handler
from tests.support.kommo_accounts import save_account_with_token
from tests.support.smtp_servers import Credentials, SmtpTestServer, smtp_server
from tests.support.sqs import deliver

TOKEN = "pipeline-test-token"
SECRET = "dp-secret-of-the-demo-installation-0123456789"
LOGIN = "maria.manager@example.com"
ADMIN_LOGIN = "anna.admin@example.com"
PASSWORD = "pipeline-smtp-password"
FORM = "application/x-www-form-urlencoded"
OFFER = {
    "name": "Offer",
    "subject": "Предложение для {{ lead.name }}",
    "html": "<p>{{ contact.name|inflect('datv') }}, добрый день!</p>",
    "attachment_links": ["https://files.example.com/offer.pdf"],
    "locale": "ru",
}


def caller(user_id: int, *, admin: bool = False) -> ApiClient:
    return ApiClient(
        secret=TEST_SECRET,
        audience=TEST_AUDIENCE,
        account_id=seed.ACCOUNT_ID,
        user_id=user_id,
        is_admin=admin,
    )


TEMPLATE_ID = "01KAXYZ00000000000000000AB"  # hooks check only the shape of the template id


@pytest.fixture
def installed(aws_stack: StackResources) -> StackResources:
    """The demo account installed, without Kommo: enough for what the hook itself checks."""
    save_account_with_token(TOKEN, dp_secret=SECRET)
    return aws_stack


@pytest.fixture
def sample() -> Seed:
    """The demo account's data; a test may change it before asking for `kommo`."""
    return demo_seed()


@pytest.fixture
def kommo(aws_stack: Any, sample: Seed, monkeypatch: pytest.MonkeyPatch) -> Iterator[KommoStandIn]:
    """The Kommo stand-in, with the demo account installed in Mailer and its pipeline secret."""
    variables.forget_account_data()
    with KommoStandIn(sample) as standin:
        standin.add_token(seed.ACCOUNT_ID, TOKEN)
        monkeypatch.setenv("MAILER_KOMMO_BASE_URL", standin.base_url)
        reset_settings()
        save_account_with_token(TOKEN, dp_secret=SECRET)
        yield standin
    variables.forget_account_data()


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with smtp_server(authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        yield server


def mailbox_body(server: SmtpTestServer, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sender_name": "Мария Менеджер",
        "sender_email": LOGIN,
        "smtp_host": server.host,
        "smtp_port": server.port,
        "smtp_security": "none",
        "smtp_login": LOGIN,
        "smtp_password": PASSWORD,
        "is_default": True,
        "rate_per_second": 100,
    }
    body.update(overrides)
    return body


@pytest.fixture
def manager_mailbox(kommo: KommoStandIn, smtp: SmtpTestServer) -> dict[str, Any]:
    """The default mailbox of the manager, who is responsible for every lead of the sample."""
    reply = caller(seed.MANAGER_USER_ID).post("/v1/mailboxes", mailbox_body(smtp))
    assert reply.status == 201, reply.body
    return dict(reply.json())


@pytest.fixture
def template(kommo: KommoStandIn, manager_mailbox: dict[str, Any]) -> dict[str, Any]:
    reply = caller(seed.MANAGER_USER_ID).post("/v1/templates", OFFER)
    assert reply.status == 201, reply.body
    return dict(reply.json())


def form_fields(template_id: str, **changes: Any) -> list[tuple[str, str]]:
    """The fields of a captured Kommo post (type 14, a lead entering «Qualified»), changed as asked.

    `changes` maps a field's bracket key to a new value, or to None to leave the field out.
    """
    fields = {
        "event[type]": "14",
        "event[type_code]": "lead_status_changed",
        "event[data][id]": str(seed.LEAD_OFFER),
        "event[data][element_type]": "2",
        "event[data][status_id]": str(seed.STATUS_QUALIFIED),
        "event[data][pipeline_id]": str(seed.PIPELINE_ID),
        "event[data][direction_of_movement]": "went_to_trigger",
        "event[time]": "1764000000",
        "action[settings][widget][settings][template_id]": template_id,
        "action[settings][widget][settings][secret]": SECRET,
        "subdomain": seed.SUBDOMAIN,
        "account_id": str(seed.ACCOUNT_ID),
    }
    fields.update(changes)
    return [(k, v) for k, v in fields.items() if v is not None]


def post_hook(path: str, body: str | bytes, *, content_type: str = FORM, as_base64: bool = False) -> Reply:
    """The webhook function called as API Gateway would (form bodies often arrive base64-encoded)."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    event = http_event("POST", path, headers={"content-type": content_type}, body=raw.decode("utf-8"))
    if as_base64:
        event["body"] = base64.b64encode(raw).decode()
        event["isBase64Encoded"] = True
    result = load_handler("webhook").lambda_handler(event, LambdaContext())
    text = result.get("body") or ""
    return Reply(int(result["statusCode"]), dict(result.get("headers") or {}), text)


def queued_jobs(stack: StackResources) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.refs["PipelineQueue"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def run_pipeline(stack: StackResources) -> list[dict[str, Any]]:
    """Deliver the pipeline queue to the pipeline function until it is empty; each poll's result."""
    handler = load_handler("pipeline")
    results: list[dict[str, Any]] = []
    while True:
        result = deliver(handler, stack.refs["PipelineQueue"], stack.attrs[("PipelineQueue", "Arn")])
        if not result["delivered"]:
            return results
        results.append(result)


def messages() -> list[MessageModel]:
    return list(MessageModel.query(seed.ACCOUNT_ID, consistent_read=True))


def fact(fact_key: str) -> AutomationFactModel:
    return AutomationFactModel.get(seed.ACCOUNT_ID, fact_key, consistent_read=True)
