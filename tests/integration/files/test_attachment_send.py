"""Sending emails with attachments: S3 files and links, through real SMTP and HTTP servers."""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3
import pytest
from mailer_core.adapters import sqs
from mailer_core.adapters.web_fetch import Fetcher
from mailer_core.base.clock import FakeClock
from mailer_core.files import attachments
from mailer_core.sending.worker import SendWorker
from mailer_core.store.models import MessageModel

from devstack.resources import StackResources
from tests.support.api_client import ApiClient, load_handler
from tests.support.fixtures.attachments import ACCOUNT, mailbox_body, upload
from tests.support.link_servers import LinkServer, Network, Route, link_server
from tests.support.smtp_servers import SmtpTestServer
from tests.support.sqs import deliver

OFFER = b"%PDF-1.7 " + os.urandom(200_000)
PRICE = "Товар;Цена\nСтол;100\n".encode()


@pytest.fixture
def sender(user: ApiClient, smtp: SmtpTestServer) -> ApiClient:
    assert user.post("/v1/mailboxes", mailbox_body(smtp)).status == 201
    return user


@pytest.fixture
def docs() -> Any:
    routes = {
        "/deal/42/invoice": Route(
            body=b"%PDF invoice",
            headers={
                "Content-Type": "application/pdf",
                "Content-Disposition": "attachment; filename*=UTF-8''%D0%A1%D1%87%D1%91%D1%82%2042.pdf",
            },
        ),
        "/missing.pdf": Route(status=404, body=b"gone"),
        "/busy.pdf": Route(status=503, body=b"later"),
    }
    with link_server(routes) as server:
        yield server


@pytest.fixture
def network(docs: LinkServer) -> Network:
    """docs.example.com is public and served by `docs`; intranet.example.com is private."""
    net = Network()
    net.publish("docs.example.com", docs)
    net.names["intranet.example.com"] = ["10.20.30.40"]
    return net


@pytest.fixture
def worker(network: Network) -> Any:
    fetcher = Fetcher(resolve=network.resolve, connect=network.connect, timeout=5)
    with SendWorker(clock=FakeClock(), fetcher=fetcher) as running:
        yield running


def compose(client: ApiClient, **body: Any) -> str:
    reply = client.post(
        "/v1/messages", {"to": ["client@example.com"], "subject": "Offer", "html": "<p>Hi</p>", **body}
    )
    assert reply.status == 202, reply.body
    return str(reply.json()["id"])


def the_job(stack: StackResources) -> sqs.SendJob:
    sqs_client = boto3.client("sqs")
    [message] = sqs_client.receive_message(QueueUrl=stack.refs["SendQueue"], MaxNumberOfMessages=10)[
        "Messages"
    ]
    sqs_client.delete_message(QueueUrl=stack.refs["SendQueue"], ReceiptHandle=message["ReceiptHandle"])
    return sqs.SendJob.from_body(message["Body"])


def stored(message_id: str) -> MessageModel:
    return MessageModel.get(ACCOUNT, message_id, consistent_read=True)


def test_the_send_function_attaches_uploaded_files_with_their_cyrillic_names(
    sender: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    # GIVEN a message with two uploaded files
    offer = upload(sender, aws_stack, "Коммерческое предложение.pdf", OFFER, "application/pdf")
    price = upload(sender, aws_stack, "Прайс-лист.csv", PRICE, "text/csv")
    message_id = compose(
        sender, subject="Предложение", attachments=[{"upload_id": offer}, {"upload_id": price}]
    )

    # WHEN the send function takes it from the queue
    result = deliver(load_handler("send"), aws_stack.refs["SendQueue"], aws_stack.attrs[("SendQueue", "Arn")])

    # THEN the email arrives with the body first and both files, bytes and names intact
    assert result["batchItemFailures"] == []
    [received] = smtp.messages
    parsed = received.parsed()
    assert parsed.get_content_type() == "multipart/mixed"
    body, *files = parsed.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [(f.get_filename(), f.get_content_type()) for f in files] == [
        ("Коммерческое предложение.pdf", "application/pdf"),
        ("Прайс-лист.csv", "text/csv"),
    ]
    assert [f.get_payload(decode=True) for f in files] == [OFFER, PRICE]
    assert b"filename*0*=utf-8''" in received.data  # RFC 2231
    assert stored(message_id).status == "sent"


def test_a_link_is_downloaded_at_send_time_and_attached_after_the_uploads(
    sender: ApiClient,
    smtp: SmtpTestServer,
    aws_stack: StackResources,
    worker: SendWorker,
    docs: LinkServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    offer = upload(sender, aws_stack, "offer.pdf", OFFER, "application/pdf")
    compose(
        sender,
        attachments=[{"upload_id": offer}],
        attachment_links=["http://docs.example.com/deal/42/invoice"],
    )

    assert worker.process(the_job(aws_stack)) == "sent"

    files = list(smtp.messages[0].parsed().iter_attachments())
    assert [(f.get_filename(), f.get_payload(decode=True)) for f in files] == [
        ("offer.pdf", OFFER),
        ("Счёт 42.pdf", b"%PDF invoice"),
    ]
    assert docs.requests == ["/deal/42/invoice"] and docs.hosts == ["docs.example.com"]
    assert list(tmp_path.iterdir()) == []  # the downloaded file and the spool are gone


@pytest.mark.parametrize(
    ("link", "outcome", "status", "words"),
    [
        ("http://docs.example.com/missing.pdf", "failed", "failed", "the server answered 404"),
        ("http://intranet.example.com/secret.pdf", "failed", "failed", "private address (10.20.30.40)"),
        ("http://docs.example.com/busy.pdf", "retrying", "queued", "the server answered 503"),
    ],
)
def test_a_link_that_cannot_be_downloaded_fails_the_message_or_retries_it(
    link: str,
    outcome: str,
    status: str,
    words: str,
    sender: ApiClient,
    smtp: SmtpTestServer,
    aws_stack: StackResources,
    worker: SendWorker,
) -> None:
    message_id = compose(sender, attachment_links=[link])  # a name's address is checked at send time

    assert worker.process(the_job(aws_stack)) == outcome

    message = stored(message_id)
    assert message.status == status
    assert words in (message.last_error or "") and "could not download" in (message.last_error or "")
    assert smtp.messages == []
    if outcome == "retrying":  # back on the queue with a delay, not at once
        attrs = boto3.client("sqs").get_queue_attributes(
            QueueUrl=aws_stack.refs["SendQueue"], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        )
        assert attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"


def test_a_file_removed_or_replaced_after_compose_fails_the_message_with_the_reason(
    sender: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, worker: SendWorker
) -> None:
    s3 = boto3.client("s3")
    bucket = aws_stack.refs["BodiesBucket"]
    for change, words in [
        ("delete", "is no longer stored"),
        ("replace", "was replaced after it was attached"),
    ]:
        upload_id = upload(sender, aws_stack, "offer.pdf", OFFER, "application/pdf")
        message_id = compose(sender, attachments=[{"upload_id": upload_id}])
        key = attachments.AttachedFile.from_attribute(stored(message_id).attachments[0]).key
        if change == "delete":
            s3.delete_object(Bucket=bucket, Key=key)
        else:
            s3.put_object(Bucket=bucket, Key=key, Body=b"something else")

        assert worker.process(the_job(aws_stack)) == "failed"
        assert words in (stored(message_id).last_error or "")
    assert smtp.messages == []


def test_links_share_what_the_uploads_leave_of_the_100_mb_and_need_filled_in_variables(
    network: Network, tmp_path: Path
) -> None:
    fetcher = Fetcher(resolve=network.resolve, connect=network.connect, timeout=5)
    uploaded = attachments.AttachedFile(
        "u1", "uploads/1/u1/a.bin", "a.bin", "application/octet-stream", size=95
    )
    invoice = "http://docs.example.com/deal/42/invoice"  # 12 bytes

    with ExitStack() as scratch:
        loaded = attachments.load([uploaded], [invoice], fetcher=fetcher, scratch=scratch, limit_bytes=107)
        assert [a.filename for a in loaded] == ["a.bin", "Счёт 42.pdf"]
        with pytest.raises(attachments.AttachmentFailure, match="does not fit") as too_big:
            attachments.load([uploaded], [invoice], fetcher=fetcher, scratch=scratch, limit_bytes=106)
        with pytest.raises(attachments.AttachmentFailure, match="still holds a variable") as unfilled:
            attachments.load([], ["{{lead.cf_555}}"], fetcher=fetcher, scratch=scratch)

    assert not too_big.value.retryable and not unfilled.value.retryable
