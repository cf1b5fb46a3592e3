"""GET /v1/messages/{id}: one email's whole life in its timeline, and the cap on tracking entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mailer_core.store import timeline
from mailer_core.tracking import machine_traffic
from mailer_core.tracking import record as tracking
from mailer_core.tracking import tokens as tracking_tokens

from devstack.kommo_standin import seed
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.tracking import ACCOUNT, fresh, sent_message
from tests.support.fixtures.visibility import (
    APPLE_MPP,
    OFFER_URL,
    PRICES_URL,
    drain_actions,
    hit,
    mailbox_body,
    send_queued,
    sent_email,
    template,
    trigger,
)
from tests.support.smtp_servers import SmtpTestServer


def test_one_emails_timeline_shows_every_step_in_order_with_its_details(
    world: StackResources, admin: ApiClient, manager: ApiClient, smtp: SmtpTestServer
) -> None:
    # GIVEN a template whose "opened" triggers add a note and set a field to a value Kommo refuses
    note = trigger(admin, "Note the open", "note", text="Opened: {subject}")
    refused = trigger(admin, "Set delivery", "field", field_id=seed.FIELD_DELIVERY, value="Teleport")
    offer = template(admin, triggers={"opened": [note, refused]})
    # WHEN a manager sends it; a person opens it, Apple's proxy fetches the pixel, the person
    # clicks the offer, a scanner checks the prices link (HEAD), and the actions run
    message_id, pixel, links = sent_email(world, smtp, manager, template_id=offer)
    assert hit(pixel).status == 200
    assert hit(pixel, agent=APPLE_MPP).status == 200
    assert hit(links["Offer"]).headers["location"] == OFFER_URL
    assert hit(links["Prices"], method="HEAD").headers["location"] == PRICES_URL
    drain_actions(world)
    view = manager.get(f"/v1/messages/{message_id}").json()
    steps = view["timeline"]
    # THEN the timeline is in time order, every step with its kind
    assert [s["at"] for s in steps] == sorted(s["at"] for s in steps)
    assert all(s["kind"] == timeline.kind_of(s["event"]) for s in steps)
    sending_and_tracking = [s["event"] for s in steps if s["kind"] in ("status", "tracking")]
    assert sending_and_tracking == [
        "queued",
        "sending",
        "sent",
        "opened",
        "machine_open",
        "clicked",
        "machine_click",
    ]
    by_event = {s["event"]: s for s in steps}
    assert by_event["sent"]["detail"].startswith("250")  # the server's words
    assert by_event["machine_open"]["detail"] == "Apple Mail Privacy Protection"
    assert by_event["clicked"]["detail"] == OFFER_URL
    assert by_event["machine_click"]["detail"].startswith(PRICES_URL)
    assert by_event["machine_click"]["detail"].endswith(f"({machine_traffic.Verdict(True, 'head').label})")
    assert not any(s["failure"] for s in steps if s["event"] != "trigger_failed")
    # AND each trigger run follows the open, with its result or Kommo's words
    opened_at = by_event["opened"]["at"]
    runs = [s for s in steps if s["kind"] == "automation" and s["event"].startswith("trigger")]
    assert {s["event"] for s in runs} == {"trigger", "trigger_failed"} and all(
        s["at"] >= opened_at for s in runs
    )
    assert "Note the open" in by_event["trigger"]["detail"]
    assert "Teleport" in by_event["trigger_failed"]["detail"] and by_event["trigger_failed"]["failure"]
    # AND `history` keeps its shape and holds the same steps; the counters agree
    assert all(set(h) == {"at", "event", "detail"} for h in view["history"])
    assert sorted(h["event"] for h in view["history"]) == sorted(s["event"] for s in steps)
    assert view["opens"] == {"people": 1, "machines": 1}
    assert [(c["url"], c["people"], c["machines"]) for c in view["clicks"]] == [
        (OFFER_URL, 1, 0),
        (PRICES_URL, 0, 1),
    ]


def test_a_failed_email_says_why_in_the_servers_words(
    world: StackResources, manager: ApiClient, smtp: SmtpTestServer
) -> None:
    # GIVEN a mailbox whose server refuses the login
    reply = manager.post(
        "/v1/mailboxes",
        mailbox_body(smtp, sender_email="nobody@example.com", smtp_password="wrong", is_default=False),
    )
    assert reply.status == 201, reply.body
    composed = manager.post(
        "/v1/messages",
        {
            "mailbox_id": reply.json()["id"],
            "to": ["client@example.com"],
            "subject": "Hi",
            "html": "<p>Hi</p>",
        },
    )
    assert composed.status == 202, composed.body
    # WHEN the send function tries it
    send_queued(world)
    # THEN the last step is the failure, marked as one, with the server's reply
    steps = manager.get(f"/v1/messages/{composed.json()['id']}").json()["timeline"]
    assert steps[-1]["event"] == "failed" and steps[-1]["failure"] and steps[-1]["kind"] == "status"
    assert "535" in steps[-1]["detail"]


@pytest.mark.usefixtures("tracked")
def test_past_the_cap_opens_and_clicks_are_counted_but_no_longer_listed(
    aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a sent message, a small cap, and a count of the writes the track routes make
    monkeypatch.setattr(timeline, "CAP", 3)
    sent_message("CAP1", [OFFER_URL])
    writes: list[Any] = []
    real_update = timeline._update

    def counted_update(*args: Any) -> dict[str, Any]:
        writes.append(args)
        return real_update(*args)

    monkeypatch.setattr(timeline, "_update", counted_update)
    start = datetime.now(UTC)
    issued = int((start - timedelta(hours=1)).timestamp())
    opening = tracking_tokens.TrackingToken(tracking_tokens.OPEN, ACCOUNT, "CAP1", issued)
    clicking = tracking_tokens.TrackingToken(
        tracking_tokens.CLICK, ACCOUNT, "CAP1", issued, 0, tracking_tokens.url_hash(OFFER_URL)
    )
    target = tracking.resolve_click(clicking)
    assert target is not None
    # WHEN a person opens it five times and clicks five times, then a machine opens it
    first = [
        tracking.record_open(opening, machine=False, when=start + timedelta(seconds=i)) for i in range(5)
    ]
    for i in range(5):
        tracking.record_click(clicking, target, machine=False, when=start + timedelta(seconds=10 + i))
    tracking.record_open(opening, machine=True, when=start + timedelta(seconds=20), machine_class="prefetch")
    # THEN every event is counted, only the first three of each kind are listed
    message = fresh("CAP1")
    assert int(message.opens) == 5 and list(message.link_clicks) == [5] and int(message.clicks_total) == 5
    assert first == [True, False, False, False, False]
    listed = [h.event for h in message.history]
    assert listed.count("opened") == 3 and listed.count("clicked") == 3
    assert [(h.event, h.detail) for h in message.history][-1] == ("machine_open", "prefetch")
    # AND below the cap each event was one write; past it, two (the guard, then the count)
    assert len(writes) == 3 + 2 * 2 + 3 + 2 * 2 + 1
