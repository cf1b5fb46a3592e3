"""The send worker prepares the batch's next email while the server answers the current one.

GIVEN/WHEN/THEN against moto and a real aiosmtpd server: the next email is claimed only once
the current one's data is out (never during its envelope), a preparation nobody delivers is
given back, the look-ahead stops near the invocation's end, and a failure while preparing
ahead belongs to that email's own record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from mailer_core.adapters import sqs
from mailer_core.sending.worker import SendWorker
from mailer_core.store.models import MessageModel

from devstack.resources import StackResources
from tests.support.api_client import ApiClient, LambdaContext, load_handler
from tests.support.fixtures.core import ACCOUNT, LOGIN, PASSWORD, mailbox_body
from tests.support.smtp_servers import Credentials, ScriptedHandler, SmtpTestServer, smtp_server
from tests.support.sqs import receive_batch, sqs_event


class FreshInvocation(LambdaContext):
    """An invocation that has just started: the send function's 60 s nearly all left."""

    def get_remaining_time_in_millis(self) -> int:
        return 59_000


def statuses(message_ids: list[str]) -> dict[str, str]:
    found = MessageModel.batch_get([(ACCOUNT, i) for i in message_ids], consistent_read=True)
    return {m.message_id: str(m.status) for m in found}


def history(message_id: str) -> list[str]:
    return [h.event for h in MessageModel.get(ACCOUNT, message_id, consistent_read=True).history]


@dataclass
class WatchingHandler(ScriptedHandler):
    """Notes the status of every message as each email's envelope arrives (RCPT) and once
    its data is in (before answering it, after waiting up to 5 s for the next to be claimed)."""

    message_ids: list[str] = field(default_factory=list)
    at_rcpt: list[dict[str, str]] = field(default_factory=list)
    at_data: list[dict[str, str]] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]):
        self.at_rcpt.append(statuses(self.message_ids))
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        wanted = len(self.at_data) + 2  # this email and the next one out of `queued`
        deadline = time.monotonic() + 5.0
        seen = statuses(self.message_ids)
        while sum(s != "queued" for s in seen.values()) < min(wanted, len(seen)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
            seen = statuses(self.message_ids)
        self.at_data.append(seen)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def watching() -> Iterator[tuple[SmtpTestServer, WatchingHandler]]:
    handler = WatchingHandler()
    with smtp_server(handler, authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        yield server, handler


def compose_many(user: ApiClient, count: int) -> None:
    for i in range(count):
        reply = user.post(
            "/v1/messages", {"to": [f"client{i}@example.com"], "subject": f"n{i}", "html": "<p>Hi</p>"}
        )
        assert reply.status == 202, reply.body


def batch(stack: StackResources) -> tuple[dict[str, Any], list[str]]:
    """The send queue's next batch as Lambda's event, and its message ids in record order."""
    messages = receive_batch(stack.refs["SendQueue"])
    event = sqs_event(messages, stack.attrs[("SendQueue", "Arn")])
    return event, [sqs.SendJob.from_body(r["body"]).message_id for r in event["Records"]]


def jobs_of(event: dict[str, Any]) -> list[sqs.SendJob]:
    return [sqs.SendJob.from_body(r["body"]) for r in event["Records"]]


def delete_batch(stack: StackResources, event: dict[str, Any]) -> None:
    sqs_client = boto3.client("sqs")
    for record in event["Records"]:
        sqs_client.delete_message(QueueUrl=stack.refs["SendQueue"], ReceiptHandle=record["receiptHandle"])


def test_the_next_email_is_claimed_while_the_server_answers_the_current_one(
    user: ApiClient, aws_stack: StackResources, watching: tuple[SmtpTestServer, WatchingHandler]
) -> None:
    # GIVEN three queued emails of one mailbox
    server, handler = watching
    user.post("/v1/mailboxes", mailbox_body(server, rate_per_second=100))
    compose_many(user, 3)
    event, order = batch(aws_stack)
    handler.message_ids = order
    connections = server.connections

    # WHEN the send function handles them as one batch
    result = load_handler("send").lambda_handler(event, FreshInvocation())

    # THEN while the first email's envelope was going out, the second was not claimed yet ...
    assert result["batchItemFailures"] == []
    assert handler.at_rcpt[0] == {order[0]: "sending", order[1]: "queued", order[2]: "queued"}
    # ... and while the server held its answer to the first email's data, the second was
    assert handler.at_data[0][order[1]] == "sending"
    assert handler.at_data[1][order[2]] == "sending"
    # AND all three went out once, in order, over one connection, each recorded sent
    sent_ids = [MessageModel.get(ACCOUNT, i).header_message_id for i in order]
    assert [m.parsed()["Message-ID"] for m in server.messages] == sent_ids
    assert statuses(order) == dict.fromkeys(order, "sent")
    assert server.connections - connections == 1
    for message_id in order:
        assert history(message_id) == ["queued", "sending", "sent"]


def test_a_prepared_email_nobody_delivers_is_given_back(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    # GIVEN a batch of two whose second email was prepared during the first one's send
    user.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=100))
    compose_many(user, 2)
    event, order = batch(aws_stack)
    first, _ = jobs_of(event)
    worker = SendWorker()
    worker.prefetch(r["body"] for r in event["Records"])
    assert worker.process(first) == "sent"

    # WHEN the worker stops before the second job comes (the invocation ended)
    worker.close()

    # THEN the second email's claim is released: queued again for the job's redelivery, never sent
    assert len(smtp.messages) == 1
    assert statuses(order) == {order[0]: "sent", order[1]: "queued"}
    assert history(order[1]) == ["queued", "sending", "released"]


@pytest.mark.parametrize(("seconds_left", "looked_ahead"), [(59.0, True), (20.0, False)])
def test_no_email_is_claimed_ahead_near_the_end_of_the_invocation(
    user: ApiClient,
    smtp: SmtpTestServer,
    aws_stack: StackResources,
    seconds_left: float,
    looked_ahead: bool,
) -> None:
    # GIVEN a batch of two and an invocation with `seconds_left`
    user.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=100))
    compose_many(user, 2)
    event, order = batch(aws_stack)
    first, second = jobs_of(event)
    time_left: Callable[[], float] = lambda: seconds_left  # noqa: E731

    # WHEN the first email is sent and the worker then ends
    with SendWorker(time_left=time_left) as worker:
        worker.prefetch(r["body"] for r in event["Records"])
        assert worker.process(first) == "sent"

    # THEN the second was claimed (and given back) only with time to spare
    expected = ["queued", "sending", "released"] if looked_ahead else ["queued"]
    assert history(order[1]) == expected
    assert statuses(order)[order[1]] == "queued"
    # AND the next delivery sends it normally
    with SendWorker() as worker:
        assert worker.process(second) == "sent"
    assert len(smtp.messages) == 2


def test_a_failure_while_preparing_ahead_fails_only_that_emails_record(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    # GIVEN three emails, the second of which has lost its body in S3 (a read that may work later)
    user.post("/v1/mailboxes", mailbox_body(smtp, rate_per_second=100))
    compose_many(user, 3)
    event, order = batch(aws_stack)
    MessageModel(ACCOUNT, order[1]).update(
        actions=[MessageModel.html.remove(), MessageModel.html_s3_key.set("bodies/missing.html")]
    )

    # WHEN the send function handles the batch
    result = load_handler("send").lambda_handler(event, FreshInvocation())

    # THEN only the second record fails (SQS retries it), its claim given back; the others are sent
    [failure] = result["batchItemFailures"]
    assert failure["itemIdentifier"] == event["Records"][1]["messageId"]
    assert statuses(order) == {order[0]: "sent", order[1]: "queued", order[2]: "sent"}
    assert history(order[1]) == ["queued", "sending", "released"]
    assert len(smtp.messages) == 2


def test_a_refused_login_is_tried_once_for_a_whole_batch(user: ApiClient, aws_stack: StackResources) -> None:
    # GIVEN a mailbox whose password the server stopped accepting after it was saved, and three emails
    credentials = Credentials(LOGIN, PASSWORD)
    with smtp_server(authenticator=credentials, auth_require_tls=False) as server:
        user.post("/v1/mailboxes", mailbox_body(server, rate_per_second=100))
        credentials.password = b"changed-since"
        connections = server.connections
        compose_many(user, 3)
        event, order = batch(aws_stack)

        # WHEN the send function handles the batch
        result = load_handler("send").lambda_handler(event, FreshInvocation())

        # THEN the server saw one connection (one login), and every email failed with the reason
        assert server.connections - connections == 1
    assert result["batchItemFailures"] == []
    assert statuses(order) == dict.fromkeys(order, "failed")
    for message_id in order:
        assert MessageModel.get(ACCOUNT, message_id).last_error.startswith("auth")  # type: ignore[union-attr]
    delete_batch(aws_stack, event)
