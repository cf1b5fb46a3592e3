"""Drafts (`/v1/drafts`, docs/letters.md#drafts): a compose saved to finish later.

A draft is a message in the Messages table with the status "draft": it is listed with the
by_status index like any status, has the id the email will keep when sent, and the send
worker never sends it (its claim takes only queued and scheduled messages). Its compose body
is kept as JSON (`draft_request`) without the HTML, which is stored as any message's is
(inline, or in S3 when large), so the widget opens it again exactly as it was left.

- save: the body is the compose body (`POST /v1/messages`), checked for its shape only: a
  draft may lack recipients, a subject or a mailbox. Its uploaded attachments are claimed at
  once, so they outlive the upload's expiry;
- edit: the whole compose body again (the widget sends what its window holds), by a put
  whose condition is that it is still a draft;
- delete: a conditional delete, only of a draft;
- send: the stored body composed (every rule of `POST /v1/messages`), the message put in the
  draft's place under its id by a conditional put, so two sends of one draft send once (the
  second answers 409).

A user sees their own drafts; an administrator every draft of the account. Another user's
draft answers 404.
"""

from __future__ import annotations

import json
from typing import Any

from pynamodb.exceptions import DeleteError, PutError

from mailer_core.accounts.auth import Caller
from mailer_core.adapters import s3
from mailer_core.base import limits
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Conflict, NotFound
from mailer_core.files import attachments
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.messages import compose as composing
from mailer_core.messages import queries
from mailer_core.messages.requests import parse_request
from mailer_core.messages.views import public_view
from mailer_core.store import message_state as state
from mailer_core.store import timeline
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import MessageModel, entity_key


def _view(message: MessageModel) -> dict[str, Any]:
    view = public_view(message)
    request = json.loads(str(message.draft_request or "{}"))
    request["html"] = _html(message)
    view["request"] = request  # the compose body to open the window with again
    return view


def _html(message: MessageModel) -> str:
    if message.html is not None:
        return str(message.html)
    return s3.get_html(str(message.html_s3_key)) if message.html_s3_key else ""


def _load(caller: Caller, draft_id: str) -> MessageModel:
    try:
        message = queries.load(caller, draft_id)
    except NotFound:
        raise NotFound("no such draft", field="draft_id") from None
    if message.status != state.DRAFT:
        raise NotFound("no such draft", field="draft_id")
    return message


def _build(
    caller: Caller, payload: Any, draft_id: str, clock: Clock, created: Any = None, owner: int | None = None
) -> MessageModel:
    """A draft's item from a compose body: shapes checked, attachments claimed. `owner` keeps
    an edited draft its user's (an administrator may edit another user's)."""
    owner = caller.user_id if owner is None else owner
    request = parse_request(payload)
    now = clock.now()
    files = attachments.validate_attachments(
        caller.account_id, request.attachments, limit_bytes=limits.EMAIL_ATTACHMENTS_BYTES, now=now
    )
    attachments.validate_links(request.attachment_links)
    mailbox_id = request.mailbox_id
    if mailbox_id is None:
        default = mailbox_connection.default_for_user(caller.account_id, owner)
        mailbox_id = default.mailbox_id if default is not None else ""
    rest = {k: v for k, v in payload.items() if k != "html"}
    inline = len(request.html.encode("utf-8")) <= s3.INLINE_LIMIT
    attachments.claim(caller.account_id, files, keep="message", now=now)
    return MessageModel(
        caller.account_id,
        draft_id,
        status=state.DRAFT,
        status_key=state.status_key(caller.account_id, state.DRAFT),
        user_id=owner,
        mailbox_id=mailbox_id,
        lane=request.lane,
        to=request.to,
        cc=request.cc,
        bcc=request.bcc,
        entity_type=request.entity[0] if request.entity else None,
        entity_id=request.entity[1] if request.entity else None,
        entity_key=entity_key(caller.account_id, request.entity),
        subject=request.subject,
        html=request.html if inline else None,
        html_s3_key=None if inline else s3.put_html(caller.account_id, draft_id, request.html),
        header_message_id="",  # given when it is sent
        send_at=request.send_at,
        created_at=created or now,
        updated_at=now,
        history=[timeline.entry(created or now, state.DRAFT, "saved as a draft")],
        attachments=[f.to_attribute() for f in files],
        attachment_links=list(request.attachment_links or []),
        template_id=request.template_id if isinstance(request.template_id, str) else None,
        draft_request=json.dumps(rest, ensure_ascii=False),
    )


def save(caller: Caller, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """`POST /v1/drafts`: a new draft."""
    draft = _build(caller, payload, clock.new_id(), clock)
    draft.save(condition=MessageModel.message_id.does_not_exist())
    return _view(draft)


def list_for(caller: Caller, *, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    """`GET /v1/drafts`: the caller's drafts (every one for an administrator), newest first."""
    return queries.list_for(caller, status=state.DRAFT, limit=limit, cursor=cursor)


def get(caller: Caller, draft_id: str) -> dict[str, Any]:
    return _view(_load(caller, draft_id))


def update(caller: Caller, draft_id: str, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """`PUT /v1/drafts/{id}`: the draft's whole compose body replaced, while it is a draft."""
    current = _load(caller, draft_id)
    draft = _build(caller, payload, draft_id, clock, created=current.created_at, owner=int(current.user_id))
    try:
        draft.save(condition=(MessageModel.status == state.DRAFT) & (MessageModel.user_id == current.user_id))
    except PutError as exc:
        if is_condition_failure(exc):
            raise Conflict("this draft was already sent or deleted", field="draft_id") from exc
        raise
    return _view(draft)


def delete(caller: Caller, draft_id: str) -> None:
    """`DELETE /v1/drafts/{id}`: only a draft; a sent one answers 409."""
    draft = _load(caller, draft_id)
    try:
        draft.delete(condition=MessageModel.status == state.DRAFT)
    except DeleteError as exc:
        if is_condition_failure(exc):
            raise Conflict("this draft was already sent", field="draft_id") from exc
        raise


def send(caller: Caller, draft_id: str, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """`POST /v1/drafts/{id}/send`: composed as `POST /v1/messages` would, under the draft's id."""
    draft = _load(caller, draft_id)
    payload = json.loads(str(draft.draft_request or "{}"))
    payload["html"] = _html(draft)
    return composing.compose_json(caller, payload, clock=clock, draft=draft)
