"""A campaign email's opt-out, end to end: real emails from the send worker to a real SMTP
server, the track function's /u routes, the suppression list and the next send (docs/opt-out.md)."""

from __future__ import annotations

import json
import re
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from mailer_core.accounts.actors import Actor
from mailer_core.base.config import reset_settings
from mailer_core.messages import compose
from mailer_core.messages.requests import ComposeRequest
from mailer_core.store.models import SuppressionModel

from devstack.resources import StackResources
from tests.support.api_client import ApiClient, load_handler
from tests.support.constants import TEST_AUDIENCE, TEST_SECRET
from tests.support.fixtures.core import mailbox_body
from tests.support.fixtures.tracking import ACCOUNT, BASE, fresh, hit
from tests.support.smtp_servers import SmtpTestServer
from tests.support.sqs import deliver

pytestmark = pytest.mark.usefixtures("tracked")

CLIENT = "Client@Example.com"
ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"
PLAIN = "<p>Hello! Our autumn offer is <a href='https://shop.example.com/autumn'>here</a>.</p>"


@pytest.fixture
def admin(aws_stack: Any) -> ApiClient:
    return ApiClient(
        secret=TEST_SECRET, audience=TEST_AUDIENCE, account_id=ACCOUNT, user_id=500, is_admin=True
    )


def campaign_email(html: str = PLAIN, *, to: str = CLIENT, campaign: str | None = "C1", **fields: Any) -> str:
    """One recipient's email of a campaign, composed on the bulk lane as the campaigns do."""
    request = ComposeRequest.of(to=[to], subject="Autumn offer", html=html, lane="bulk", **fields)
    view = compose.compose(request, Actor.automatic(ACCOUNT, 501), campaign_id=campaign)
    return str(view["id"])


def send_bulk(aws_stack: StackResources) -> int:
    result = deliver(
        load_handler("send"), aws_stack.refs["BulkSendQueue"], aws_stack.attrs[("BulkSendQueue", "Arn")]
    )
    return int(result["delivered"])


def parts(received: Any) -> tuple[EmailMessage, str, str]:
    parsed = received.parsed()
    html = parsed.get_body(("html",)).get_content()
    text = parsed.get_body(("plain",)).get_content()
    return parsed, html, text


def unsubscribe_path(parsed: EmailMessage) -> str:
    header = str(parsed["List-Unsubscribe"]).strip()
    match = re.fullmatch(r"<" + re.escape(BASE) + r"(/u/[\w-]+)>", header)
    assert match, header
    return match.group(1)


def queued_events(aws_stack: StackResources) -> list[dict[str, Any]]:
    """The jobs on the actions queue (received and left invisible: each read once)."""
    sqs = boto3.client("sqs")
    found: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=aws_stack.refs["ActionsQueue"], MaxNumberOfMessages=10)
        if not got.get("Messages"):
            return found
        found += [json.loads(m["Body"]) for m in got["Messages"]]


def test_a_campaign_email_has_both_headers_a_footer_and_a_link_that_unsubscribes_once(
    smtp: SmtpTestServer, aws_stack: StackResources, user: ApiClient, admin: ApiClient
) -> None:
    # GIVEN a campaign email whose body has no unsubscribe placeholder
    user.post("/v1/mailboxes", mailbox_body(smtp))
    message_id = campaign_email()
    assert fresh(message_id).campaign_key == f"{ACCOUNT}#C1"
    # WHEN the send worker sends it
    assert send_bulk(aws_stack) == 1
    # THEN it carries RFC 8058's two headers, and the footer in both parts with the same URL
    [received] = smtp.messages
    parsed, html, text = parts(received)
    path = unsubscribe_path(parsed)
    assert parsed["List-Unsubscribe-Post"] == ONE_CLICK
    assert f'href="{BASE}{path}"' in html and "mailer-opt-out" in html and "Unsubscribe" in html
    assert f"Unsubscribe: {BASE}{path}" in text
    assert "/c/" not in path and f"{BASE}/c/" in html  # the offer is tracked, the opt-out never
    queued_events(aws_stack)  # the send's own announcements, if any, are not the opt-out's

    # WHEN a link scanner or a person GETs the link: a page with a button, nobody unsubscribed
    page = hit(path)
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert b'<form method="post">' in page.body and b'value="One-Click"' in page.body
    assert hit(path, method="HEAD").status == 200
    assert SuppressionModel.count(ACCOUNT) == 0 and fresh(message_id).opted_out_at is None

    # WHEN the mail client POSTs RFC 8058's one-click body
    done = hit(path, method="POST", body=ONE_CLICK, **{"content-type": FORM})
    # THEN the address is suppressed as opted out, the message records it, the hook announced it
    assert done.status == 200 and b"You are unsubscribed" in done.body
    row = SuppressionModel.get(ACCOUNT, CLIENT.lower())
    assert (row.reason, row.state, row.message_id) == ("opted_out", "suppressed", message_id)
    stored = fresh(message_id)
    assert stored.opted_out_at is not None
    assert [h.detail for h in stored.history if h.event == "opted_out"] == [f"unsubscribed: {CLIENT.lower()}"]
    [event] = [e for e in queued_events(aws_stack) if e.get("event") == "opted_out"]
    assert (event["account_id"], event["message_id"]) == (ACCOUNT, message_id)

    # WHEN it is POSTed again (a retry, the page's button after the header): the same page, nothing new
    again = hit(path, method="POST", body="", **{"content-type": FORM})
    assert again.status == 200 and again.body == done.body
    assert [h.event for h in fresh(message_id).history].count("opted_out") == 1
    assert not [e for e in queued_events(aws_stack) if e.get("event") == "opted_out"]
    row = SuppressionModel.get(ACCOUNT, CLIENT.lower())
    assert [e.what for e in row.events or []] == ["reported", "suppressed"]
    view = user.get(f"/v1/messages/{message_id}").json()
    assert any(step["event"] == "opted_out" and step["kind"] == "tracking" for step in view["timeline"])
    assert view["opted_out_at"] == stored.opted_out_at.isoformat()

    # AND the next email to the address is not sent
    smtp.messages.clear()
    next_id = campaign_email(to=CLIENT.lower(), campaign="C2")
    send_bulk(aws_stack)
    assert smtp.messages == []
    assert fresh(next_id).status == "failed" and "(opted_out)" in (fresh(next_id).last_error or "")

    # AND an administrator lifts it like any other suppression
    listed = user.get("/v1/suppressions?reason=opted_out").json()["items"]
    assert [(s["address"], s["reason"]) for s in listed] == [(CLIENT.lower(), "opted_out")]
    assert admin.delete(f"/v1/suppressions/{quote(CLIENT.lower())}").status == 204
    history = user.get(f"/v1/suppressions/{quote(CLIENT.lower())}").json()["history"]
    assert [line["what"] for line in history] == ["reported", "suppressed", "lifted"]
    campaign_email(to=CLIENT.lower(), campaign="C3")
    send_bulk(aws_stack)
    assert len(smtp.messages) == 1
    # AND the old link POSTed again after the lift suppresses again (they asked again), no new event
    assert hit(path, method="POST", body=ONE_CLICK).status == 200
    assert SuppressionModel.get(ACCOUNT, CLIENT.lower()).state == "suppressed"
    assert not [e for e in queued_events(aws_stack) if e.get("event") == "opted_out"]


@pytest.mark.parametrize(
    "placeholder",
    ["{{ unsubscribe_url }}", "{optOutUrl}"],
)
def test_a_body_with_the_placeholder_gets_the_url_there_and_no_footer(
    placeholder: str, smtp: SmtpTestServer, aws_stack: StackResources, user: ApiClient
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp))
    campaign_email(PLAIN + f'<p><a href="{placeholder}">Stop these emails</a></p>')
    send_bulk(aws_stack)
    [received] = smtp.messages
    parsed, html, text = parts(received)
    path = unsubscribe_path(parsed)
    assert f'<a href="{BASE}{path}">Stop these emails</a>' in html
    assert "mailer-opt-out" not in html and "mailer.invalid" not in html + text
    assert f"{BASE}{path}" in text and "Unsubscribe:" not in text


def test_the_footer_speaks_the_emails_language_and_so_do_the_pages(
    smtp: SmtpTestServer, aws_stack: StackResources, user: ApiClient
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp))
    campaign_email("<p>Здравствуйте!</p>", locale="ru_RU")
    send_bulk(aws_stack)
    [received] = smtp.messages
    parsed, html, text = parts(received)
    path = unsubscribe_path(parsed)
    assert "Отписаться" in html and "Не хотите получать эти письма?" in text
    assert "Отписаться" in hit(path).body.decode()
    assert "Вы отписаны" in hit(path, method="POST", body=ONE_CLICK).body.decode()


def test_an_account_that_turns_the_footer_off_gets_none_but_keeps_the_headers(
    smtp: SmtpTestServer, aws_stack: StackResources, user: ApiClient, admin: ApiClient
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp))
    reply = admin.patch("/v1/settings", {"opt_out_footer": False})
    assert reply.status == 200 and reply.json()["opt_out_footer"] is False
    campaign_email()
    send_bulk(aws_stack)
    [received] = smtp.messages
    parsed, html, text = parts(received)
    assert unsubscribe_path(parsed) and parsed["List-Unsubscribe-Post"] == ONE_CLICK
    assert "mailer-opt-out" not in html and "Unsubscribe" not in text


def test_a_single_email_has_no_opt_out_and_its_placeholder_leads_nowhere(
    smtp: SmtpTestServer, aws_stack: StackResources, user: ApiClient
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp))
    html = '<p>Hi</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
    reply = user.post("/v1/messages", {"to": [CLIENT], "subject": "Hi", "html": html})
    assert reply.status == 202, reply.body
    deliver(load_handler("send"), aws_stack.refs["SendQueue"], aws_stack.attrs[("SendQueue", "Arn")])
    [received] = smtp.messages
    parsed, html_part, text = parts(received)
    assert parsed["List-Unsubscribe"] is None and parsed["List-Unsubscribe-Post"] is None
    assert '<a href="#">Unsubscribe</a>' in html_part and "mailer-opt-out" not in html_part
    assert "mailer.invalid" not in html_part + text and "/u/" not in html_part + text


def test_a_campaign_email_is_not_sent_without_a_way_to_unsubscribe(
    smtp: SmtpTestServer, aws_stack: StackResources, user: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp))
    message_id = campaign_email()
    monkeypatch.setenv("MAILER_PUBLIC_BASE_URL", "")
    reset_settings()
    send_bulk(aws_stack)
    assert smtp.messages == []
    stored = fresh(message_id)
    assert stored.status == "failed" and "unsubscribe link" in (stored.last_error or "")


def test_a_bad_or_tampered_token_gets_a_clear_404_page_and_changes_nothing(
    smtp: SmtpTestServer, aws_stack: StackResources, user: ApiClient
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp))
    campaign_email()
    send_bulk(aws_stack)
    path = unsubscribe_path(parts(smtp.messages[0])[0])
    token = path.removeprefix("/u/")
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad in (f"/u/{tampered}", f"/u/{token[:40]}", "/u/nothing", f"/u/{token}/more"):
        for method in ("GET", "POST"):
            answer = hit(bad, method=method, body=ONE_CLICK, **{"accept-language": "ru-RU,ru;q=0.9"})
            assert answer.status == 404, (bad, method)
            assert answer.headers["content-type"].startswith("text/html")
    assert "Ссылка недействительна" in hit(f"/u/{tampered}", **{"accept-language": "ru"}).body.decode()
    assert b"Link not valid" in hit(f"/u/{tampered}").body
    assert SuppressionModel.count(ACCOUNT) == 0
