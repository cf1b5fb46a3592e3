"""A public template sent by another user carries that user's signature, not its owner's."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from devstack.kommo_standin import seed
from devstack.kommo_standin.seed import Seed
from devstack.resources import StackResources
from tests.support.api_client import ApiClient, load_handler
from tests.support.fixtures.templates import COLLEAGUE_ID, LOGIN, OFFER, mailbox_body
from tests.support.kommo_helpers import add_kommo_user
from tests.support.smtp_servers import SmtpTestServer
from tests.support.sqs import deliver

LEAD = {"type": "leads", "id": seed.LEAD_OFFER}


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def test_a_public_template_sent_by_a_colleague_carries_the_colleagues_signature(
    manager: ApiClient,
    colleague: ApiClient,
    smtp: SmtpTestServer,
    sample: Seed,
    aws_stack: StackResources,
    request: pytest.FixtureRequest,
) -> None:
    add_kommo_user(
        sample, COLLEAGUE_ID, "Пётр Коллега", "petr@example.com"
    )  # a Kommo user who sees all leads
    request.getfixturevalue("kommo")
    # GIVEN the manager's public template and both users' own mailboxes and signatures
    assert manager.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=100)).status == 201
    petr = mailbox_body(
        smtp,
        sender_name="Пётр Коллега",
        sender_email="petr@example.com",
        smtp_login=LOGIN,
        sender_phone="+7 495 222-33-44",
        signature="<p>--<br>{{ manager.name }}, отдел продаж, {{ manager.phone }}</p>",
        rate_per_second=100,
    )
    assert colleague.post("/v1/mailboxes", petr).status == 201
    public = manager.post("/v1/templates", {**OFFER, "is_public": True}).json()

    # WHEN the colleague sends it (from his default mailbox) and the worker renders it
    reply = colleague.post("/v1/messages", {"template_id": public["id"], "entity": LEAD})
    assert reply.status == 202, reply.body
    result = deliver(load_handler("send"), aws_stack.refs["SendQueue"], aws_stack.attrs[("SendQueue", "Arn")])

    # THEN the email leaves from his mailbox with his signature, filled in with his data
    assert result["batchItemFailures"] == []
    [received] = smtp.messages
    parsed = received.parsed()
    assert "petr@example.com" in parsed["From"]
    html = html_of(parsed)
    assert "Пётр Коллега, отдел продаж, +7 495 222-33-44" in html
    assert "Мария Менеджер" not in html and "+7 495 111-22-33" not in html
