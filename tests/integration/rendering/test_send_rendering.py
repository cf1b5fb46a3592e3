"""Templates rendered at send time by the send worker, with fresh Kommo data, to a real SMTP server."""

from __future__ import annotations

import base64
import json
import urllib.request
from email.message import EmailMessage
from typing import Any

import boto3
import pytest
from mailer_core.adapters import sqs
from mailer_core.kommo.client import KommoClient
from mailer_core.kommo.errors import KommoBusy
from mailer_core.rendering import variables
from mailer_core.sending.worker import SendWorker
from mailer_core.store.models import AccountModel, MessageModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.api_client import ApiClient, load_handler
from tests.support.fixtures.templates import OFFER, TOKEN, mailbox_body
from tests.support.kommo_accounts import save_account_with_token
from tests.support.kommo_helpers import MANAGER_TOKEN
from tests.support.smtp_servers import SmtpTestServer
from tests.support.sqs import deliver

LEAD = {"type": "leads", "id": seed.LEAD_OFFER}


def take_jobs(stack: StackResources) -> list[sqs.SendJob]:
    sqs_client = boto3.client("sqs")
    jobs = []
    while got := sqs_client.receive_message(QueueUrl=stack.refs["SendQueue"], MaxNumberOfMessages=10).get(
        "Messages"
    ):
        for m in got:
            jobs.append(sqs.SendJob.from_body(m["Body"]))
            sqs_client.delete_message(QueueUrl=stack.refs["SendQueue"], ReceiptHandle=m["ReceiptHandle"])
    return jobs


def compose(client: ApiClient, **body: Any) -> dict[str, Any]:
    reply = client.post("/v1/messages", body)
    assert reply.status == 202, reply.body
    return dict(reply.json())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def stored(message_id: str) -> MessageModel:
    return MessageModel.get(seed.ACCOUNT_ID, message_id, consistent_read=True)


@pytest.fixture
def sending(manager: ApiClient, smtp: SmtpTestServer, kommo: KommoStandIn) -> SmtpTestServer:
    reply = manager.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=100))
    assert reply.status == 201, reply.body
    return smtp


def test_an_email_rendered_with_a_managers_token_goes_out_without_users_and_blocks_nothing(
    manager: ApiClient, sending: SmtpTestServer, aws_stack: StackResources, kommo: KommoStandIn
) -> None:
    # GIVEN a manager installed the integration: Kommo lists users to administrators only
    kommo.add_token(seed.ACCOUNT_ID, MANAGER_TOKEN, user_id=seed.MANAGER_USER_ID)
    save_account_with_token(MANAGER_TOKEN)
    html = "<p>{{ lead.name }}: {{ lead.responsible.id }} [{{ lead.responsible.name }}]</p>"
    compose(manager, subject="Offer", html=html, entity=LEAD)

    result = deliver(load_handler("send"), aws_stack.refs["SendQueue"], aws_stack.attrs[("SendQueue", "Arn")])

    # THEN the email went out with the lead's data; the responsible user is only its id
    assert result["batchItemFailures"] == []
    [received] = sending.messages
    assert f"Поставка оборудования для ООО «Ромашка»: {seed.MANAGER_USER_ID} []" in html_of(received.parsed())
    # AND Kommo's refusal to list users (403) blocked nothing: the account is active
    assert ("/api/v4/users", 403) in [(r.path, r.status) for r in kommo.requests]
    assert AccountModel.get(seed.ACCOUNT_ID, consistent_read=True).status == "active"


def test_an_email_that_names_no_user_reads_no_users(
    manager: ApiClient, sending: SmtpTestServer, aws_stack: StackResources, kommo: KommoStandIn
) -> None:
    # GIVEN an email in Russian whose template names the lead and its contact, but no user
    compose(
        manager, subject="{{ lead.name }}", html="<p>{{ contact.first_name }}</p>", entity=LEAD, locale="ru"
    )

    result = deliver(load_handler("send"), aws_stack.refs["SendQueue"], aws_stack.attrs[("SendQueue", "Arn")])

    # THEN it went out filled in, and Kommo's users (an administrators' list) were never asked for
    assert result["batchItemFailures"] == []
    [received] = sending.messages
    assert "Иван" in html_of(received.parsed())
    assert "/api/v4/users" not in [r.path for r in kommo.requests]


def test_a_saved_template_is_sent_rendered_with_the_leads_data(
    manager: ApiClient, sending: SmtpTestServer, aws_stack: StackResources
) -> None:
    template = manager.post("/v1/templates", OFFER).json()
    message = compose(manager, template_id=template["id"], entity=LEAD)
    assert message["template_id"] == template["id"] and message["to"] == ["ivan.petrov@example.com"]
    assert message["subject"] == OFFER["subject"]  # the source: rendered at send time

    result = deliver(load_handler("send"), aws_stack.refs["SendQueue"], aws_stack.attrs[("SendQueue", "Arn")])

    assert result["batchItemFailures"] == []
    [received] = sending.messages
    parsed = received.parsed()
    assert parsed["Subject"] == "Предложение для Поставка оборудования для ООО «Ромашка»"
    html = html_of(parsed)
    assert "Ивану Петрову, добрый день!" in html
    assert "сто пятьдесят тысяч рублей 00 копеек" in html
    assert "Мария Менеджер, +7 495 111-22-33" in html  # the signature
    text = parsed.get_body(preferencelist=("plain",))
    assert text is not None and "Ивану Петрову" in str(text.get_content())
    assert stored(message["id"]).status == "sent"
    # AND the API shows the subject as sent beside the template's source (the card lists it)
    assert message["sent_subject"] is None
    shown = manager.get(f"/v1/messages/{message['id']}").json()
    assert (shown["subject"], shown["sent_subject"]) == (OFFER["subject"], parsed["Subject"])
    [listed] = manager.get(f"/v1/messages?entity_type=lead&entity_id={seed.LEAD_OFFER}").json()["items"]
    assert listed["sent_subject"] == parsed["Subject"]


def test_the_crm_data_is_read_when_the_email_is_sent(
    manager: ApiClient, sending: SmtpTestServer, kommo: KommoStandIn, aws_stack: StackResources
) -> None:
    message = compose(
        manager,
        subject="Для {{ lead.name }}",
        html="<p>{{ lead.price|amount('RUB') }}</p>",
        entity=LEAD,
        locale="ru",
    )
    request = urllib.request.Request(
        f"{kommo.base_url}/api/v4/leads/{seed.LEAD_OFFER}",
        data=json.dumps({"name": "Новое имя сделки", "price": 2000}).encode(),
        method="PATCH",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).close()
    [job] = take_jobs(aws_stack)
    assert job.entity == f"leads:{seed.LEAD_OFFER}"

    with SendWorker() as worker:
        assert worker.process(job) == "sent"

    parsed = sending.messages[0].parsed()
    assert parsed["Subject"] == "Для Новое имя сделки"
    assert "2\u00a0000 рублей 00 копеек" in html_of(parsed)
    assert stored(message["id"]).subject == "Для {{ lead.name }}"


def test_a_raw_compose_with_variables_and_legacy_placeholders_is_rendered(
    manager: ApiClient, sending: SmtpTestServer, aws_stack: StackResources
) -> None:
    compose(
        manager,
        entity={"type": "contacts", "id": seed.CONTACT_OLGA},
        subject="Hello {{ contact.first_name }}",
        html="<p>{{ contact|gender('Dear Sir', 'Dear Madam', 'Hello') }}, id {id}, subject «{subject}»</p>",
        locale="en",
    )
    [job] = take_jobs(aws_stack)
    with SendWorker() as worker:
        assert worker.process(job) == "sent"
    parsed = sending.messages[0].parsed()
    assert parsed["Subject"] == "Hello Olga"
    assert "Hello, id " in html_of(parsed) and "subject «Hello Olga»" in html_of(parsed)


def test_a_render_failure_fails_the_message_with_the_reason_and_is_not_retried(
    manager: ApiClient, sending: SmtpTestServer, aws_stack: StackResources
) -> None:
    message = compose(manager, subject="x", html="{{ lead.price|in_words(currency='XYZ') }}", entity=LEAD)
    [job] = take_jobs(aws_stack)
    with SendWorker() as worker:
        assert worker.process(job) == "failed"
    failed = stored(message["id"])
    assert failed.status == "failed"
    assert failed.last_error and "could not be rendered" in failed.last_error and "XYZ" in failed.last_error
    assert take_jobs(aws_stack) == [] and sending.messages == []


def test_a_lead_deleted_before_sending_fails_the_message(
    manager: ApiClient, sending: SmtpTestServer, aws_stack: StackResources, kommo: KommoStandIn
) -> None:
    message = compose(
        manager,
        to=["client@example.com"],
        subject="{{ lead.name }}",
        html="x",
        entity={"type": "leads", "id": seed.LEAD_REDESIGN},
    )
    kommo.remove_entity("leads", seed.LEAD_REDESIGN)  # deleted in Kommo after the compose
    [job] = take_jobs(aws_stack)
    with SendWorker() as worker:
        assert worker.process(job) == "failed"
    assert str(seed.LEAD_REDESIGN) in (stored(message["id"]).last_error or "")
    assert sending.messages == []


def test_a_batch_reads_kommo_a_few_times_not_per_email(
    manager: ApiClient, sending: SmtpTestServer, kommo: KommoStandIn, aws_stack: StackResources
) -> None:
    template = manager.post("/v1/templates", OFFER).json()
    for lead in (seed.LEAD_OFFER, seed.LEAD_REDESIGN):
        for _ in range(3):
            compose(manager, template_id=template["id"], entity={"type": "leads", "id": lead})
    variables.forget_account_data()
    before = len(kommo.requests)

    result = deliver(load_handler("send"), aws_stack.refs["SendQueue"], aws_stack.attrs[("SendQueue", "Arn")])

    assert result["batchItemFailures"] == [] and len(sending.messages) == 6
    paths = sorted(r.path for r in kommo.requests[before:])
    # one list of leads, one of contacts, one of companies; pipelines, account once; no users:
    # the template names no user, and the mailbox has a sender name
    assert paths == sorted(
        [
            "/api/v4/leads",
            "/api/v4/contacts",
            "/api/v4/companies",
            "/api/v4/leads/pipelines",
            "/api/v4/account",
        ]
    )
    subjects = sorted(m.parsed()["Subject"] for m in sending.messages)
    assert subjects[0] == "Предложение для Website redesign for Blue Harbor"


def test_template_recipients_may_be_variables_and_the_client(
    manager: ApiClient, sending: SmtpTestServer, aws_stack: StackResources
) -> None:
    template = manager.post(
        "/v1/templates",
        {**OFFER, "to_client": "all", "to": ["{{ lead.responsible.email }}"], "bcc": ["{{ manager.email }}"]},
    ).json()
    message = compose(manager, template_id=template["id"], entity=LEAD)
    assert message["to"] == [
        "ivan.petrov@example.com",
        "olga.smirnova@example.com",
        "olga.home@example.org",
        "maria.manager@example.com",
    ]
    assert message["bcc"] == ["maria.manager@example.com"]
    edited = compose(
        manager, template_id=template["id"], entity=LEAD, to=["other@example.com"], subject="Edited"
    )
    assert edited["to"] == ["other@example.com"] and edited["subject"] == "Edited"
    assert (
        manager.post("/v1/messages", {"template_id": "01NOPE00000000000000000000", "entity": LEAD}).status
        == 404
    )


def test_pasted_images_travel_as_inline_parts(
    manager: ApiClient, sending: SmtpTestServer, aws_stack: StackResources
) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
    compose(
        manager,
        to=["client@example.com"],
        subject="Picture",
        html=f'<style>p {{ color: red }}</style><p>Look</p><img src="data:image/png;base64,{png}">',
    )
    [job] = take_jobs(aws_stack)
    with SendWorker() as worker:
        assert worker.process(job) == "sent"
    parsed = sending.messages[0].parsed()
    kinds = [part.get_content_type() for part in parsed.walk()]
    assert kinds[:5] == ["multipart/alternative", "text/plain", "multipart/related", "text/html", "image/png"]
    html = html_of(parsed)
    image = next(p for p in parsed.walk() if p.get_content_type() == "image/png")
    assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html
    assert '<p style="color: red;">Look</p>' in html


def test_an_account_whose_kommo_budget_is_taken_has_its_email_wait_on_the_queue_with_the_reason(
    manager: ApiClient, sending: SmtpTestServer, aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an email whose render needs Kommo, and the account's Kommo budget taken for 3 s
    message = compose(
        manager,
        to=["client@example.com"],
        subject="{{ lead.name }}",
        html="x",
        entity={"type": "leads", "id": seed.LEAD_REDESIGN},
    )
    [job] = take_jobs(aws_stack)
    variables.forget_account_data()

    def busy(*_: Any, **__: Any) -> Any:
        raise KommoBusy(
            "Kommo's rate limit (kommo#1) is taken by other callers; try again in 3 s", retry_after=3
        )

    monkeypatch.setattr(KommoClient, "request", busy)
    # WHEN the send worker takes it
    with SendWorker() as worker:
        outcome = worker.process(job)
    # THEN nothing fails: the email is queued again, saying why and when it is tried next
    assert outcome == "deferred" and sending.messages == []
    waiting = stored(message["id"])
    assert (waiting.status, waiting.waiting_reason) == ("queued", "kommo")
    assert waiting.attempts == 0 and waiting.last_error is None
    view = manager.get(f"/v1/messages/{message['id']}").json()
    assert view["waiting"]["reason"] == "kommo"
