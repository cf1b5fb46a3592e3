"""A campaign's harder paths: a crash in the middle of a part, chains of steps, the report,
the CSV export, Send Test and the auto-interrupt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mailer_core.base.clock import SYSTEM_CLOCK, FakeClock
from mailer_core.campaigns import expansion
from mailer_core.events import campaign_state
from mailer_core.events.campaign_jobs import CampaignJob
from mailer_core.store.models import CampaignModel, MailboxModel, MessageModel

from devstack.resources import StackResources
from tests.integration.campaigns.test_campaign_sending import (
    delivered_to,
    fast_mailbox,
    new_campaign,
    status_of,
)
from tests.support.api_client import ApiClient
from tests.support.campaigns import PagedAudience, work_queues
from tests.support.fixtures.core import ACCOUNT
from tests.support.smtp_servers import SmtpTestServer


def started_campaign(user: ApiClient, smtp: SmtpTestServer, pages: list[list[str]], **extra: Any) -> str:
    """A campaign to `pages` from one fast mailbox, started; its id."""
    campaign_id = new_campaign(user, [fast_mailbox(user, smtp)], pages, **extra)
    reply = user.post(f"/v1/campaigns/{campaign_id}/start", {})
    assert reply.status == 200, reply.body
    return campaign_id


def test_a_worker_that_dies_after_composing_a_part_repeats_it_without_repeating_anyone(
    user: ApiClient,
    smtp: SmtpTestServer,
    aws_stack: StackResources,
    paged_audience: PagedAudience,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a worker that dies once, after the part's emails were composed and queued but
    # before the campaign's position moved on
    mailbox = fast_mailbox(user, smtp)
    addresses = [f"c{n}@example.com" for n in range(8)]
    campaign_id = new_campaign(user, [mailbox], [addresses[:4], addresses[4:]])
    real_advance = expansion.Expander._advance
    deaths = []

    def dying(self: Any, *args: Any, **kwargs: Any) -> bool:
        if not deaths:
            deaths.append(1)
            raise RuntimeError("the worker died")
        return real_advance(self, *args, **kwargs)

    monkeypatch.setattr(expansion.Expander, "_advance", dying)
    user.post(f"/v1/campaigns/{campaign_id}/start", {})
    # WHEN SQS delivers the job again (the failed record stays on the queue) and all is worked
    import boto3

    boto3.client("sqs").set_queue_attributes(
        QueueUrl=aws_stack.refs["CampaignQueue"], Attributes={"VisibilityTimeout": "1"}
    )
    work_queues(aws_stack, until=lambda: status_of(user, campaign_id) == "sent")
    # THEN everyone got exactly one email and the counts are exact
    assert deaths == [1]
    assert delivered_to(smtp) == addresses
    assert user.get(f"/v1/campaigns/{campaign_id}").json()["progress"]["recipients"] == 8


def test_a_chain_step_writes_after_the_delay_to_those_who_did_not_open(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    # GIVEN a campaign and a step planned after it for those who do not open
    mailbox = fast_mailbox(user, smtp)
    first = new_campaign(user, [mailbox], [["open@example.com", "shy@example.com"]])
    step = user.post(
        "/v1/campaigns",
        {
            "name": "Reminder",
            "subject": "Did you see it?",
            "html": "<p>Reminder</p>",
            "mailbox_ids": [mailbox],
            "chain": {"after": first, "condition": "not_opened", "delay_seconds": 60},
        },
    )
    assert step.status == 201, step.body
    step_id = step.json()["campaign_id"]
    assert user.post(f"/v1/campaigns/{step_id}/start", {}).json()["status"] == "scheduled"
    # WHEN the first is sent and one recipient opens it
    user.post(f"/v1/campaigns/{first}/start", {})
    work_queues(aws_stack, until=lambda: status_of(user, first) == "sent")
    opened = next(
        m for m in MessageModel.by_campaign.query(f"{ACCOUNT}#{first}") if m.to[0] == "open@example.com"
    )
    campaign_state.count_once(opened, "opened", SYSTEM_CLOCK.now())
    # THEN the step waits for its start: the end of the first plus the delay
    view = user.get(f"/v1/campaigns/{step_id}").json()
    finished = user.get(f"/v1/campaigns/{first}").json()["finished_at"]
    assert view["status"] == "scheduled" and view["send_at"] is not None and view["send_at"] > finished
    # WHEN its start comes (the schedule fires)
    from mailer_core.campaigns import lifecycle

    CampaignModel(ACCOUNT, step_id).update(actions=[CampaignModel.send_at.set(SYSTEM_CLOCK.now())])
    assert lifecycle.begin(ACCOUNT, step_id) == "started"
    work_queues(aws_stack, until=lambda: status_of(user, step_id) == "sent")
    # THEN only the one who did not open got the reminder
    reminders = [m for m in smtp.messages if "Did you see it?" in m.data.decode(errors="replace")]
    assert [r for m in reminders for r in m.rcpt_tos] == ["shy@example.com"]


def test_steps_after_an_interrupted_campaign_go_back_to_draft(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    mailbox = fast_mailbox(user, smtp)
    first = new_campaign(user, [mailbox], [["a@example.com"]])
    step_id = user.post(
        "/v1/campaigns",
        {
            "name": "Step",
            "subject": "s",
            "html": "<p>h</p>",
            "mailbox_ids": [mailbox],
            "chain": {"after": first},
        },
    ).json()["campaign_id"]
    user.post(f"/v1/campaigns/{step_id}/start", {})
    user.post(f"/v1/campaigns/{first}/start", {})
    user.post(f"/v1/campaigns/{first}/cancel")
    work_queues(aws_stack, timeout=5)
    view = user.get(f"/v1/campaigns/{step_id}").json()
    assert view["status"] == "draft" and "canceled" in view["status_reason"]


def test_the_bounce_rate_interrupts_a_campaign_once_enough_emails_went_out(aws_stack: StackResources) -> None:
    # GIVEN a sending campaign with the default thresholds and 100 emails sent
    now = SYSTEM_CLOCK.now()
    CampaignModel(
        ACCOUNT,
        "01CAMPAIGN0000000000000000",
        name="c",
        status="sending",
        user_id=501,
        mailbox_ids=["m"],
        audience={},
        options={"thresholds": dict(campaign_state.DEFAULT_THRESHOLDS)},
        created_at=now,
        updated_at=now,
        counts={"composed": 200, "sent": 100},
    ).save()
    messages = [
        MessageModel(
            ACCOUNT,
            f"01MSG{n:021d}",
            status="sent",
            status_key="x",
            user_id=501,
            mailbox_id="m",
            to=["a@example.com"],
            header_message_id="<x>",
            created_at=now,
            updated_at=now,
            campaign_id="01CAMPAIGN0000000000000000",
        )
        for n in range(11)
    ]
    for message in messages:
        message.save()
    # WHEN bounces come in: 9 % warns, 10 % interrupts; a repeated bounce counts once
    for message in messages[:5]:
        campaign_state.count_once(message, "bounced", now)
    assert not campaign_state.count_once(messages[0], "bounced", now)
    campaign = CampaignModel.get(ACCOUNT, "01CAMPAIGN0000000000000000")
    assert campaign.status == "sending" and campaign.warnings == ["bounce_rate"]
    for message in messages[5:10]:
        campaign_state.count_once(message, "bounced", now)
    campaign = CampaignModel.get(ACCOUNT, "01CAMPAIGN0000000000000000")
    assert campaign.status == "interrupted" and "bounce rate reached 10.0 %" in str(campaign.status_reason)


def test_report_csv_and_send_test(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    mailbox = fast_mailbox(user, smtp)
    campaign_id = new_campaign(
        user, [mailbox], [["=cmd@example.com", "b@example.com"]], options={"utm": {"utm_source": "mailer"}}
    )
    # Send Test: one email to the manager, before the start, counting nowhere
    test = user.post(f"/v1/campaigns/{campaign_id}/test", {"to": "manager@example.com"})
    assert test.status == 202, test.body
    from tests.support.api_client import load_handler
    from tests.support.sqs import deliver

    deliver(load_handler("send"), aws_stack.refs["SendQueue"], aws_stack.attrs[("SendQueue", "Arn")])
    assert delivered_to(smtp) == ["manager@example.com"]
    # ... with the opt-out a campaign email carries: the footer's link and the one-click headers
    tested = smtp.messages[0].parsed()
    link = "".join(str(tested["List-Unsubscribe"]).split()).strip("<>")
    assert "/u/" in link and tested["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = link.rsplit("/u/", 1)[1]
    assert f"/u/{token}" in tested.get_body(("html",)).get_content()  # type: ignore[union-attr]
    # ... whose link shows the pages but unsubscribes no one (the manager stays subscribed)
    from mailer_core.messages import opt_out, suppressions

    assert opt_out.handle(token, method="POST", accept_language="", now=SYSTEM_CLOCK.now()).status == 200
    assert suppressions.suppressed(ACCOUNT, ["manager@example.com"]) == {}
    assert user.get(f"/v1/campaigns/{campaign_id}").json()["progress"]["recipients"] == 0
    user.post(f"/v1/campaigns/{campaign_id}/start", {})
    work_queues(aws_stack, until=lambda: status_of(user, campaign_id) == "sent")
    sent = [m for m in smtp.messages if "manager@example.com" not in m.rcpt_tos]
    texts = [m.parsed().get_body(("plain",)).get_content() for m in sent]  # type: ignore[union-attr]
    assert len(texts) == 2 and all("https://shop.example/sale?utm_source=mailer" in t for t in texts)
    report = user.get(f"/v1/campaigns/{campaign_id}/report").json()
    assert report["sent"] == 2 and report["rates"]["bounce"] == 0.0
    csv = user.get(f"/v1/campaigns/{campaign_id}/log.csv")
    assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.body.strip().splitlines()
    assert lines[0].startswith("message_id,address,") and len(lines) == 3
    assert any(",'=cmd@example.com," in line for line in lines)  # no formula for a spreadsheet
    assert user.get(f"/v1/campaigns/{campaign_id}/log?state=nonsense").json()["field"] == "state"


def test_a_per_day_portion_stops_the_campaign_until_the_next_day(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    addresses = [f"d{n}@example.com" for n in range(3)]
    campaign_id = started_campaign(user, smtp, [addresses], options={"per_day": 2})
    work_queues(aws_stack, timeout=5)
    campaign = CampaignModel.get(ACCOUNT, campaign_id)
    assert delivered_to(smtp) == addresses[:2]
    assert int(campaign.day_count) == 2 and campaign.status == "sending"
    now = SYSTEM_CLOCK.now()
    assert campaign.next_at is not None and campaign.next_at.date() > now.date()
    assert campaign.next_at.hour == 0 and campaign.next_at.minute == 0


def test_the_log_becomes_a_target_list_of_those_in_one_state(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    campaign_id = started_campaign(user, smtp, [["k1@example.com", "k2@example.com", "k3@example.com"]])
    work_queues(aws_stack, until=lambda: status_of(user, campaign_id) == "sent")
    clicked = next(
        m for m in MessageModel.by_campaign.query(f"{ACCOUNT}#{campaign_id}") if m.to[0] == "k2@example.com"
    )
    campaign_state.count_once(clicked, "clicked", SYSTEM_CLOCK.now())
    made = user.post(f"/v1/campaigns/{campaign_id}/target-list", {"name": "Clicked", "state": "clicked"})
    assert made.status == 201, made.body
    assert made.json()["added"] == 1 and made.json()["list"]["name"] == "Clicked"
    members = user.get(f"/v1/target-lists/{made.json()['list']['id']}/members").json()
    assert [m["address"] for m in members["items"]] == ["k2@example.com"]
    assert user.post(f"/v1/campaigns/{campaign_id}/target-list", {"state": "nope"}).json()["field"] == "state"


def test_a_refused_login_pauses_the_campaign_with_the_reason(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    # GIVEN a campaign composed and queued, and then its mailbox's password changed at the provider
    from tests.support.smtp_servers import Credentials, smtp_server

    mailbox = fast_mailbox(user, smtp)
    campaign_id = new_campaign(user, [mailbox], [["l1@example.com", "l2@example.com"]])
    user.post(f"/v1/campaigns/{campaign_id}/start", {})
    work_queues(aws_stack, send=False, timeout=5)
    with smtp_server(
        authenticator=Credentials("anna@example.com", "a-new-password"), auth_require_tls=False
    ) as moved:
        MailboxModel(ACCOUNT, mailbox).update(actions=[MailboxModel.smtp_port.set(moved.port)])
        # WHEN the send worker tries the campaign's emails
        work_queues(aws_stack, timeout=5)
    # THEN nothing went out and the campaign is paused, saying why
    assert moved.messages == [] and smtp.messages == []
    view = user.get(f"/v1/campaigns/{campaign_id}").json()
    assert view["status"] == "paused" and "refused the login" in view["status_reason"]


def test_a_worker_that_dies_after_moving_on_but_before_queuing_the_next_part_does_not_stall_it(
    user: ApiClient,
    smtp: SmtpTestServer,
    aws_stack: StackResources,
    paged_audience: PagedAudience,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a worker that dies right after the campaign's position moved on, before the next
    # part is queued (the first time only)
    mailbox = fast_mailbox(user, smtp)
    addresses = [f"n{n}@example.com" for n in range(6)]
    campaign_id = new_campaign(user, [mailbox], [addresses[:2], addresses[2:4], addresses[4:]])
    real_enqueue = expansion.enqueue
    deaths = []

    def dying(job: Any, delay_seconds: int = 0) -> None:
        if job.package == 1 and not deaths:
            deaths.append(job)
            raise RuntimeError("the worker died")
        real_enqueue(job, delay_seconds)

    monkeypatch.setattr(expansion, "enqueue", dying)
    import boto3

    boto3.client("sqs").set_queue_attributes(
        QueueUrl=aws_stack.refs["CampaignQueue"], Attributes={"VisibilityTimeout": "1"}
    )
    user.post(f"/v1/campaigns/{campaign_id}/start", {})
    # WHEN SQS delivers the dead worker's job again and everything is worked
    work_queues(aws_stack, until=lambda: status_of(user, campaign_id) == "sent")
    # THEN the campaign went on to its end, everyone written to once
    assert len(deaths) == 1
    assert delivered_to(smtp) == addresses


def test_a_resume_right_after_a_pause_leaves_no_email_held(
    user: ApiClient,
    smtp: SmtpTestServer,
    aws_stack: StackResources,
    paged_audience: PagedAudience,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a paused campaign whose emails a send worker holds, and a resume that the send
    # worker does not see yet (its cached status still says paused)
    from mailer_core.campaigns import lifecycle

    monkeypatch.setattr(lifecycle, "SETTLE_AGAIN_SECONDS", 2)
    addresses = [f"h{n}@example.com" for n in range(4)]
    campaign_id = started_campaign(user, smtp, [addresses])
    work_queues(aws_stack, send=False, timeout=5)
    user.post(f"/v1/campaigns/{campaign_id}/pause")
    campaign_state.forget_statuses()
    from tests.support.api_client import load_handler
    from tests.support.sqs import deliver

    def send_once() -> None:
        deliver(
            load_handler("send"), aws_stack.refs["BulkSendQueue"], aws_stack.attrs[("BulkSendQueue", "Arn")]
        )

    send_once()  # holds them all, caching "paused"
    assert user.post(f"/v1/campaigns/{campaign_id}/resume").status == 200
    campaign_state._status_cache.put(
        (ACCOUNT, campaign_id), "paused", 10**12
    )  # a worker that has not seen it
    worker = load_handler("campaigns")
    deliver(
        worker, aws_stack.refs["CampaignQueue"], aws_stack.attrs[("CampaignQueue", "Arn")]
    )  # the first settle
    send_once()  # the stale worker holds them again
    campaign_state.forget_statuses()  # its cache runs out
    # WHEN the queues are worked on (the second settle comes a moment later)
    work_queues(aws_stack, until=lambda: status_of(user, campaign_id) == "sent", timeout=30)
    # THEN every email went out once, none is left held
    assert delivered_to(smtp) == addresses


def test_one_execution_at_a_time_composes_a_part_and_a_dead_holders_job_takes_it_over(
    user: ApiClient,
    smtp: SmtpTestServer,
    aws_stack: StackResources,
    paged_audience: PagedAudience,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a started campaign whose first part's worker dies (killed: nothing given back)
    # while it holds the part's lease, before it wrote a single email
    addresses = [f"l{n}@example.com" for n in range(5)]
    campaign_id = started_campaign(user, smtp, [addresses])
    clock = FakeClock(current=datetime.now(UTC))
    holders_job = CampaignJob(ACCOUNT, campaign_id, "package", 0, 0, job_id="holder")
    real_write = expansion._write

    def killed(messages: Any) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(expansion, "_write", killed)
    monkeypatch.setattr(expansion.PartLease, "give_back", lambda self: None)
    with pytest.raises(RuntimeError):
        expansion.Expander(clock=clock).part(holders_job)
    monkeypatch.setattr(expansion, "_write", real_write)

    def emails() -> list[MessageModel]:
        return list(MessageModel.by_campaign.query(campaign_state.campaign_key(ACCOUNT, campaign_id)))

    # WHEN another job for the same part comes while the lease holds
    other = expansion.Expander(clock=clock).part(
        CampaignJob(ACCOUNT, campaign_id, "package", 0, 0, job_id="other")
    )
    # THEN it is dropped without writing, and the holder's own job waits for the lease
    assert other == "busy" and emails() == []
    assert expansion.Expander(clock=clock).part(holders_job) == "waiting for the part's lease"
    # WHEN the lease has run out
    clock.current += timedelta(seconds=331)
    # THEN the holder's job composes the part: everyone once
    assert expansion.Expander(clock=clock).part(holders_job) == "part composed"
    assert sorted(str(m.to[0]) for m in emails()) == addresses
    campaign = CampaignModel.get(ACCOUNT, campaign_id)
    assert campaign.part_lease is None and int(campaign.counts["composed"]) == 5


def test_a_part_whose_round_of_writes_fails_is_worked_again_and_composes_everyone_once(
    user: ApiClient,
    smtp: SmtpTestServer,
    aws_stack: StackResources,
    paged_audience: PagedAudience,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a started campaign whose one part holds 350 emails (four rounds of 100, worked
    # side by side), and a DynamoDB write that fails once, in the third round
    addresses = [f"r{n:03d}@example.com" for n in range(350)]
    campaign_id = started_campaign(user, smtp, [addresses])
    real_write = expansion._write
    failed: list[str] = []

    def flaky(messages: list[MessageModel]) -> None:
        if not failed and any(str(m.to[0]) == "r250@example.com" for m in messages):
            failed.append(str(messages[0].to[0]))
            raise RuntimeError("DynamoDB said no")
        real_write(messages)

    monkeypatch.setattr(expansion, "_write", flaky)
    job = CampaignJob(ACCOUNT, campaign_id, "package", 0, 0, job_id="first")
    clock = FakeClock(current=datetime.now(UTC))

    # WHEN the part fails, and SQS delivers its job again
    with pytest.raises(RuntimeError, match="DynamoDB said no"):
        expansion.Expander(clock=clock).part(job)
    outcome = expansion.Expander(clock=clock).part(job)

    # THEN the second try composes the part: every address has one email, counted once
    assert failed and outcome == "part composed"
    emails = list(MessageModel.by_campaign.query(campaign_state.campaign_key(ACCOUNT, campaign_id)))
    assert sorted(str(m.to[0]) for m in emails) == addresses
    campaign = CampaignModel.get(ACCOUNT, campaign_id)
    assert int(campaign.counts["composed"]) == 350 and "excluded_duplicate" not in campaign.counts
