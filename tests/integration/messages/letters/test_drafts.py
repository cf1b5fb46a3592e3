"""Drafts through the api function: save, list, edit, delete, send (docs/letters.md#drafts)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from mailer_core.accounts.auth import Caller
from mailer_core.base.errors import Conflict
from mailer_core.messages import compose as composing
from mailer_core.store.models import MessageModel

from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.core import ACCOUNT, mailbox_body


@pytest.fixture
def mailbox_id(user: ApiClient) -> str:
    return str(user.post("/v1/mailboxes", mailbox_body()).json()["id"])


def send_jobs(stack: StackResources) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    got = sqs.receive_message(QueueUrl=stack.refs["SendQueue"], MaxNumberOfMessages=10, VisibilityTimeout=0)
    return got.get("Messages", [])


def test_a_draft_without_recipients_is_saved_listed_and_opened_again_as_it_was(
    user: ApiClient, mailbox_id: str, aws_stack: StackResources
) -> None:
    # WHEN a compose window is saved half-written (no recipients yet)
    saved = user.post("/v1/drafts", {"subject": "Offer {{ lead.name }}", "html": "<p>Dear</p>"})
    # THEN it is a draft with the user's default mailbox, nothing is queued
    assert saved.status == 201, saved.body
    draft = saved.json()
    assert draft["status"] == "draft" and draft["mailbox_id"] == mailbox_id
    assert draft["request"] == {"subject": "Offer {{ lead.name }}", "html": "<p>Dear</p>"}
    assert send_jobs(aws_stack) == []
    # AND the drafts list and the draft itself show it
    assert [d["id"] for d in user.get("/v1/drafts").json()["items"]] == [draft["id"]]
    again = user.get(f"/v1/drafts/{draft['id']}").json()
    assert again["request"]["html"] == "<p>Dear</p>"


def test_a_draft_is_private_to_its_user_but_an_administrator_sees_it(
    user: ApiClient, colleague: ApiClient, admin: ApiClient, mailbox_id: str
) -> None:
    draft = user.post("/v1/drafts", {"subject": "s"}).json()
    assert colleague.get(f"/v1/drafts/{draft['id']}").status == 404
    assert colleague.get("/v1/drafts").json()["items"] == []
    assert colleague.delete(f"/v1/drafts/{draft['id']}").status == 404
    assert admin.get(f"/v1/drafts/{draft['id']}").status == 200


def test_editing_replaces_the_whole_body_and_deleting_removes_it(user: ApiClient, mailbox_id: str) -> None:
    draft = user.post("/v1/drafts", {"subject": "first", "to": ["a@example.com"]}).json()
    edited = user.put(f"/v1/drafts/{draft['id']}", {"subject": "second", "html": "<p>x</p>"})
    assert edited.status == 200, edited.body
    assert edited.json()["request"] == {"subject": "second", "html": "<p>x</p>"}
    assert edited.json()["to"] == [] and edited.json()["created_at"] == draft["created_at"]
    assert user.delete(f"/v1/drafts/{draft['id']}").status == 204
    assert user.get(f"/v1/drafts/{draft['id']}").status == 404


def test_a_malformed_draft_is_refused_naming_the_field(user: ApiClient, mailbox_id: str) -> None:
    reply = user.post("/v1/drafts", {"to": ["not an address"]})
    assert reply.status == 422 and reply.json()["field"].startswith("to")


def test_sending_a_draft_queues_it_under_its_id_once(
    user: ApiClient, mailbox_id: str, aws_stack: StackResources
) -> None:
    draft = user.post("/v1/drafts", {"subject": "Hello", "html": "<p>Hi</p>", "to": ["c@example.com"]}).json()
    sent = user.post(f"/v1/drafts/{draft['id']}/send")
    assert sent.status == 202, sent.body
    message = sent.json()
    assert message["id"] == draft["id"] and message["status"] == "queued"
    assert message["message_id_header"] == f"<{draft['id']}@example.com>"
    assert [h["event"] for h in message["history"]] == ["draft", "queued"]
    assert len(send_jobs(aws_stack)) == 1
    # AND it is no draft any more: a second send, an edit or a delete find no draft
    assert user.post(f"/v1/drafts/{draft['id']}/send").status == 404
    assert user.put(f"/v1/drafts/{draft['id']}", {"subject": "x"}).status == 404
    assert user.get("/v1/drafts").json()["items"] == []


def test_two_sends_of_one_draft_racing_send_it_once(
    user: ApiClient, mailbox_id: str, aws_stack: StackResources
) -> None:
    # GIVEN two sends that both read the draft before either wrote (the second holds a stale copy)
    draft = user.post("/v1/drafts", {"subject": "Hello", "html": "<p>Hi</p>", "to": ["c@example.com"]}).json()
    stale = MessageModel.get(ACCOUNT, draft["id"], consistent_read=True)
    assert user.post(f"/v1/drafts/{draft['id']}/send").status == 202
    # WHEN the second one composes from its stale copy
    payload = {"subject": "Hello", "html": "<p>Hi</p>", "to": ["c@example.com"]}
    with pytest.raises(Conflict):
        composing.compose_json(Caller(ACCOUNT, "example", 501, False), payload, draft=stale)
    # THEN one email is queued, and the message is the first send's
    assert len(send_jobs(aws_stack)) == 1
    assert MessageModel.get(ACCOUNT, draft["id"], consistent_read=True).status == "queued"


def test_a_draft_that_cannot_be_sent_says_why_and_stays_a_draft(user: ApiClient, mailbox_id: str) -> None:
    draft = user.post("/v1/drafts", {"subject": "no recipients yet"}).json()
    refused = user.post(f"/v1/drafts/{draft['id']}/send")
    assert refused.status == 422 and refused.json()["field"] == "to"
    assert user.get(f"/v1/drafts/{draft['id']}").json()["status"] == "draft"


def test_a_sent_message_cannot_be_deleted_as_a_draft(user: ApiClient, mailbox_id: str) -> None:
    message = user.post("/v1/messages", {"to": ["c@example.com"], "subject": "s", "html": "h"}).json()
    assert user.delete(f"/v1/drafts/{message['id']}").status == 404
    assert user.get(f"/v1/messages/{message['id']}").status == 200
