"""The local stack plays the worked example end to end, as `make demo` does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mailer_core.store.models import MessageModel

from devstack.campaign_demo import RECIPIENTS
from devstack.kommo_standin import seed as kommo_seed
from devstack.system import SINK_LOGIN, SINK_PASSWORD, LocalSystem, call
from devstack.worked_example import EXPECTED_STEPS, play_example

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem() as running:
        yield running


def test_the_example_happens_step_by_step(system: LocalSystem) -> None:
    lines: list[str] = []

    steps = play_example(system, say=lines.append)

    assert [s.ok for s in steps] == [True] * EXPECTED_STEPS, lines
    received = [m for m in system.sink.messages if m.rcpt_tos == ("ivan.petrov@example.com",)]
    assert len(received) == 1  # the offer; the client opened it, so no follow-up
    email = received[0]
    # the saved template "Offer", rendered at send time with the lead's and contact's data
    lead = "Поставка оборудования для ООО «Ромашка»"
    assert email.subject == f"Иван, коммерческое предложение по сделке «{lead}»"
    assert list(email.rcpt_tos) == ["ivan.petrov@example.com"]
    assert "Мария Менеджер" in email.from_
    assert email.text and "Ивану Петрову: здравствуйте!" in email.text  # the text alternative
    assert "сто пятьдесят тысяч рублей 00 копеек" in email.text
    assert "+7 495 111-22-33" in email.text  # the manager's signature
    # the recipients came from the Kommo stand-in: the lead was read with its contacts
    paths = [r.path for r in system.kommo.requests]
    assert any(p.startswith(f"/api/v4/leads/{kommo_seed.LEAD_OFFER}") for p in paths)
    # what the triggers did in Kommo: the opened offer's lead went through both stages and got
    # the task; the unopened one got the follow-up a day later, and nothing else
    offer_lead = system.kommo.lead(kommo_seed.LEAD_OFFER)
    assert offer_lead is not None and offer_lead["status_id"] == kommo_seed.STATUS_FAMILIAR
    stages = [
        (c.path, c.body.get("status_id"))
        for c in system.kommo.changes
        if c.method == "PATCH" and isinstance(c.body, dict) and "status_id" in c.body
    ]
    assert stages == [
        (f"/api/v4/leads/{kommo_seed.LEAD_OFFER}", kommo_seed.STATUS_OFFER_SENT),
        (f"/api/v4/leads/{kommo_seed.LEAD_OFFER}", kommo_seed.STATUS_FAMILIAR),
        (f"/api/v4/leads/{kommo_seed.LEAD_REDESIGN}", kommo_seed.STATUS_OFFER_SENT),
    ]
    assert [(t["entity_id"], t["text"]) for t in system.kommo.tasks] == [
        (kommo_seed.LEAD_OFFER, "Call the client that has opened the offer")
    ]
    to_john = [m.subject for m in system.sink.messages if m.rcpt_tos == ("john.smith@example.com",)]
    assert to_john == [
        "John, коммерческое предложение по сделке «Website redesign for Blue Harbor»",
        "John, напоминаем о предложении",
    ]


def test_the_offer_page_and_the_web_version_open_and_the_pages_form_writes_to_kommo(
    system: LocalSystem,
) -> None:
    """The banner's page and web-version URLs, as a person opens them (docs/pages.md)."""
    if not system.page_urls:
        play_example(system, say=lambda _: None)
    page, web = system.page_urls["page"], system.page_urls["web version"]
    agent = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36"}
    with urllib.request.urlopen(urllib.request.Request(page, headers=agent), timeout=30) as answer:
        shown = answer.read().decode("utf-8")
    assert answer.status == 200 and "Ивану Петрову: ваше предложение" in shown
    with urllib.request.urlopen(urllib.request.Request(web, headers=agent), timeout=30) as answer:
        assert answer.status == 200 and "здравствуйте!" in answer.read().decode("utf-8")
    action = re.search(r'action="([^"]+/f/[^"]+)"', shown)
    assert action is not None
    body = b"field%5BQuantity%5D=40&field%5BDelivery%5D=Courier"
    form = urllib.request.Request(action.group(1), data=body, headers=agent, method="POST")
    with urllib.request.urlopen(form, timeout=30) as answer:
        assert answer.status == 200 and "Thank you!" in answer.read().decode("utf-8")
    lead = system.kommo.lead(kommo_seed.LEAD_OFFER) or {}
    values = {f["field_name"]: f["values"] for f in lead.get("custom_fields_values") or []}
    assert values["Quantity"] == [{"value": "40"}]


def test_the_api_answers_through_the_local_gateway(system: LocalSystem) -> None:
    api = system.stack.api_url
    assert call("GET", f"{api}/health", None) == (200, {"status": "ok"})
    status, body = call("GET", f"{api}/v1/messages", None)
    assert status == 401 and body["error"] == "unauthorized"
    status, listed = call("GET", f"{api}/v1/messages?status=sent", system.widget_token())
    assert status == 200 and all(m["status"] == "sent" for m in listed["items"])


def test_the_demo_account_was_installed_through_kommos_oauth(system: LocalSystem) -> None:
    # the install redirect went through the gateway; the kommo_auth poller exchanged the code once
    assert [(c.grant_type, c.status) for c in system.kommo.token_calls][:1] == [("authorization_code", 200)]
    url = f"{system.stack.api_url}/hooks/kommo/install?code=def502001234&referer=evil.example"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 400 and "text/html" in refused.value.headers["Content-Type"]


def _sink_mailbox(system: LocalSystem, token: str) -> str:
    """A mailbox of the test's own on the stack's SMTP sink (not the example's default one)."""
    status, mailbox = call(
        "POST",
        f"{system.stack.api_url}/v1/mailboxes",
        token,
        {
            "sender_email": SINK_LOGIN,
            "smtp_host": "127.0.0.1",
            "smtp_port": system.sink.smtp_port,
            "smtp_security": "none",
            "smtp_password": SINK_PASSWORD,
        },
    )
    assert status == 201, mailbox
    return str(mailbox["id"])


def test_a_scheduled_email_is_released_by_the_scheduler_loop(system: LocalSystem) -> None:
    # GIVEN a mailbox of the test's own, and an email composed for tomorrow
    api, token = system.stack.api_url, system.widget_token()
    mailbox_id = _sink_mailbox(system, token)
    send_at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    status, message = call(
        "POST",
        f"{api}/v1/messages",
        token,
        {"mailbox_id": mailbox_id, "to": ["later@example.com"], "subject": "Tomorrow", "send_at": send_at},
    )
    assert status == 202 and message["status"] == "scheduled"

    # A day passes: the scheduler's clock reaches send_at, and so does the message's own time
    # (the send worker claims a scheduled message only once its send_at has come).
    stored = MessageModel.get(kommo_seed.ACCOUNT_ID, message["id"])
    stored.update(actions=[MessageModel.send_at.set(datetime.now(UTC) - timedelta(seconds=1))])
    system.stack.fast_forward(86400 + 60)
    try:
        system.stack.scheduler.tick()
        system.sink.wait_for(lambda m: m.subject == "Tomorrow", timeout=30)
        system.stack.drain(timeout=30)
    finally:  # the module's other tests (the worked example's 24-hour timers) see real time again
        system.stack.fast_forward(-(86400 + 60))
    status, current = call("GET", f"{api}/v1/messages/{message['id']}", token)
    assert current["status"] == "sent"


def test_make_demo_exits_zero_when_every_step_happened() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # the core of this checkout, not only the one the virtualenv installed (a worktree's)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "shared"), env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Example complete: {EXPECTED_STEPS} of {EXPECTED_STEPS} steps happened." in result.stdout
    assert "коммерческое предложение по сделке «Поставка" in result.stdout  # the rendered subject
    assert '"_aws"' not in result.stdout  # no CloudWatch here: the emails are not counted on the console
    # then the campaign: every step of it, and its report in the terminal
    assert re.search(r"Campaign complete: (\d) of \1 steps happened\.", result.stdout), result.stdout
    assert f"totals     {RECIPIENTS} recipients: {RECIPIENTS} sent" in result.stdout
    assert "excluded   duplicate 1, no_address 1" in result.stdout
