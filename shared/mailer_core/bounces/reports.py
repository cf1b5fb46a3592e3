"""Act on a report read from a mailbox's inbox (mailer_core.bounces.reading).

For each recipient the report names, when our email was sent to that address:
- the report is recorded on the message (a bounce with its reason, a delay, a complaint or a
  delivery receipt), once: the update is conditioned on a key of the report (`bounce_keys`),
  so reading the same report again, or a second copy of it, changes nothing;
- the suppression list counts it when its reason speaks against the address (classify's
  `DECISIONS`: gone at once, a full mailbox on repeat, a complaint at once);
- a refusal for the sender's sake (DMARC, block lists, spam) is noted on the mailbox's health
  and never suppresses the recipient;
- an email given up for good runs the message's "failed" triggers once; a complaint runs them
  only where the account's settings say so.
A report about an address our email was not sent to, or about no email of this mailbox,
changes nothing. Automatic replies are neither bounces nor replies and are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.accounts import access
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.logs import logger
from mailer_core.bounces import classify, reading
from mailer_core.bounces.reading import RecipientFailure, Report
from mailer_core.events import message_events
from mailer_core.mailboxes import health
from mailer_core.messages import suppressions
from mailer_core.store import timeline
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import BounceEntry, HistoryEntry, MailboxModel, MessageModel

Outcome = Literal[
    "bounced",
    "delayed",
    "complained",
    "delivered",
    "duplicate",
    "unmatched",
    "unknown_recipient",
    "auto_reply",
]
_OUR_MESSAGE_ID = re.compile(rf"<({reading.ULID})@([^<>\s]+)>")


def find_message(
    mailbox: MailboxModel, message_ids: Iterable[str], tokens: Iterable[str] = ()
) -> MessageModel | None:
    """Our message sent from `mailbox` that these Message-IDs (or envelope tokens) name."""
    account_id = int(mailbox.account_id)
    candidates: list[tuple[str, str | None]] = []
    for message_id in message_ids:
        match = _OUR_MESSAGE_ID.fullmatch(message_id.strip())
        if match:
            candidates.append((match.group(1).upper(), message_id.strip()))
    candidates += [(token, None) for token in tokens]
    for ulid, header in dict.fromkeys(candidates):
        try:
            message = MessageModel.get(account_id, ulid, consistent_read=True)
        except DoesNotExist:
            continue
        if message.mailbox_id != mailbox.mailbox_id:
            continue
        if header is not None and str(message.header_message_id).lower() != header.lower():
            continue
        return message
    return None


def record(mailbox: MailboxModel, report: Report, *, clock: Clock = SYSTEM_CLOCK) -> list[Outcome]:
    """Apply a report to the message it is about; one outcome per recipient it names."""
    if report.kind == "auto_reply":
        return ["auto_reply"]
    message = find_message(mailbox, report.message_ids, report.tokens)
    if message is None:
        logger.info("a report about no message of this mailbox", extra={"report": report.report_id})
        return ["unmatched"]
    ours = {str(a).lower() for a in (*message.to, *(message.cc or []), *(message.bcc or []))}
    outcomes: list[Outcome] = []
    for failure in report.failures:
        if failure.address not in ours:
            outcomes.append("unknown_recipient")  # forged, forwarded or misread: not ours to judge
            continue
        outcomes.append(_record_failure(mailbox, message, report, failure, clock.now()))
    return outcomes


def _record_failure(
    mailbox: MailboxModel, message: MessageModel, report: Report, failure: RecipientFailure, now: datetime
) -> Outcome:
    suppressed = _judge_address(mailbox, message, report, failure, now)
    event = _event_of(report, failure)
    key = _key(report, failure)
    words = " ".join(part for part in (failure.status, failure.diagnostic) if part) or "no reason given"
    detail = f"{failure.address}: {failure.reason}: {words}"[:1000]
    if suppressed:
        detail = f"{detail[:960]} (address suppressed)"
    if not _record_on_message(message, report, failure, key, timeline.entry(now, event, detail), now):
        return "duplicate"
    logger.info("a report recorded", extra={"event": event, "reason": failure.reason})
    if event == "bounced" or (event == "complained" and _complaints_fail(message)):
        message_events.on_message_failed(message, f"{event}: {detail}")
    return event


def _event_of(
    report: Report, failure: RecipientFailure
) -> Literal["bounced", "delayed", "complained", "delivered"]:
    if report.kind == "complaint":
        return "complained"
    if report.kind == "receipt" or failure.reason == "delivered":
        return "delivered"
    return "bounced" if failure.permanent else "delayed"


def _key(report: Report, failure: RecipientFailure) -> str:
    """Once per address for a final answer (a second report of it is a copy); per report for a delay."""
    if report.kind == "complaint":
        return f"complaint#{failure.address}"
    if report.kind == "receipt":
        return f"delivered#{failure.address}"
    if failure.permanent:
        return f"hard#{failure.address}"
    return f"soft#{failure.address}#{report.report_id}"


def _judge_address(
    mailbox: MailboxModel, message: MessageModel, report: Report, failure: RecipientFailure, now: datetime
) -> bool:
    """Count the report against the address, or against the sender; True when it is suppressed."""
    words = failure.diagnostic or ""
    if failure.permanent and failure.reason in classify.SENDER_SIDE:
        health.note_refusal(
            mailbox,
            reason=failure.reason,
            recipient=failure.address,
            words=words,
            status=failure.status,
            at=now,
        )
        return False
    decision = classify.DECISIONS[failure.reason]
    if decision == "keep" or (decision == "on_repeat" and not failure.permanent):
        return False
    counted = suppressions.Report(
        key=f"{failure.reason}#{message.message_id}",  # one count per email, however many copies
        reason=failure.reason,
        decision=decision,
        at=now,
        status=failure.status,
        words=words or None,
        message_id=message.message_id,
        mailbox_id=mailbox.mailbox_id,
    )
    return suppressions.record(int(message.account_id), failure.address, counted)


def _record_on_message(
    message: MessageModel,
    report: Report,
    failure: RecipientFailure,
    key: str,
    history: HistoryEntry,
    now: datetime,
) -> bool:
    """The report on the message, once per key; False when it was there already."""
    entry = BounceEntry(
        at=now,
        address=failure.address,
        permanent=failure.permanent,
        reason=failure.reason,
        status=failure.status,
        diagnostic=(failure.diagnostic or "")[:1000] or None,
        reported_by=report.reporting_mta,
    )
    actions = [
        MessageModel.bounce_keys.add({key}),
        timeline.history_append(history),
        MessageModel.updated_at.set(now),
    ]
    if report.kind == "bounce" and failure.reason != "delivered":
        actions.append(MessageModel.bounces.set((MessageModel.bounces | []).append([entry])))
    try:
        message.update(actions=actions, condition=~MessageModel.bounce_keys.contains(key))
    except UpdateError as error:
        if is_condition_failure(error):
            return False
        raise
    return True


def _complaints_fail(message: MessageModel) -> bool:
    return access.settings_of(int(message.account_id)).complaints_run_failed
