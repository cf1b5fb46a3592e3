"""Per-template counters and GET /v1/templates/{template_id}/stats."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from mailer_core.automation import runner as automation
from mailer_core.bounces import reading, reports
from mailer_core.events import jobs, message_events, template_counters
from mailer_core.store.models import MailboxModel, MessageModel, TemplateStatsModel

from devstack.kommo_standin import seed
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.visibility import (
    APPLE_MPP,
    LINKS_HTML,
    OFFER_URL,
    PRICES_URL,
    SAFE_LINKS,
    compose,
    drain_actions,
    hit,
    mailbox_body,
    send_queued,
    sent_email,
    template,
)
from tests.support.smtp_servers import SmtpTestServer


def stored(message_id: str) -> MessageModel:
    return MessageModel.get(seed.ACCOUNT_ID, message_id, consistent_read=True)


def bounce(message_id: str, report: str) -> list[str]:
    """A permanent delivery report for the message, as the bounce poller records it."""
    message = stored(message_id)
    address = str(message.to[0]).lower()
    failure = reading.RecipientFailure(address, "user_unknown", True, "5.1.1", "550 5.1.1 no such user")
    mailbox = MailboxModel.get(seed.ACCOUNT_ID, message.mailbox_id)
    return list(reports.record(mailbox, reading.Report("bounce", report, (), (message_id,), (failure,))))


def test_counters_after_sends_a_failure_a_bounce_opens_and_clicks_count_each_email_once(
    world: StackResources, admin: ApiClient, manager: ApiClient, smtp: SmtpTestServer
) -> None:
    # GIVEN a template with two links, a mailbox whose server refuses the login, and an email
    # without a template (it must count nowhere)
    offer = template(admin)
    refused = manager.post(
        "/v1/mailboxes",
        mailbox_body(smtp, sender_email="nobody@example.com", smtp_password="wrong", is_default=False),
    ).json()["id"]
    first, first_pixel, first_links = sent_email(world, smtp, manager, template_id=offer)
    second, second_pixel, second_links = sent_email(world, smtp, manager, template_id=offer)
    plain, plain_pixel, plain_links = sent_email(world, smtp, manager, subject="Plain", html=LINKS_HTML)
    failed = compose(manager, template_id=offer, mailbox_id=refused)
    send_queued(world)
    assert stored(failed).status == "failed"
    # WHEN the first email is opened twice by its reader and twice by Apple's proxy, its offer
    # clicked twice and its prices link checked by a scanner (HEAD); the second opened once, its
    # offer clicked by the reader and by Safe Links; the plain one opened and clicked
    for agent in (None, None, APPLE_MPP, APPLE_MPP):
        hit(first_pixel, **({"agent": agent} if agent else {}))
    hit(first_links["Offer"])
    hit(first_links["Offer"])
    hit(first_links["Prices"], method="HEAD")
    hit(second_pixel)
    hit(second_links["Offer"])
    hit(second_links["Offer"], agent=SAFE_LINKS)
    hit(plain_pixel)
    hit(plain_pixel, agent=APPLE_MPP)
    hit(plain_links["Offer"])
    drain_actions(world)  # the "opened" events: the people's opens count there
    # AND the second email bounces for good
    assert bounce(second, "report-1") == ["bounced"]
    # THEN the template counts emails: sent 2, failed 1, bounced 1, opened by people 2 and by
    # machines 1, the offer clicked by people in 2 emails and by a machine in 1, the prices in 1
    stats = manager.get(f"/v1/templates/{offer}/stats").json()
    assert stats["updated_at"]
    assert {k: v for k, v in stats.items() if k != "updated_at"} == {
        "template_id": offer,
        "sent": 2,
        "failed": 1,
        "bounced": 1,
        "opened": {"people": 2, "machines": 1},
        "clicks": [
            {"url": OFFER_URL, "people": 2, "machines": 1},
            {"url": PRICES_URL, "people": 0, "machines": 1},
        ],
        "other_clicks": {"people": 0, "machines": 0},
    }
    # AND the messages themselves count every event; the plain email counts on no template
    assert manager.get(f"/v1/messages/{first}").json()["opens"] == {"people": 2, "machines": 2}
    assert [s.template_id for s in TemplateStatsModel.query(seed.ACCOUNT_ID)] == [offer]
    assert stored(plain).stats_counted is None
    assert stored(first).machine_open_template is None  # used up by its first machine open
    assert stored(second).machine_open_template == offer  # never opened by a machine
    # WHEN the same events come again: the "opened" event redelivered, the sent hook repeated,
    # the same report read again, a bounce for another recipient of the same email
    now = datetime.now(UTC)
    automation.handle_event(jobs.EventJob(seed.ACCOUNT_ID, first, "opened", now.isoformat(), "opened"))
    message_events.on_message_sent(stored(first), now)
    assert bounce(second, "report-1") == ["duplicate"]
    message_events.on_message_failed(stored(second), "bounced: colleague@example.com: 5.1.1")
    # THEN nothing counts twice
    again = manager.get(f"/v1/templates/{offer}/stats").json()
    assert (again["sent"], again["bounced"], again["opened"]) == (2, 1, {"people": 2, "machines": 1})
    assert set(stored(first).stats_counted or ()) == {"sent", "opened"}


def test_links_beyond_the_templates_limit_count_as_other_clicks(
    world: StackResources,
    admin: ApiClient,
    manager: ApiClient,
    smtp: SmtpTestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a template of two links, where the counters keep one link apart
    monkeypatch.setattr(template_counters, "MAX_LINKS", 1)
    offer = template(admin)
    _, _, links = sent_email(world, smtp, manager, template_id=offer)
    # WHEN a person clicks both
    hit(links["Offer"])
    hit(links["Prices"])
    # THEN the first link has its own counter, the second counts among the others
    stats = manager.get(f"/v1/templates/{offer}/stats").json()
    assert stats["clicks"] == [{"url": OFFER_URL, "people": 1, "machines": 0}]
    assert stats["other_clicks"] == {"people": 1, "machines": 0}


def test_the_stats_are_for_whoever_may_see_the_template(
    world: StackResources,
    admin: ApiClient,
    manager: ApiClient,
    colleague: ApiClient,
    stranger: ApiClient,
) -> None:
    # GIVEN a manager's private template, never used
    private = template(manager, "Mine", public=False)
    # THEN its owner and an administrator see zeros; a colleague and another account get 404
    for viewer in (manager, admin):
        reply = viewer.get(f"/v1/templates/{private}/stats")
        assert reply.status == 200, reply.body
        assert (
            reply.json()["sent"] == 0 and reply.json()["clicks"] == [] and reply.json()["updated_at"] is None
        )
    for outsider in (colleague, stranger):
        reply = outsider.get(f"/v1/templates/{private}/stats")
        assert reply.status == 404 and reply.json()["field"] == "template_id"
    assert manager.get("/v1/templates/01NOSUCHTEMPLATE0000000000/stats").status == 404
