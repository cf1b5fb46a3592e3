"""Each mailbox's rate and daily cap, held at the server, mailbox by mailbox.

GIVEN/WHEN/THEN against moto and real aiosmtpd servers. Where speed matters the worker runs
in simulated time (`SimClock`: its lanes sleep in virtual time, the server notes the virtual
time each email arrives), so nothing here depends on how fast the machine is; the per-second
ceiling is checked on the server's own receipt times, where a late token would show.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from mailer_core.adapters import sqs
from mailer_core.base.clock import Clock, FakeClock
from mailer_core.events import message_events
from mailer_core.sending import worker as worker_module
from mailer_core.sending.worker import PACING_MARGIN, SendWorker, lead_seconds, paced_rate
from mailer_core.store import rate_buckets
from mailer_core.store.models import MessageModel

from devstack.resources import StackResources
from tests.support.api_client import ApiClient, LambdaContext, load_handler
from tests.support.fixtures.core import ACCOUNT, LOGIN, PASSWORD, mailbox_body
from tests.support.sim_clock import SimClock
from tests.support.smtp_servers import Credentials, ScriptedHandler, SmtpTestServer, smtp_server
from tests.support.sqs import receive_batch, sqs_event


@dataclass
class TimedHandler(ScriptedHandler):
    """Notes, for each email that arrives, its sender and when its data was in: the virtual
    time of `clock` when there is one, else the server's own clock (seconds, monotonic)."""

    clock: Clock | None = None
    arrivals: list[tuple[str, float]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        at = self.clock.timestamp() if self.clock is not None else time.monotonic()
        self.arrivals.append((str(envelope.mail_from), at))
        return await super().handle_DATA(server, session, envelope)

    def times(self, sender: str) -> list[float]:
        return sorted(at for who, at in self.arrivals if who == sender)


class SlowLogin(Credentials):
    """Accepts the test login after `delay` seconds: a provider that takes its time to log in."""

    def __init__(self, delay: float) -> None:
        super().__init__(LOGIN, PASSWORD)
        self.delay = delay

    def __call__(self, *args: Any) -> Any:
        time.sleep(self.delay)
        return super().__call__(*args)


@pytest.fixture
def timed() -> Iterator[tuple[SmtpTestServer, TimedHandler]]:
    handler = TimedHandler()
    with smtp_server(handler, authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        yield server, handler


class FreshInvocation(LambdaContext):
    def get_remaining_time_in_millis(self) -> int:
        return 59_000


def add_mailbox(user: ApiClient, server: SmtpTestServer, sender: str, **limits: Any) -> str:
    reply = user.post(
        "/v1/mailboxes",
        mailbox_body(server, sender_email=sender, smtp_login=LOGIN, is_default=False, **limits),
    )
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def compose_bulk(user: ApiClient, mailbox_id: str, n: int) -> str:
    reply = user.post(
        "/v1/messages",
        {
            "mailbox_id": mailbox_id,
            "lane": "bulk",
            "to": [f"client{n}@example.com"],
            "subject": f"Offer {n}",
            "html": "<p>Hi</p>",
        },
    )
    assert reply.status == 202, reply.body
    return str(reply.json()["id"])


def bulk_bodies(stack: StackResources) -> list[str]:
    """The bulk queue's next batch (up to 10), as the send function would get it."""
    return [m["Body"] for m in receive_batch(stack.refs["BulkSendQueue"])]


def stored(message_id: str) -> MessageModel:
    return MessageModel.get(ACCOUNT, message_id, consistent_read=True)


def most_in_one_second(times: list[float]) -> int:
    """The most arrivals any one-second window [t, t + 1) holds."""
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


def in_simulated_time(clock: SimClock) -> Callable[[list[Callable[[], None]]], None]:
    """`SendWorker.run_lanes` for tests: the lanes as participants of the simulated clock."""
    return lambda lanes: clock.run_threads(len(lanes), lambda n: lanes[n]())


@pytest.fixture(autouse=True)
def _no_timings_from_other_tests() -> None:
    """The token lead follows this process's token requests; other tests measured real ones."""
    worker_module.forget_timings()


@pytest.fixture
def requeued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[sqs.SendJob, int]]:
    """Every send job put on a queue from now on (and its delay), still really queued: clear
    it after composing to see what the worker puts back."""
    seen: list[tuple[sqs.SendJob, int]] = []
    enqueue = sqs.enqueue_send

    def spy(job: sqs.SendJob, delay_seconds: int = 0) -> None:
        seen.append((job, delay_seconds))
        enqueue(job, delay_seconds=delay_seconds)

    monkeypatch.setattr(sqs, "enqueue_send", spy)
    return seen


def test_a_fast_mailbox_keeps_its_rate_beside_a_slow_one_in_a_bulk_backlog(
    user: ApiClient, aws_stack: StackResources, requeued: list[tuple[sqs.SendJob, int]]
) -> None:
    # GIVEN a 3/s and a 1/s mailbox sharing a backlog on the bulk queue, two of the fast
    # one's emails for each of the slow one's
    clock = SimClock()
    handler = TimedHandler(clock=clock)
    with smtp_server(handler, authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        fast = add_mailbox(user, server, "fast@example.com", rate_per_second=3)
        slow = add_mailbox(user, server, "slow@example.com", rate_per_second=1)
        for n in range(15):
            compose_bulk(user, slow if n % 3 == 2 else fast, n)
        bodies = bulk_bodies(aws_stack)
        jobs = [sqs.SendJob.from_body(b) for b in bodies]

        # WHEN the send function works one batch of it
        requeued.clear()
        with SendWorker(clock=clock, run_lanes=in_simulated_time(clock)) as worker:
            start = clock.timestamp()
            outcomes = worker.process_batch(bodies)

    # THEN the fast mailbox's emails went out at its own pace, not the slow one's: every one
    # whose turn came within the 2 s a job may wait was sent, about a third of a second apart
    interval = (1 + PACING_MARGIN) / 3
    fast_jobs = [n for n, job in enumerate(jobs) if job.mailbox_id == fast]
    assert len(fast_jobs) >= 6
    expected_sent = [n for k, n in enumerate(fast_jobs) if k * interval <= 2.0]
    assert [outcomes[n] for n in expected_sent] == ["sent"] * len(expected_sent)
    times = handler.times("fast@example.com")
    lead = lead_seconds(paced_rate(3))  # each token is asked for a moment before its use
    assert times[0] == pytest.approx(start + lead, abs=0.01)
    achieved = (len(times) - 1) / (times[-1] - times[0])
    assert achieved >= 0.95 * 3
    # ... while the slow one sent one a second and gave the rest back to wait for their turn
    first = start + lead_seconds(paced_rate(1))
    assert handler.times("slow@example.com") == pytest.approx([first, first + 1 + PACING_MARGIN], abs=0.01)
    waited = {job.message_id for job, _ in requeued}
    assert waited == {job.message_id for n, job in enumerate(jobs) if outcomes[n] == "deferred"}
    assert all(delay >= 1 for _, delay in requeued)


def test_no_second_at_the_server_holds_more_than_the_mailboxs_rate(
    user: ApiClient, aws_stack: StackResources
) -> None:
    # GIVEN a 2/s mailbox on a provider that takes 0.3 s to log in, and a batch of its emails
    handler = TimedHandler()
    with smtp_server(handler, authenticator=SlowLogin(0.3), auth_require_tls=False) as server:
        mailbox = add_mailbox(user, server, "pace@example.com", rate_per_second=2)
        for n in range(6):
            compose_bulk(user, mailbox, n)
        messages = receive_batch(aws_stack.refs["BulkSendQueue"])

        # WHEN a fresh container's send function handles it (it must log in first)
        result = load_handler("send").lambda_handler(
            sqs_event(messages, aws_stack.attrs[("BulkSendQueue", "Arn")]), FreshInvocation()
        )

    # THEN the emails reached the server at most two in any one second (the token is taken
    # after the login, just before the envelope: the login's 0.3 s is not spent from it)
    assert result["batchItemFailures"] == []
    times = handler.times("pace@example.com")
    assert len(times) >= 3  # enough for a third in one second to show
    assert most_in_one_second(times) <= 2


def test_a_job_whose_turn_is_far_goes_back_to_the_queue_unclaimed_and_unslept(
    user: ApiClient,
    aws_stack: StackResources,
    timed: tuple[SmtpTestServer, TimedHandler],
    requeued: list[tuple[sqs.SendJob, int]],
) -> None:
    # GIVEN a mailbox that may send one email every 20 s, and two of its emails in one batch
    server, handler = timed
    mailbox = add_mailbox(user, server, "slow@example.com", rate_per_second=0.05)
    first, second = compose_bulk(user, mailbox, 1), compose_bulk(user, mailbox, 2)
    clock = FakeClock()
    start = clock.now()

    # WHEN the worker handles the batch
    requeued.clear()
    with SendWorker(clock=clock) as worker:
        outcomes = worker.process_batch(bulk_bodies(aws_stack))

    # THEN the first is sent; the second goes back with the delay its turn needs, without
    # being claimed (no "sending", no attempt) and without the worker sleeping for it
    assert outcomes == ["sent", "deferred"]
    assert (clock.now() - start).total_seconds() < 1  # the first's token's moment, no more
    [(job, delay)] = requeued
    assert job.message_id == second and job.lane == "bulk"
    # its turn 20.6 s off (20 s paced 3 % under the rate): back up to the 2 s a worker may
    # wait before it, in whole seconds
    assert delay == 19
    held = stored(second)
    assert (held.status, int(held.attempts)) == ("queued", 0)
    assert "sending" not in [h.event for h in held.history]
    assert len(handler.arrivals) == 1 and stored(first).status == "sent"


def test_a_batch_of_one_mailbox_sends_what_fits_its_wait_and_spreads_the_rest(
    user: ApiClient,
    aws_stack: StackResources,
    timed: tuple[SmtpTestServer, TimedHandler],
    requeued: list[tuple[sqs.SendJob, int]],
) -> None:
    # GIVEN six emails of a 1/s mailbox in one batch
    server, _ = timed
    mailbox = add_mailbox(user, server, "one@example.com", rate_per_second=1)
    for n in range(6):
        compose_bulk(user, mailbox, n)
    clock = FakeClock()

    # WHEN the worker handles the batch
    requeued.clear()
    with SendWorker(clock=clock) as worker:
        outcomes = worker.process_batch(bulk_bodies(aws_stack))

    # THEN it sends those whose turn comes within 2 s (at 0.05 and 1.08 s) and puts the others
    # back one interval apart, so they do not all come back at once
    assert outcomes == ["sent", "sent", "deferred", "deferred", "deferred", "deferred"]
    lead = lead_seconds(paced_rate(1))
    elapsed = (clock.now() - FakeClock().now()).total_seconds()
    assert elapsed == pytest.approx(lead + 1 + PACING_MARGIN, abs=1e-3)
    # (their turns at 2.11, 3.14, 4.17 and 5.20 s, seen at 1.08 s: back in whole seconds up to
    # the 2 s a worker may wait for a turn before it, so that none comes back after its turn)
    assert [delay for _, delay in requeued] == [1, 1, 2, 3]


def test_jobs_sent_back_to_wait_come_back_in_time_for_their_turns(
    user: ApiClient, aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN six emails of a 1/s mailbox in one batch; the jobs the worker sends back to wait
    # are delivered again when their SQS delay is over, as the queue does
    clock = FakeClock()
    handler = TimedHandler(clock=clock)
    back: list[tuple[float, sqs.SendJob]] = []
    with smtp_server(handler, authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        mailbox = add_mailbox(user, server, "turns@example.com", rate_per_second=1)
        for n in range(6):
            compose_bulk(user, mailbox, n)
        bodies = bulk_bodies(aws_stack)
        monkeypatch.setattr(
            sqs,
            "enqueue_send",
            lambda job, delay_seconds=0: back.append((clock.timestamp() + delay_seconds, job)),
        )

        # WHEN the send function handles the batch, then each job that comes back (an
        # invocation each, as Lambda's)
        with SendWorker(clock=clock) as worker:
            worker.process_batch(bodies)
        while back and len(handler.arrivals) < 6:
            back.sort(key=lambda b: b[0])
            due, job = back.pop(0)
            clock.sleep(max(0.0, due - clock.timestamp()))
            with SendWorker(clock=clock) as worker:
                worker.process_batch([job.to_body()])

    # THEN every email took the turn after the one before, at most a token's lead late: no
    # turn was missed while a job was away (a job back after its turn finds the bucket idle,
    # and the mailbox loses the time it was late)
    times = handler.times("turns@example.com")
    assert len(times) == 6
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    interval = 1 + PACING_MARGIN
    assert all(interval - 1e-3 <= gap <= interval + worker_module.MIN_LEAD_SECONDS for gap in gaps), gaps


def test_an_email_held_by_the_daily_cap_says_so_with_its_next_try(
    user: ApiClient,
    aws_stack: StackResources,
    timed: tuple[SmtpTestServer, TimedHandler],
    requeued: list[tuple[sqs.SendJob, int]],
) -> None:
    # GIVEN a mailbox with a daily cap of one, and two of its emails
    server, _ = timed
    mailbox = add_mailbox(user, server, "cap@example.com", rate_per_second=100, daily_cap=1)
    compose_bulk(user, mailbox, 1)
    second = compose_bulk(user, mailbox, 2)
    clock = FakeClock()
    midnight = (clock.now() + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)

    # WHEN the worker handles them
    requeued.clear()
    with SendWorker(clock=clock) as worker:
        assert worker.process_batch(bulk_bodies(aws_stack)) == ["sent", "deferred"]

    # THEN the held email shows why and when it is tried next, in its public view
    view = user.get(f"/v1/messages/{second}").json()
    assert view["status"] == "queued"
    assert view["waiting"]["reason"] == "daily_cap"
    assert "daily cap" in view["waiting"]["detail"]
    assert datetime.fromisoformat(view["waiting"]["next_try_at"]) == midnight
    # ... its job went back for at most SQS's 15 minutes, carrying the wait it noted
    [(job, delay)] = requeued
    assert delay == sqs.MAX_DELAY_SECONDS and job.waiting == f"daily_cap@{int(midnight.timestamp())}"

    # WHEN that job comes back and the cap still holds
    before = stored(second)
    clock.advance(delay)
    with SendWorker(clock=clock) as worker:
        assert worker.process_batch([job.to_body()]) == ["deferred"]

    # THEN it goes back again without writing the same note twice, and unclaimed
    after = stored(second)
    assert after.updated_at == before.updated_at and int(after.attempts) == 0
    assert len(requeued) == 2


def test_the_note_goes_once_the_email_is_claimed(
    user: ApiClient,
    aws_stack: StackResources,
    timed: tuple[SmtpTestServer, TimedHandler],
    requeued: list[tuple[sqs.SendJob, int]],
) -> None:
    # GIVEN an email held by its mailbox's rate, whose turn has come
    server, _ = timed
    mailbox = add_mailbox(user, server, "turn@example.com", rate_per_second=0.05)
    compose_bulk(user, mailbox, 1)
    second = compose_bulk(user, mailbox, 2)
    clock = FakeClock()
    requeued.clear()
    with SendWorker(clock=clock) as worker:
        worker.process_batch(bulk_bodies(aws_stack))
    assert user.get(f"/v1/messages/{second}").json()["waiting"]["reason"] == "rate"
    [(job, delay)] = requeued
    clock.advance(delay)

    # WHEN its job comes back
    with SendWorker(clock=clock) as worker:
        assert worker.process_batch([job.to_body()]) == ["sent"]

    # THEN it is sent and no longer says it waits
    view = user.get(f"/v1/messages/{second}").json()
    assert (view["status"], view["waiting"]) == ("sent", None)


def test_a_refused_login_tells_the_campaign_and_fails_its_email(
    user: ApiClient, aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a campaign's email on the bulk lane, and another bulk email that is no campaign's,
    # from a mailbox whose server refuses the login
    heard: list[tuple[str, str]] = []
    monkeypatch.setattr(
        message_events,
        "on_mailbox_login_refused",
        lambda message, reason: heard.append((message.message_id, reason)),
    )
    with smtp_server(authenticator=Credentials(LOGIN, "another password"), auth_require_tls=False) as server:
        mailbox = add_mailbox(user, server, "red@example.com", rate_per_second=100)
        campaign_email = compose_bulk(user, mailbox, 1)
        MessageModel(ACCOUNT, campaign_email).update(actions=[MessageModel.campaign_id.set("01CAMPAIGN")])
        other = compose_bulk(user, mailbox, 2)

        # WHEN the worker handles them
        with SendWorker(clock=FakeClock()) as worker:
            outcomes = worker.process_batch(bulk_bodies(aws_stack))

    # THEN both fail (the mailbox is red: the second is not even tried), and the campaign
    # hears of its own email only, with the reason
    assert outcomes == ["failed", "failed"]
    assert stored(campaign_email).status == "failed" and stored(other).status == "failed"
    [(message_id, reason)] = heard
    assert message_id == campaign_email and reason.startswith("auth")


def slow_first_take(clock: FakeClock, asked: list[float]) -> Callable[..., rate_buckets.RateDecision]:
    """Takes tokens for real, but the first answer comes 0.3 s later: its moment has passed."""

    def take(*args: Any, **kwargs: Any) -> rate_buckets.RateDecision:
        decision = rate_buckets.take(*args, **kwargs)
        asked.append(kwargs["now"])
        if len(asked) == 1:
            clock.advance(0.3)
        return decision

    return take


def test_a_token_that_comes_back_too_late_is_moved_later_and_used_then(
    user: ApiClient, aws_stack: StackResources, timed: tuple[SmtpTestServer, TimedHandler]
) -> None:
    # GIVEN a mailbox whose first token request is slow (its moment passes before it is known)
    server, handler = timed
    mailbox = add_mailbox(user, server, "late@example.com", rate_per_second=1)
    compose_bulk(user, mailbox, 1)
    clock = FakeClock()
    handler.clock = clock
    asked: list[float] = []

    # WHEN the worker sends its email
    with SendWorker(clock=clock, take_token=slow_first_take(clock, asked)) as worker:
        assert worker.process_batch(bulk_bodies(aws_stack)) == ["sent"]

    # THEN the token was not used at its passed moment but moved to a later one (nobody had
    # taken the next), where the email reached the server
    [moment] = asked
    [(_, arrived)] = handler.arrivals
    assert arrived > moment + 0.3
    assert not rate_buckets.take(
        f"mailbox#{ACCOUNT}#{mailbox}", rate_per_second=paced_rate(1), daily_cap=10, now=arrived + 0.5
    ).allowed  # the bucket counts from the moment used


def test_a_late_token_that_cannot_move_is_given_back_and_the_next_one_used(
    user: ApiClient, aws_stack: StackResources, timed: tuple[SmtpTestServer, TimedHandler]
) -> None:
    # GIVEN a mailbox with a daily cap of one whose first token comes back too late, when
    # someone has already taken the next (it cannot be moved)
    server, handler = timed
    mailbox = add_mailbox(user, server, "late@example.com", rate_per_second=1, daily_cap=1)
    compose_bulk(user, mailbox, 1)
    clock = FakeClock()
    handler.clock = clock
    asked: list[float] = []

    # WHEN the worker sends its email
    with SendWorker(
        clock=clock, take_token=slow_first_take(clock, asked), move_token_later=lambda *a, **k: False
    ) as worker:
        assert worker.process_batch(bulk_bodies(aws_stack)) == ["sent"]

    # THEN the late token was given back (the day's one email still went out) and the email
    # reached the server at the moment of the token it used
    assert len(asked) == 2
    [(_, arrived)] = handler.arrivals
    assert arrived == pytest.approx(asked[1], abs=1e-6)


def test_the_send_job_line_names_the_moment_of_the_token_the_email_went_out_on(
    user: ApiClient, aws_stack: StackResources, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN two emails of a 1/s mailbox, and a server that notes when each one's data came
    clock = FakeClock()
    handler = TimedHandler(clock=clock)
    with smtp_server(handler, authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        mailbox = add_mailbox(user, server, "moments@example.com", rate_per_second=1)
        compose_bulk(user, mailbox, 1)
        compose_bulk(user, mailbox, 2)

        # WHEN the send function works them
        with caplog.at_level("INFO", logger="mailer"), SendWorker(clock=clock) as worker:
            worker.process_batch(bulk_bodies(aws_stack))

    # THEN each "send job done" line carries its token's moment: here, when its data came
    done = [r for r in caplog.records if r.getMessage() == "send job done"]
    assert [getattr(r, "token_at", None) for r in done] == pytest.approx(
        handler.times("moments@example.com"), abs=1e-3
    )
