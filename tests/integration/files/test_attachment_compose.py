"""Attaching uploads to a message (and a template): checked, limited, kept."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from mailer_core.accounts.auth import Caller
from mailer_core.adapters import s3
from mailer_core.base import limits
from mailer_core.base.clock import FakeClock
from mailer_core.base.errors import InvalidInput, PayloadTooLarge
from mailer_core.files import attachments, uploads
from mailer_core.messages import compose as messages
from mailer_core.store.models import MessageModel, UploadModel

from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.attachments import ACCOUNT, ask_upload, mailbox_body, upload
from tests.support.smtp_servers import SmtpTestServer

MB = 1024 * 1024


@pytest.fixture
def sender(user: ApiClient, smtp: SmtpTestServer) -> ApiClient:
    """A user with a default mailbox."""
    assert user.post("/v1/mailboxes", mailbox_body(smtp)).status == 201
    return user


def compose(client: ApiClient, **body: Any) -> Any:
    return client.post(
        "/v1/messages", {"to": ["client@example.com"], "subject": "Offer", "html": "<p>Hi</p>", **body}
    )


def retention(stack: StackResources, upload_id: str) -> tuple[str, str]:
    """(the record's retention, the S3 object's tag)."""
    record = UploadModel.get(ACCOUNT, upload_id)
    tags = boto3.client("s3").get_object_tagging(Bucket=stack.refs["BodiesBucket"], Key=record.s3_key)[
        "TagSet"
    ]
    return str(record.retention), next((t["Value"] for t in tags if t["Key"] == s3.RETENTION_TAG), "")


def big_uploads(client: ApiClient, stack: StackResources, sizes: list[int]) -> list[str]:
    """Uploads of these sizes, really in S3 (one file written, the others copied inside moto)."""
    s3 = boto3.client("s3", config=Config(request_checksum_calculation="when_required"))  # 6x faster
    bucket = stack.refs["BodiesBucket"]
    ids, first_key = [], None
    for size in sizes:
        created = ask_upload(client, f"part-{len(ids)}.bin", size)
        key = created["upload"]["fields"]["key"]
        if first_key is None:
            s3.put_object(Bucket=bucket, Key=key, Body=b"\0" * size)
            first_key = key
        else:
            s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": first_key})
        ids.append(created["id"])
    return ids


def test_attachments_over_100_mb_answer_413_naming_the_limit_and_the_total(
    sender: ApiClient, aws_stack: StackResources
) -> None:
    # GIVEN two uploaded files of 50 MB and one byte each
    ids = big_uploads(sender, aws_stack, [50 * MB + 1, 50 * MB + 1])

    # WHEN a message attaches both
    reply = compose(sender, attachments=[{"upload_id": i} for i in ids])

    # THEN 413 names the field, the limit and the total, and nothing was stored or kept
    assert reply.status == 413
    body = reply.json()
    assert (body["error"], body["field"]) == ("too_large", "attachments")
    assert (body["limit_bytes"], body["total_bytes"]) == (100 * MB, 100 * MB + 2)
    assert "100 MB" in body["message"]
    assert sender.get("/v1/messages").json()["items"] == []
    assert retention(aws_stack, ids[0]) == ("pending", "")

    # AND one of them alone is fine
    assert compose(sender, attachments=[{"upload_id": ids[0]}]).status == 202


def test_a_template_may_attach_at_most_50_mb(sender: ApiClient, aws_stack: StackResources) -> None:
    ids = big_uploads(sender, aws_stack, [25 * MB + 1, 25 * MB + 1])
    items = [{"upload_id": i} for i in ids]

    with pytest.raises(PayloadTooLarge) as too_large:
        attachments.validate_attachments(
            ACCOUNT,
            items,
            limit_bytes=limits.TEMPLATE_ATTACHMENTS_BYTES,
            what="the attachments of a template",
        )

    assert too_large.value.status == 413
    assert too_large.value.to_body()["limit_bytes"] == 50 * MB
    assert "the attachments of a template may take up to 50 MB" in too_large.value.message
    assert len(attachments.validate_attachments(ACCOUNT, items[:1], limit_bytes=50 * MB)) == 1


def test_a_file_bigger_than_declared_is_refused_even_if_s3_let_it_in(
    sender: ApiClient, aws_stack: StackResources
) -> None:
    # moto does not enforce the POST policy's content-length-range; the compose check does
    created = ask_upload(sender, "small.pdf", 10)
    boto3.client("s3").put_object(
        Bucket=aws_stack.refs["BodiesBucket"], Key=created["upload"]["fields"]["key"], Body=b"x" * 11
    )

    reply = compose(sender, attachments=[{"upload_id": created["id"]}])

    assert reply.status == 413
    assert reply.json()["field"] == "attachments[0].upload_id"
    assert (reply.json()["limit_bytes"], reply.json()["total_bytes"]) == (10, 11)


def test_only_the_accounts_own_uploads_that_really_arrived_can_be_attached(
    sender: ApiClient, stranger: ApiClient, aws_stack: StackResources
) -> None:
    mine = upload(sender, aws_stack, "a.pdf", b"%PDF")
    theirs = upload(stranger, aws_stack, "b.pdf", b"%PDF")
    never_uploaded = ask_upload(sender, "c.pdf", 4)["id"]

    cases = [
        ([{"upload_id": theirs}], "attachments[0].upload_id", "no such upload"),
        ([{"upload_id": mine}, {"upload_id": never_uploaded}], "attachments[1].upload_id", "not arrived"),
        ([{"upload_id": mine}, {"upload_id": mine}], "attachments[1].upload_id", "twice"),
        ([mine], "attachments[0]", "upload_id"),
        ([{"upload_id": mine, "size": 1}], "attachments[0]", "upload_id"),
        ({"upload_id": mine}, "attachments", "list"),
        ([{"upload_id": mine}] * 21, "attachments", "at most 20"),
    ]
    for items, field, words in cases:
        reply = compose(sender, attachments=items)
        assert (reply.status, reply.json()["field"]) == (422, field), items
        assert words in reply.json()["message"]
    assert sender.get("/v1/messages").json()["items"] == []


def test_an_unused_upload_expires_after_a_day(sender: ApiClient, aws_stack: StackResources) -> None:
    clock = FakeClock()
    caller = Caller(account_id=ACCOUNT, user_id=501, subdomain="mailerdemo", is_admin=False)
    created = uploads.create(caller, {"filename": "a.pdf", "size": 4}, clock=clock)
    boto3.client("s3").put_object(
        Bucket=aws_stack.refs["BodiesBucket"], Key=created["upload"]["fields"]["key"], Body=b"%PDF"
    )
    clock.advance(timedelta(days=1, seconds=1).total_seconds())

    with pytest.raises(InvalidInput, match="expired") as expired:
        messages.compose_json(
            caller, {"to": ["c@example.com"], "attachments": [{"upload_id": created["id"]}]}, clock=clock
        )
    assert expired.value.field == "attachments[0].upload_id"


def test_a_message_keeps_its_files_and_a_template_keeps_them_longer(
    sender: ApiClient, aws_stack: StackResources
) -> None:
    first = upload(sender, aws_stack, "Прайс.xlsx", b"PK\x03\x04 price")
    second = upload(sender, aws_stack, "logo.png", b"\x89PNG", "image/png")
    assert retention(aws_stack, first) == ("pending", "")  # moto ignores the POST's tagging field

    reply = compose(sender, attachments=[{"upload_id": first}, {"upload_id": second}])
    assert reply.status == 202, reply.body

    # the message holds what it needs to read exactly these files back
    stored = MessageModel.get(ACCOUNT, reply.json()["id"])
    files = [attachments.AttachedFile.from_attribute(a) for a in stored.attachments]
    assert [(f.filename, f.size, f.content_type) for f in files] == [
        ("Прайс.xlsx", 10, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("logo.png", 4, "image/png"),
    ]
    assert all(f.etag for f in files)
    assert (
        sender.get(f"/v1/messages/{reply.json()['id']}").json()["attachments"][0]["filename"] == "Прайс.xlsx"
    )
    record = UploadModel.get(ACCOUNT, first)
    assert retention(aws_stack, first) == ("message", "message")
    kept_until = record.created_at + timedelta(days=s3.MESSAGE_DAYS)
    assert abs((record.expires_at - kept_until).total_seconds()) < 1  # a TTL keeps whole seconds

    # a template's claim keeps the file without end; a later message's claim never shortens it
    attachments.claim(ACCOUNT, files[:1], keep="template", now=record.created_at)
    assert retention(aws_stack, first) == ("template", "template")
    assert UploadModel.get(ACCOUNT, first).expires_at is None
    assert compose(sender, attachments=[{"upload_id": first}]).status == 202
    assert retention(aws_stack, first) == ("template", "template")


def test_links_are_checked_when_composed_and_variables_when_sent(sender: ApiClient) -> None:
    refused = [
        ("http://127.0.0.1/offer.pdf", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/a.pdf", "private"),
        ("ftp://files.example.com/a.pdf", "http and https"),
        ("https://user:secret@files.example.com/a.pdf", "user name or password"),
        ("https://" + "a" * 2050, "2048"),
    ]
    for link, words in refused:
        reply = compose(sender, attachment_links=["https://files.example.com/ok.pdf", link])
        assert (reply.status, reply.json()["field"]) == (422, "attachment_links[1]"), link
        assert words in reply.json()["message"]

    reply = compose(
        sender,
        attachment_links=[
            "https://files.example.com/offer.pdf",
            "{{lead.cf_555}}",
            " {doc_pdf_download_link} ",
        ],
    )

    assert reply.status == 202, reply.body
    assert reply.json()["attachment_links"] == [
        "https://files.example.com/offer.pdf",
        "{{lead.cf_555}}",
        "{doc_pdf_download_link}",
    ]
    assert (
        compose(sender, attachment_links=["https://x.example.com/"] * 11).json()["field"]
        == "attachment_links"
    )


def test_the_body_is_limited_to_8_mb_with_a_413_naming_it(sender: ApiClient) -> None:
    reply = compose(sender, html="x" * (8 * MB + 1))

    assert reply.status == 413
    assert (reply.json()["field"], reply.json()["limit_bytes"]) == ("html", 8 * MB)
