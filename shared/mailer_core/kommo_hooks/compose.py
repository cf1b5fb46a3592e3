"""Composing the email of a pipeline or Salesbot job (`automatic_send.AutoSendJob`).

1. The account, and the entity re-read through the Kommo API: the hook is trusted for
   nothing but ids, and an entity Kommo no longer has is dropped (`Skip`), never sent to.
2. The sender: the action's mailbox, or the default mailbox of the entity's responsible user.
3. The recipients: the action's `to` (an address or a variable, filled from the entity now),
   otherwise the template's own (the lead's contacts by default).
4. The template is composed as the responsible user with an administrator's reach (any
   template and mailbox of the account), its triggers and attachments included, `send_at` =
   when the hook came + the action's delay, and the message id the hook derived from the
   event: a redelivered job meets the stored message (`messages.AlreadyComposed`) and sends
   nothing twice.

Failures that retrying cannot fix (the template or mailbox is gone, nobody to write to, the
account was disconnected) raise `Skip` with the reason; the caller keeps it on the event's
fact in the Automation table and logs it. Kommo being busy or down (429, 5xx, a block's
cool-off) and AWS errors propagate, so the queue tries again (five receives, then the DLQ).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.accounts.actors import Actor
from mailer_core.base import validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Conflict, MailerError, UpstreamError
from mailer_core.base.limits import MAX_RECIPIENTS
from mailer_core.base.logs import logger
from mailer_core.kommo import accounts as kommo_accounts
from mailer_core.kommo import client as kommo
from mailer_core.kommo import errors as kommo_errors
from mailer_core.kommo_hooks.jobs import AutoSendJob
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.messages import compose as messages
from mailer_core.messages.requests import ComposeRequest
from mailer_core.rendering.source_checks import has_variables
from mailer_core.store.message_state import is_condition_failure
from mailer_core.store.models import AccountModel, AutomationFactModel, MailboxModel


class Skip(Exception):
    """The job cannot be done and retrying will not help; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Outcome:
    state: str  # composed, duplicate
    message_id: str
    status: str | None = None  # the new message's status: queued, scheduled (failed if queueing failed)


def compose_for(job: AutoSendJob, *, clock: Clock = SYSTEM_CLOCK) -> Outcome:
    """Compose the job's email (see the module docstring); `Skip` when it cannot be done."""
    if job.entity_type not in kommo.ENTITY_TYPES:
        raise Skip(f"Mailer sends only for leads, contacts and companies, not {job.entity_type}")
    try:
        account = AccountModel.get(job.account_id, consistent_read=True)
    except DoesNotExist:
        raise Skip("the account is not installed") from None
    try:
        client = kommo_accounts.client_for_account(account, clock=clock)
        record = client.get_entity(job.entity_type, job.entity_id)  # type: ignore[arg-type]
    except kommo_errors.KommoNotFound:
        raise Skip(f"Kommo has no {job.entity_type} {job.entity_id} any more: nothing was sent") from None
    except (kommo_errors.KommoError, Conflict) as exc:
        if kommo_errors.is_retryable(exc):
            raise
        raise Skip(exc.message) from None
    responsible = _positive(record.get("responsible_user_id"))
    mailbox = _sender(job, responsible)
    actor = Actor.automatic(job.account_id, responsible or int(mailbox.user_id))
    fields: dict[str, Any] = {
        "template_id": job.settings.template_id,
        "entity": (job.entity_type, job.entity_id),
        "mailbox_id": mailbox.mailbox_id,
    }
    try:
        if job.settings.to:
            fields["to"] = _recipients(job, mailbox, clock)
        if job.settings.delay:
            fields["send_at"] = datetime.fromisoformat(job.received_at) + timedelta(
                seconds=job.settings.delay
            )
        view = messages.compose(
            ComposeRequest.of(**fields), actor, clock=clock, message_id=job.message_id, origin=job.origin
        )
    except messages.AlreadyComposed:
        return Outcome("duplicate", job.message_id)
    except MailerError as exc:
        # Kommo busy or down is retried; any other UpstreamError comes from compose after it
        # stored the message as failed.
        if kommo_errors.is_retryable(exc):
            raise
        if isinstance(exc, UpstreamError) and exc.details.get("message_id") == job.message_id:
            return Outcome("composed", job.message_id, "failed")  # stored, failed: the queue refused it
        raise Skip(f"{exc.field}: {exc.message}" if exc.field else exc.message) from None
    return Outcome("composed", job.message_id, str(view.get("status")))


def record(job: AutoSendJob, state: str, detail: str) -> None:
    """Keep what became of the event on its fact (best effort: the logs have it too)."""
    try:
        AutomationFactModel(job.account_id, job.fact_key).update(
            actions=[AutomationFactModel.state.set(state), AutomationFactModel.detail.set(detail[:1000])],
            condition=AutomationFactModel.fact_key.exists(),  # never a fact without its expiry
        )
    except UpdateError as exc:
        if not is_condition_failure(exc):
            logger.exception("could not record a pipeline outcome", extra={"account_id": job.account_id})
    except Exception:
        logger.exception("could not record a pipeline outcome", extra={"account_id": job.account_id})


def _positive(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _sender(job: AutoSendJob, responsible: int | None) -> MailboxModel:
    if job.settings.mailbox_id:
        mailbox = mailbox_connection.find(job.account_id, job.settings.mailbox_id)
        if mailbox is None:
            raise Skip(f"the action's mailbox {job.settings.mailbox_id} no longer exists")
        return mailbox
    if responsible is None:
        raise Skip(
            f"{job.entity_type} {job.entity_id} has no responsible user: choose a mailbox in the action"
        )
    mailbox = mailbox_connection.default_for_user(job.account_id, responsible)
    if mailbox is None:
        raise Skip(
            f"the responsible user {responsible} has no default mailbox: mark one, or choose a mailbox"
            " in the action"
        )
    return mailbox


def _recipients(job: AutoSendJob, mailbox: MailboxModel, clock: Clock) -> list[str]:
    """The action's `to` for this entity: literal addresses as they are, variables filled in now."""
    from mailer_core.rendering import personalize as personalization  # cold start: jinja2, babel

    setting = str(job.settings.to)
    if not has_variables(setting):  # literal addresses, checked as the API checks its `to`
        literal = [p.strip() for p in re.split(r"[,;]", setting) if p.strip()]
        return validation.email_list({"to": literal}, "to", max_items=MAX_RECIPIENTS)
    resolved = personalization.resolve_addresses(
        {"to": [setting]},
        account_id=job.account_id,
        entity=(job.entity_type, job.entity_id),
        mailbox=mailbox,
        clock=clock,
    )["to"]
    if not resolved:
        raise Skip(f"the action's recipient {setting!r} gives no address for this {job.entity_type[:-1]}")
    return resolved
