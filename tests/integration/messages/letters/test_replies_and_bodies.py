"""A reply or forward sent through a real SMTP server, and a message's body as sent
(docs/letters.md#reply-and-forward, #a-letters-own-view)."""

from __future__ import annotations

import pytest

from devstack.resources import StackResources
from tests.support.api_client import ApiClient, load_handler
from tests.support.fixtures.core import mailbox_body
from tests.support.smtp_servers import SmtpTestServer
from tests.support.sqs import deliver

RECEIVED = {
    "message_id_header": "<reply-1@client.example>",
    "references": ["<thread-0@client.example>"],
    "subject": "RE: Re: Offer {{ lead.name }}",
    "from": "Client <client@example.com>",
    "date": "Fri, 4 Dec 2026 10:00:00 +0000",
    "text": "Please send the price list {subject}.",
}


@pytest.fixture
def mailbox(user: ApiClient, smtp: SmtpTestServer) -> str:
    return str(user.post("/v1/mailboxes", mailbox_body(smtp)).json()["id"])


def send_all(stack: StackResources) -> None:
    result = deliver(load_handler("send"), stack.refs["SendQueue"], stack.attrs[("SendQueue", "Arn")])
    assert result["batchItemFailures"] == []


def test_a_reply_threads_prefixes_once_and_quotes_the_received_email(
    user: ApiClient, mailbox: str, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    # GIVEN an email of ours the client answered
    ours = user.post(
        "/v1/messages", {"to": ["client@example.com"], "subject": "Offer", "html": "<p>x</p>"}
    ).json()
    send_all(aws_stack)
    # WHEN the manager answers the client's email from the feed
    reply = user.post(
        "/v1/messages",
        {
            "to": ["client@example.com"],
            "html": "<p>Here it is</p>",
            "received": {**RECEIVED, "message_id": ours["id"]},
        },
    )
    assert reply.status == 202, reply.body
    send_all(aws_stack)
    # THEN the email answers it in the thread, with one "Re:" and the client's words quoted as text
    parsed = smtp.messages[-1].parsed()
    assert parsed["Subject"] == "Re: Offer {{ lead.name }}"  # the received subject is text, never rendered
    assert parsed["In-Reply-To"] == "<reply-1@client.example>"
    assert parsed["References"].split() == [
        ours["message_id_header"],
        "<thread-0@client.example>",
        "<reply-1@client.example>",
    ]
    html = parsed.get_body(("html",)).get_content()
    assert "Here it is" in html and "Please send the price list {subject}." in html.replace(
        "&#123;", "{"
    ).replace("&#125;", "}")
    text = parsed.get_body(("plain",)).get_content()
    assert "Please send the price list {subject}." in text


def test_a_forward_references_the_email_without_answering_it(
    user: ApiClient, mailbox: str, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    body = {"to": ["boss@example.com"], "html": "<p>FYI</p>", "received": {**RECEIVED, "mode": "forward"}}
    assert user.post("/v1/messages", body).status == 202
    send_all(aws_stack)
    parsed = smtp.messages[-1].parsed()
    assert parsed["Subject"] == "Fwd: RE: Re: Offer {{ lead.name }}"
    assert parsed["In-Reply-To"] is None
    assert parsed["References"].split() == ["<thread-0@client.example>", "<reply-1@client.example>"]


def test_answering_another_users_message_is_refused(
    user: ApiClient, colleague: ApiClient, mailbox: str
) -> None:
    ours = user.post("/v1/messages", {"to": ["client@example.com"], "subject": "s", "html": "h"}).json()
    colleague.post("/v1/mailboxes", mailbox_body(is_default=True))
    refused = colleague.post(
        "/v1/messages",
        {"to": ["c@example.com"], "html": "h", "received": {**RECEIVED, "message_id": ours["id"]}},
    )
    assert refused.status == 422 and refused.json()["field"] == "received.message_id"


def test_the_body_as_sent_is_shown_with_its_sources_and_attachments(
    user: ApiClient, colleague: ApiClient, mailbox: str, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    message = user.post(
        "/v1/messages",
        {"to": ["client@example.com"], "subject": "Hi {{ message.id }}", "html": "<p>Body</p>"},
    ).json()
    before = user.get(f"/v1/messages/{message['id']}/body").json()
    assert before["sent"] is None and before["source"] == {
        "subject": "Hi {{ message.id }}",
        "html": "<p>Body</p>",
    }
    send_all(aws_stack)
    view = user.get(f"/v1/messages/{message['id']}/body").json()
    assert view["status"] == "sent"
    assert view["sent"]["subject"] == f"Hi {message['id']}" == smtp.messages[-1].parsed()["Subject"]
    assert "<p>Body</p>" in view["sent"]["html"] and "Body" in view["sent"]["text"]
    assert view["attachments"] == [] and view["attachment_links"] == []
    assert colleague.get(f"/v1/messages/{message['id']}/body").status == 404
