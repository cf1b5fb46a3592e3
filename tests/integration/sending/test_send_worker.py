"""The send worker against moto and real aiosmtpd servers."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import Any

import boto3
import pytest
from mailer_core.adapters import sqs
from mailer_core.base.clock import FakeClock
from mailer_core.sending.worker import PACING_MARGIN, SendWorker, lead_seconds, paced_rate
from mailer_core.store.models import MessageModel
from pynamodb.expressions.update import Action

from devstack.resources import StackResources
from tests.support.api_client import ApiClient, LambdaContext, load_handler
from tests.support.fixtures.core import ACCOUNT, LOGIN, PASSWORD, mailbox_body
from tests.support.smtp_servers import Credentials, ScriptedHandler, SmtpTestServer, smtp_server
from tests.support.sqs import deliver


def take_jobs(stack: StackResources, queue: str = "SendQueue") -> list[tuple[sqs.SendJob, dict[str, Any]]]:
    """Everything visible or delayed on the queue, as (job, attributes), removed from it."""
    sqs_client = boto3.client("sqs")
    url = stack.refs[queue]
    jobs = []
    while got := sqs_client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
        "Messages"
    ):
        for m in got:
            jobs.append((sqs.SendJob.from_body(m["Body"]), m["Attributes"]))
            sqs_client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return jobs


def delayed_jobs(stack: StackResources, queue: str = "SendQueue") -> int:
    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.refs[queue], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )
    return int(attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"])


def compose(user: ApiClient, **body: Any) -> str:
    reply = user.post(
        "/v1/messages", {"to": ["client@example.com"], "subject": "Offer", "html": "<p>Hi</p>", **body}
    )
    assert reply.status == 202, reply.body
    return str(reply.json()["id"])


def stored(message_id: str) -> MessageModel:
    return MessageModel.get(ACCOUNT, message_id, consistent_read=True)


def test_the_send_function_sends_a_queued_message_and_records_it(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    # GIVEN a mailbox on a real SMTP server and a composed message
    user.post("/v1/mailboxes", mailbox_body(smtp))
    message_id = compose(
        user,
        subject="Коммерческое предложение",
        bcc=["hidden@example.com"],
        html="<h1>Здравствуйте!</h1><p><a href='https://example.com/offer'>Offer</a></p>",
    )
    # WHEN the send function consumes the queue
    result = deliver(load_handler("send"), aws_stack.refs["SendQueue"], aws_stack.attrs[("SendQueue", "Arn")])
    # THEN the server got exactly that email and the message is sent
    assert result["batchItemFailures"] == [] and result["delivered"] == 1
    [received] = smtp.messages
    parsed = received.parsed()
    assert parsed["Subject"] == "Коммерческое предложение"
    assert parsed["From"].addresses[0].display_name == "Анна Смирнова"
    assert parsed["Message-ID"] == stored(message_id).header_message_id
    assert b"hidden@example.com" not in received.data
    assert set(received.rcpt_tos) == {"client@example.com", "hidden@example.com"}
    view = user.get(f"/v1/messages/{message_id}").json()
    assert view["status"] == "sent" and view["sent_at"]
    assert [h["event"] for h in view["history"]] == ["queued", "sending", "sent"]


def test_a_redelivered_job_does_not_send_twice(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp))
    compose(user)
    [(job, _)] = take_jobs(aws_stack)

    with SendWorker(clock=FakeClock()) as worker:
        outcomes = [worker.process(job), worker.process(job)]

    assert outcomes == ["sent", "skipped"]
    assert len(smtp.messages) == 1


def test_one_smtp_connection_serves_a_whole_batch(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=100))
    checked = smtp.connections  # saving the mailbox checked it (one connection, nothing sent)
    for i in range(4):
        compose(user, subject=f"n{i}")
    deliver(load_handler("send"), aws_stack.refs["SendQueue"], aws_stack.attrs[("SendQueue", "Arn")])
    assert len(smtp.messages) == 4
    assert smtp.connections - checked == 1


def test_a_451_is_retried_with_backoff_and_then_sent(user: ApiClient, aws_stack: StackResources) -> None:
    handler = ScriptedHandler(data_replies=["451 4.3.0 try again later"])
    with smtp_server(handler, authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        user.post("/v1/mailboxes", mailbox_body(server))
        message_id = compose(user)
        [(job, _)] = take_jobs(aws_stack)
        with SendWorker(clock=FakeClock()) as worker:
            assert worker.process(job) == "retrying"
        message = stored(message_id)
        assert message.status == "queued" and "451" in (message.last_error or "")
        assert delayed_jobs(aws_stack) == 1  # re-queued with a delay, not at once

        with SendWorker(clock=FakeClock()) as worker:
            assert worker.process(job) == "sent"
    message = stored(message_id)
    assert message.status == "sent" and message.attempts == 2
    assert [h.event for h in message.history] == ["queued", "sending", "retrying", "sending", "sent"]
    assert len(handler.messages) == 1


@pytest.mark.parametrize(
    ("handler", "kind", "words"),
    [
        (
            ScriptedHandler(data_replies=["550 5.7.1 Message rejected under suspicion of SPAM"]),
            "permanent",
            "suspicion of SPAM",
        ),
        (
            ScriptedHandler(rcpt_replies={"client@example.com": "550 5.1.1 No such user"}),
            "permanent",
            "No such user",
        ),
    ],
)
def test_a_5xx_fails_at_once_with_the_servers_words(
    user: ApiClient, aws_stack: StackResources, handler: ScriptedHandler, kind: str, words: str
) -> None:
    with smtp_server(handler, authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        user.post("/v1/mailboxes", mailbox_body(server))
        message_id = compose(user)
        [(job, _)] = take_jobs(aws_stack)
        with SendWorker(clock=FakeClock()) as worker:
            assert worker.process(job) == "failed"
    message = stored(message_id)
    assert message.status == "failed"
    assert message.last_error and message.last_error.startswith(kind) and words in message.last_error
    assert take_jobs(aws_stack) == []


def test_a_connection_lost_after_the_whole_email_went_out_fails_it_as_interrupted_not_retried(
    user: ApiClient, aws_stack: StackResources
) -> None:
    # GIVEN a server that takes the whole message and hangs up before answering it (a crash,
    # or an answer lost on the way: the server may have taken the message; bench/faults.py
    # delivered such emails twice while they were retried)
    handler = ScriptedHandler(drop_on_data=True)
    with smtp_server(handler, authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        user.post("/v1/mailboxes", mailbox_body(server))
        message_id = compose(user)
        [(job, _)] = take_jobs(aws_stack)
        # WHEN the worker sends it
        with SendWorker(clock=FakeClock()) as worker:
            outcome = worker.process(job)
    # THEN it fails as interrupted, with the words, and is not queued again
    message = stored(message_id)
    assert (outcome, message.status) == ("interrupted", "failed")
    assert message.last_error and message.last_error.startswith("interrupted during SMTP")
    assert "the server may have it" in message.last_error
    assert handler.data_attempts == 1
    assert take_jobs(aws_stack) == []


def test_a_connection_cut_before_the_end_of_the_data_is_retried(
    user: ApiClient, aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailer_core.adapters import smtp

    sent_whole = smtp._data_from_spool

    def cut_in_the_middle(client: Any, spool: Any, on_data_sent: Any = None) -> Any:
        client.putcmd("data")
        client.getreply()
        client.send(b"Subject: half of it\r\n")
        client.close()  # the rest never goes out: no server keeps a DATA that did not end
        return sent_whole(client, spool, on_data_sent)

    with smtp_server(
        ScriptedHandler(), authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False
    ) as server:
        user.post("/v1/mailboxes", mailbox_body(server))
        message_id = compose(user)
        [(job, _)] = take_jobs(aws_stack)
        monkeypatch.setattr(smtp, "_data_from_spool", cut_in_the_middle)
        with SendWorker(clock=FakeClock()) as worker:
            assert worker.process(job) == "retrying"
    assert stored(message_id).status == "queued"
    assert delayed_jobs(aws_stack) == 1


def test_a_refused_login_fails_without_retrying(user: ApiClient, aws_stack: StackResources) -> None:
    with smtp_server(
        authenticator=Credentials("anna@example.com", "other-password"), auth_require_tls=False
    ) as server:
        user.post("/v1/mailboxes", mailbox_body(server))
        message_id = compose(user)
        [(job, _)] = take_jobs(aws_stack)
        with SendWorker(clock=FakeClock()) as worker:
            assert worker.process(job) == "failed"
    assert (stored(message_id).last_error or "").startswith("auth")


def test_retries_stop_after_the_configured_attempts(
    user: ApiClient, aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailer_core.base.config import reset_settings

    monkeypatch.setenv("MAILER_MAX_SEND_ATTEMPTS", "2")
    reset_settings()
    with smtp_server(
        ScriptedHandler(data_replies=["421 busy"] * 5),
        authenticator=Credentials(LOGIN, PASSWORD),
        auth_require_tls=False,
    ) as server:
        user.post("/v1/mailboxes", mailbox_body(server))
        message_id = compose(user)
        [(job, _)] = take_jobs(aws_stack)
        with SendWorker(clock=FakeClock()) as worker:
            assert [worker.process(job), worker.process(job)] == ["retrying", "failed"]
    assert stored(message_id).status == "failed"


def test_rate_limit_waits_in_process_for_a_short_wait(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=1))
    compose(user)
    compose(user)
    jobs = [job for job, _ in take_jobs(aws_stack)]
    clock = FakeClock()
    start = clock.now()
    with SendWorker(clock=clock) as worker:
        assert [worker.process(j) for j in jobs] == ["sent", "sent"]
    # the second waited one slot (a second, paced a little under the rate) after the first's
    # token, which was asked for a moment ahead of its use
    lead = lead_seconds(paced_rate(1))
    assert (clock.now() - start).total_seconds() == pytest.approx(lead + 1 + PACING_MARGIN, abs=1e-3)


def test_rate_limit_requeues_with_a_delay_for_a_long_wait(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=0.05))  # one every 20 s
    compose(user)
    second = compose(user)
    jobs = [job for job, _ in take_jobs(aws_stack)]
    with SendWorker(clock=FakeClock()) as worker:
        assert [worker.process(j) for j in jobs] == ["sent", "deferred"]
    assert stored(second).status == "queued" and stored(second).attempts == 0
    assert delayed_jobs(aws_stack) == 1
    assert len(smtp.messages) == 1


def test_daily_cap_defers_until_tomorrow(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=100, daily_cap=1))
    compose(user)
    compose(user)
    jobs = [job for job, _ in take_jobs(aws_stack)]
    with SendWorker(clock=FakeClock()) as worker:
        assert [worker.process(j) for j in jobs] == ["sent", "deferred"]
    assert len(smtp.messages) == 1


def test_a_claim_left_by_a_dead_worker_fails_the_message_instead_of_resending(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp))
    message_id = compose(user)
    [(job, _)] = take_jobs(aws_stack)
    clock = FakeClock()
    message = stored(message_id)
    message.update(
        actions=[
            MessageModel.status.set("sending"),
            MessageModel.status_key.set(f"{ACCOUNT}#sending"),
            MessageModel.claim_expires_at.set(clock.now() + timedelta(minutes=5)),
        ]
    )

    with SendWorker(clock=clock) as worker:
        assert worker.process(job) == "skipped"  # the lease is still held
        clock.advance(301)
        assert worker.process(job) == "interrupted"

    assert smtp.messages == []
    failed = stored(message_id)
    assert failed.status == "failed" and "interrupted during SMTP" in (failed.last_error or "")


def test_canceled_and_missing_messages_are_not_sent(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp))
    message_id = compose(user)
    user.post(f"/v1/messages/{message_id}/cancel")
    [(job, _)] = take_jobs(aws_stack)
    ghost = sqs.SendJob(ACCOUNT, "01JNOTHERE0000000000000000", job.mailbox_id)
    with SendWorker(clock=FakeClock()) as worker:
        assert worker.process(job) == "skipped"
        assert worker.process(ghost) == "not_found"
    assert smtp.messages == []


def test_a_deleted_mailbox_fails_the_message(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    mailbox_id = user.post("/v1/mailboxes", mailbox_body(smtp)).json()["id"]
    message_id = compose(user)
    user.delete(f"/v1/mailboxes/{mailbox_id}")
    [(job, _)] = take_jobs(aws_stack)
    with SendWorker(clock=FakeClock()) as worker:
        assert worker.process(job) == "failed"
    assert "no longer exists" in (stored(message_id).last_error or "")


def test_a_scheduled_message_delivered_early_goes_back_with_the_remaining_delay(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp))
    clock = FakeClock()
    message_id = compose(user, to=["x@example.com"])
    message = stored(message_id)
    message.update(
        actions=[
            MessageModel.status.set("scheduled"),
            MessageModel.send_at.set(clock.now() + timedelta(seconds=90)),
        ]
    )
    [(job, _)] = take_jobs(aws_stack)
    with SendWorker(clock=clock) as worker:
        assert worker.process(job) == "deferred"
        clock.advance(90)
        assert worker.process(job) == "sent"
    assert len(smtp.messages) == 1


def test_a_message_released_seconds_before_its_send_at_is_deferred_not_dropped(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    # GIVEN a timer (60-second precision) that queued the message 20 s before its send_at
    user.post("/v1/mailboxes", mailbox_body(smtp))
    clock = FakeClock()
    message_id = compose(user, to=["x@example.com"])
    stored(message_id).update(actions=[MessageModel.send_at.set(clock.now() + timedelta(seconds=20))])
    [(job, _)] = take_jobs(aws_stack)
    with SendWorker(clock=clock) as worker:
        # WHEN the job arrives early THEN it goes back with the remaining delay
        assert worker.process(job) == "deferred"
        assert delayed_jobs(aws_stack) == 1
        clock.advance(20)
        assert worker.process(job) == "sent"
    assert len(smtp.messages) == 1


def test_the_timers_function_releases_a_scheduled_message_once(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    from datetime import datetime

    user.post("/v1/mailboxes", mailbox_body(smtp))
    at = datetime.now(UTC) + timedelta(days=1)
    message_id = compose(user, send_at=at.isoformat())
    schedule = boto3.client("scheduler").get_schedule(
        Name=f"send-{ACCOUNT}-{message_id}", GroupName=aws_stack.refs["ScheduleGroup"]
    )
    payload = json.loads(schedule["Target"]["Input"])
    timers = load_handler("timers")

    first = timers.lambda_handler(payload, LambdaContext())
    second = timers.lambda_handler(payload, LambdaContext())

    assert (first, second) == ({"result": "queued"}, {"result": "ignored"})
    assert [job.message_id for job, _ in take_jobs(aws_stack)] == [message_id]
    assert stored(message_id).status == "queued"


def test_a_sent_record_that_fails_in_a_lane_fails_its_job_so_that_sqs_delivers_it_again(
    user: ApiClient, aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailer_core.sending import outcomes

    # GIVEN a batch for two mailboxes (two lanes) and DynamoDB refusing one email's "sent" record
    with smtp_server(
        ScriptedHandler(), authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False
    ) as server:
        mailboxes = []
        for sender in ("anna@example.com", "ivan@example.com"):
            reply = user.post(
                "/v1/mailboxes", mailbox_body(server, sender_email=sender, smtp_login=LOGIN, is_default=False)
            )
            assert reply.status == 201, reply.body
            mailboxes.append(str(reply.json()["id"]))
        lost, kept = (compose(user, mailbox_id=m) for m in mailboxes)
        bodies = [job.to_body() for job, _ in take_jobs(aws_stack)]
        record = outcomes.record_sent

        def failing(message: MessageModel, *args: Any, **kwargs: Any) -> None:
            if message.message_id == lost:
                raise RuntimeError("DynamoDB: InternalServerError")
            record(message, *args, **kwargs)

        monkeypatch.setattr(outcomes, "record_sent", failing)
        # WHEN the send function works the batch
        with SendWorker(clock=FakeClock()) as worker:
            results = worker.process_batch(bodies)

    # THEN the email whose record was lost is not reported done (SQS delivers its job again,
    # and its claim's lease decides), while the other mailbox's email is sent and done
    by_message = {sqs.SendJob.from_body(b).message_id: r for b, r in zip(bodies, results, strict=True)}
    assert isinstance(by_message[lost], Exception)
    assert by_message[kept] == "sent"
    assert (stored(lost).status, stored(kept).status) == ("sending", "sent")


def test_a_redelivered_job_sent_back_to_wait_resolves_a_dead_workers_claim(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    from mailer_core.sending import outcomes

    # GIVEN a message claimed by a worker that died (bench/faults.py: killed after its claim),
    # its lease passed, and its job delivered again while its mailbox's turn is far off
    user.post("/v1/mailboxes", mailbox_body(smtp))
    message_id = compose(user)
    [(job, _)] = take_jobs(aws_stack)
    clock = FakeClock()
    assert not isinstance(outcomes.claim(job, clock), str)
    clock.advance(outcomes.CLAIM_LEASE.total_seconds() + 1)

    # WHEN the job is sent back to wait for the mailbox (before any claim: the rate)
    outcome = outcomes.wait(job, "rate", clock.now() + timedelta(minutes=5), clock)

    # THEN the message is marked interrupted now, not left `sending` once this job is done
    message = stored(message_id)
    assert (outcome, message.status) == ("interrupted", "failed")
    assert (message.last_error or "").startswith("interrupted during SMTP")
    assert take_jobs(aws_stack) == []


def left_by_a_dead_worker(message_id: str, clock: FakeClock, campaign: str | None = None) -> None:
    """The message as a worker that claimed it and died leaves it: `sending`, its lease passed."""
    actions: list[Action] = [
        MessageModel.status.set("sending"),
        MessageModel.status_key.set(f"{ACCOUNT}#sending"),
        MessageModel.claim_expires_at.set(clock.now() - timedelta(seconds=1)),
    ]
    if campaign:
        actions.append(MessageModel.campaign_id.set(campaign))
    stored(message_id).update(actions=actions)


def campaign_in(status: str, clock: FakeClock, mailbox_id: str) -> str:
    from mailer_core.events import campaign_state
    from mailer_core.store.models import CampaignModel

    campaign_id = f"01JCAMPAIGN{status.upper():0<15}"[:26]
    CampaignModel(
        ACCOUNT,
        campaign_id,
        name="Autumn",
        status=status,
        user_id=1,
        mailbox_ids=[mailbox_id],
        audience={"kind": "list"},
        created_at=clock.now(),
        updated_at=clock.now(),
    ).save()
    campaign_state.forget_statuses()
    return campaign_id


@pytest.mark.parametrize(
    "path", ["campaign canceled", "campaign paused", "account switched off", "mailbox deleted"]
)
def test_a_job_that_gives_up_on_its_message_resolves_a_dead_workers_claim(
    path: str,
    user: ApiClient,
    smtp: SmtpTestServer,
    aws_stack: StackResources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dataclasses import replace

    from mailer_core.accounts import access

    # GIVEN a message left `sending` by a worker that died (its lease passed), and its job
    # delivered again when it would not be sent anyway: its campaign canceled or paused, the
    # account switched off, or its mailbox deleted
    mailbox_id = user.post("/v1/mailboxes", mailbox_body(smtp)).json()["id"]
    message_id = compose(user)
    [(job, _)] = take_jobs(aws_stack)
    clock = FakeClock()
    campaign = None
    if path.startswith("campaign"):
        campaign = campaign_in(path.split()[1], clock, mailbox_id)
        job = replace(job, campaign=campaign, lane="bulk")
    elif path == "account switched off":
        switched_off = "Mailer was switched off for this account"
        monkeypatch.setattr(access, "send_refusal", lambda *_, **__: switched_off)
    else:
        user.delete(f"/v1/mailboxes/{mailbox_id}")
    left_by_a_dead_worker(message_id, clock, campaign)

    # WHEN the job arrives
    with SendWorker(clock=clock) as worker:
        outcome = worker.process(job)

    # THEN the message is marked interrupted now (it may have gone out), not left `sending`
    message = stored(message_id)
    assert (outcome, message.status) == ("interrupted", "failed")
    assert (message.last_error or "").startswith("interrupted during SMTP")
    assert smtp.messages == []
