"""The local stack plays its campaign (as `make run` and `make demo` do): two sender mailboxes,
a Kommo stage's leads, an opt-out by a one-click POST, a hard bounce read from IMAP."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from devstack import campaign_demo
from devstack.campaign_demo import BOUNCES, OPTS_OUT, RECIPIENTS, SENDERS, expected_steps, play_campaign
from devstack.kommo_standin import seed as kommo_seed
from devstack.system import LocalSystem, call
from tests.support.imap_servers import require_dovecot

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem() as running:
        yield running


@pytest.fixture(scope="module")
def played(system: LocalSystem) -> list[str]:
    lines: list[str] = []
    steps = play_campaign(system, say=lines.append)
    assert [s.ok for s in steps] == [True] * expected_steps(system), "\n".join(lines)
    return lines


def _campaign_emails(system: LocalSystem) -> list[campaign_demo.SinkMessage]:
    return [m for m in system.sink.messages if m.subject.endswith("our spring price list")]


def test_every_address_of_the_kommo_stage_gets_one_email_shared_by_both_mailboxes(
    system: LocalSystem, played: list[str]
) -> None:
    emails = _campaign_emails(system)
    wanted = {
        kommo_seed.campaign_address(n) for n in range(kommo_seed.CAMPAIGN_LEADS - 2)
    }  # the last two: the duplicate and the contact without an address
    assert sorted(a for m in emails for a in m.rcpt_tos) == sorted(wanted)
    assert len(wanted) == RECIPIENTS
    by_sender = Counter(m.mail_from for m in emails)
    fast, slow = (address for address, _, _ in SENDERS)
    assert set(by_sender) == {fast, slow} and by_sender[fast] > by_sender[slow]  # spread by rate
    first = next(m for m in emails if m.rcpt_tos == (kommo_seed.campaign_address(0),))
    assert first.subject == "Alice, our spring price list"  # rendered with the contact's data
    assert first.html is not None and "«Spring order 00»" in first.html
    # the audience was read from the stand-in by the Kommo filter, in bulk
    filtered = [r for r in system.kommo.requests if r.path == "/api/v4/leads" and "filter" in r.query]
    assert filtered and len(filtered) <= 3


def test_each_email_carries_a_one_click_unsubscribe_the_demo_used(
    system: LocalSystem, played: list[str]
) -> None:
    for email in _campaign_emails(system):
        url = campaign_demo.unsubscribe_url(email)
        assert url is not None and url.startswith(system.stack.api_url + "/u/")
        assert email.message()["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    status, row = call("GET", f"{system.stack.api_url}/v1/suppressions/{OPTS_OUT}", system.widget_token())
    assert status == 200 and row["reason"] == "opted_out"


def test_the_report_is_printed_with_totals_rates_exclusions_and_the_log(
    system: LocalSystem, played: list[str]
) -> None:
    text = "\n".join(played)
    bounced = 1 if system.imap is not None else 0
    assert f"{RECIPIENTS} recipients: {RECIPIENTS} sent, 0 failed, {bounced} bounced, 1 opted out" in text
    assert "excluded   duplicate 1, no_address 1" in text
    assert f"opt_out {round(100 / RECIPIENTS, 2)} %" in text
    assert f"log        {RECIPIENTS} lines: {RECIPIENTS} sent" in text
    assert f"recipient  {OPTS_OUT}: sent, opted_out" in text


def test_the_hard_bounce_is_read_from_the_sending_mailboxs_inbox(
    system: LocalSystem, played: list[str]
) -> None:
    require_dovecot()
    assert system.imap is not None
    token = system.widget_token()
    status, row = call("GET", f"{system.stack.api_url}/v1/suppressions/{BOUNCES}", token)
    assert status == 200 and row["reason"] == "user_unknown"
    status, listed = call("GET", f"{system.stack.api_url}/v1/messages?limit=100", token)
    assert status == 200
    bounced = [m for m in listed["items"] if m["to"] == [BOUNCES]]
    assert len(bounced) == 1
    status, message = call("GET", f"{system.stack.api_url}/v1/messages/{bounced[0]['id']}", token)
    assert [b["status"] for b in message["bounces"]] == ["5.1.1"]
    assert f"recipient  {BOUNCES}: sent, bounced" in "\n".join(played)


def test_the_delivery_report_names_the_email_as_a_real_one_does() -> None:
    report = campaign_demo.delivery_report(
        sender="news@mailerdemo.example", recipient="gone@example.org", message_id="<m1@x>", subject="Hi"
    ).decode()
    assert "Return-Path: <>" in report and "report-type=delivery-status" in report
    assert "Final-Recipient: rfc822; gone@example.org" in report and "Status: 5.1.1" in report
    assert "Message-ID: <m1@x>" in report


class _NoStack:
    """Stands in for LocalSystem where only `python -m devstack demo`'s verdict is tested."""

    imap = None

    def __enter__(self) -> _NoStack:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("campaign_ok", [True, False])
def test_make_demo_fails_when_a_campaign_step_fails(
    monkeypatch: pytest.MonkeyPatch, campaign_ok: bool
) -> None:
    from devstack import __main__ as entry
    from devstack.system import Step
    from devstack.worked_example import EXPECTED_STEPS

    monkeypatch.setattr(entry, "LocalSystem", _NoStack)
    monkeypatch.setattr(entry, "play_example", lambda system: [Step("x", True, "")] * EXPECTED_STEPS)
    monkeypatch.setattr(
        entry, "play_campaign", lambda system: [Step("set-up", True, ""), Step("1.", campaign_ok, "")]
    )
    monkeypatch.setattr(entry, "expected_steps", lambda system: 2)

    assert entry.main(["demo"]) == (0 if campaign_ok else 1)
