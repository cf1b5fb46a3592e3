"""Delivery status notifications: recognise them, match them to our messages, act on them.

Recognition is flufl.bounce's (its RFC 3464 detector first, then detectors for MTAs that do
not follow the RFC); the standard library's email package reads the RFC 3464
message/delivery-status fields (Status, Action, Diagnostic-Code) for each recipient, and the
returned headers (message/rfc822 or text/rfc822-headers) for the Message-ID of our message.
Our Message-IDs are `<{message id}@{sender domain}>` (mime.make_message_id); a mailbox that
sends with a token in the envelope sender (`local+mlr-{message id}@domain`) is matched by the
address the report was sent to as well.

A permanent failure (status 5.x.x; without a status, what flufl.bounce calls permanent)
records the bounce on the message, suppresses the address for the whole account and runs
the message's "failed" hook; a temporary one (4.x.x) is recorded only. Each report is
recorded once: the message update is conditioned on a key of the report (`bounce_keys`), so
reading the same report again, or a second copy of it, changes nothing.

Only messages that look like reports by their headers are read whole (`is_candidate`):
a multipart/report, or mail from the null sender, MAILER-DAEMON or postmaster. A person's
reply that quotes an error message is never taken for a bounce.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.parser
import email.policy
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import Literal

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.adapters.mime import ENVELOPE_TOKEN
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.logs import logger
from mailer_core.events import message_events
from mailer_core.messages import suppressions
from mailer_core.store import timeline
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import BounceEntry, MailboxModel, MessageModel

Outcome = Literal["bounced", "delayed", "duplicate", "unmatched", "unknown_recipient"]
_ULID = r"[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}"
_OUR_MESSAGE_ID = re.compile(rf"<({_ULID})@([^<>\s]+)>")
_TOKEN = re.compile(rf"\+{ENVELOPE_TOKEN}({_ULID})@", re.I)
_MESSAGE_ID_LINE = re.compile(r"^message-id:\s*(<[^<>\s]+>)", re.I | re.M)
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster", "mail-daemon")
_REPORT_PART_TYPES = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers", "message/global")


@dataclass(frozen=True)
class RecipientFailure:
    address: str  # lower case, as the report names it
    permanent: bool
    status: str | None = None  # RFC 3463 enhanced status code, e.g. "5.1.1"
    diagnostic: str | None = None  # e.g. "smtp; 550 5.1.1 <x@y>: Recipient address rejected"
    action: str | None = None  # failed, delayed …


@dataclass(frozen=True)
class Bounce:
    report_id: str  # the report's own Message-ID, else a digest of its bytes
    message_ids: tuple[str, ...]  # Message-IDs of the returned message (and the report's references)
    tokens: tuple[str, ...]  # message ids found as envelope tokens
    failures: tuple[RecipientFailure, ...]
    reporting_mta: str | None = None


# -- recognising -----------------------------------------------------------------------------


def is_candidate(headers: bytes) -> bool:
    """Whether a message's header block says it is a delivery report worth reading whole."""
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(headers)
    if parsed.get_content_type() == "multipart/report":
        return True
    if parsed.get("X-Failed-Recipients"):
        return True
    return_path = str(parsed.get("Return-Path") or "").strip()
    if return_path in ("<>", "< >"):
        return True
    sender = parseaddr(_decoded(parsed.get("From")))[1].lower()
    return sender.split("@")[0] in _BOUNCE_SENDERS


def parse(raw: bytes) -> Bounce | None:
    """The report's failed recipients and the Message-IDs it refers to; None if it is no bounce."""
    from flufl.bounce import all_failures  # imported here: only the bounce poller reads reports

    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    temporary, permanent = all_failures(message)
    reported = {_address(a): False for a in temporary} | {_address(a): True for a in permanent}
    reported.pop("", None)
    if not reported:
        return None
    fields, reporting_mta = _delivery_status(message)
    failures = []
    for address, flufl_permanent in sorted(reported.items()):
        status, diagnostic, action = fields.get(address, (None, None, None))
        permanent_now = status.startswith("5") if status and status[:1] in "45" else flufl_permanent
        failures.append(RecipientFailure(address, permanent_now, status, diagnostic, action))
    report_id = str(message.get("Message-ID") or "").strip() or hashlib.sha256(raw).hexdigest()[:32]
    return Bounce(
        report_id=report_id,
        message_ids=tuple(dict.fromkeys(_returned_message_ids(message))),
        tokens=tuple(dict.fromkeys(_tokens(message))),
        failures=tuple(failures),
        reporting_mta=reporting_mta,
    )


def _decoded(value: object) -> str:
    if value is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except (UnicodeError, LookupError, email.errors.HeaderParseError):
        return str(value)


def _address(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    text = text.strip()
    if ";" in text:  # "rfc822; user@example.com"
        text = text.split(";", 1)[1]
    return parseaddr(text.strip())[1].strip().lower() or text.strip().strip("<>").lower()


def _field(block: Message, name: str) -> str | None:
    value = block.get(name)
    return " ".join(str(value).split()) if value else None


def _delivery_status(
    message: Message,
) -> tuple[dict[str, tuple[str | None, str | None, str | None]], str | None]:
    """RFC 3464 fields per recipient: address -> (status, diagnostic, action); and the reporting MTA."""
    found: dict[str, tuple[str | None, str | None, str | None]] = {}
    reporting_mta = None
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks:
            if not isinstance(block, Message):
                continue
            if block.get("Reporting-MTA") and reporting_mta is None:
                reporting_mta = (_field(block, "Reporting-MTA") or "").split(";")[-1].strip() or None
            recipients = [block.get("Original-Recipient"), block.get("Final-Recipient")]
            if not any(recipients):
                continue
            status_field = _field(block, "Status") or ""
            status_match = re.match(r"([245]\.\d{1,3}\.\d{1,3})", status_field)
            status = status_match.group(1) if status_match else None
            values = (
                status,
                _field(block, "Diagnostic-Code"),
                (_field(block, "Action") or "").lower() or None,
            )
            for recipient in recipients:
                if recipient:
                    found.setdefault(_address(str(recipient)), values)
    return found, reporting_mta


# Many branches on purpose: one branch per place a report may carry the Message-ID.
def _returned_message_ids(message: Message) -> list[str]:  # noqa: C901
    ids: list[str] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind not in _REPORT_PART_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):  # message/rfc822: the returned message, parsed
            for inner in payload:
                if isinstance(inner, Message) and inner.get("Message-ID"):
                    ids.append(str(inner["Message-ID"]).strip())
        else:  # text/rfc822-headers: the returned headers, as text
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                ids += _MESSAGE_ID_LINE.findall(text.decode("utf-8", "replace"))
    if not ids:
        # Reports that quote the original inline (older Exim, qmail, some gateways).
        for part in message.walk():
            if part.get_content_maintype() == "text":
                body = part.get_payload(decode=True)
                if isinstance(body, bytes):
                    ids += _MESSAGE_ID_LINE.findall(body.decode("utf-8", "replace"))
    # Gmail names it in the report too; In-Reply-To and References of a report point at it.
    for part in message.walk():
        blocks = part.get_payload() if part.get_content_type() == "message/delivery-status" else None
        if isinstance(blocks, list):
            ids += [
                str(b["X-Original-Message-ID"])
                for b in blocks
                if isinstance(b, Message) and b["X-Original-Message-ID"]
            ]
    for header in ("X-Original-Message-ID", "In-Reply-To", "References"):
        ids += re.findall(r"<[^<>\s]+>", str(message.get(header) or ""))
    return [i.strip() for i in ids]


def _tokens(message: Message) -> list[str]:
    headers = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "Return-Path")
    values = [str(v) for name in headers for v in (message.get_all(name) or [])]
    return [m.upper() for _, address in getaddresses(values) for m in _TOKEN.findall(address)]


# -- acting ----------------------------------------------------------------------------------


def find_message(mailbox: MailboxModel, bounce: Bounce) -> MessageModel | None:
    """Our message this report is about: sent from `mailbox`, by Message-ID or envelope token."""
    account_id = int(mailbox.account_id)
    candidates: list[tuple[str, str | None]] = []
    for message_id in bounce.message_ids:
        match = _OUR_MESSAGE_ID.fullmatch(message_id.strip())
        if match:
            candidates.append((match.group(1).upper(), message_id.strip()))
    candidates += [(token, None) for token in bounce.tokens]
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


def record(mailbox: MailboxModel, bounce: Bounce, *, clock: Clock = SYSTEM_CLOCK) -> list[Outcome]:
    """Apply a report to the message it is about; one outcome per failed recipient."""
    message = find_message(mailbox, bounce)
    if message is None:
        logger.info("a delivery report about no message of this mailbox", extra={"report": bounce.report_id})
        return ["unmatched"]
    ours = {str(a).lower() for a in (*message.to, *(message.cc or []), *(message.bcc or []))}
    outcomes: list[Outcome] = []
    for failure in bounce.failures:
        address = failure.address if failure.address in ours else None
        if address is None and len(ours) == 1:
            address = next(iter(ours))  # forwarded or rewritten: the one address we wrote to
        if address is None:
            outcomes.append("unknown_recipient")
            continue
        outcomes.append(_record_failure(mailbox, message, bounce, failure, address, clock.now()))
    return outcomes


def _record_failure(
    mailbox: MailboxModel,
    message: MessageModel,
    bounce: Bounce,
    failure: RecipientFailure,
    address: str,
    now: datetime,
) -> Outcome:
    account_id = int(message.account_id)
    if failure.permanent:
        # First the suppression (idempotent on its own), then the record that runs the hook once.
        suppressions.add(
            account_id,
            address,
            reason="bounced",
            when=now,
            status=failure.status,
            diagnostic=failure.diagnostic,
            message_id=message.message_id,
            mailbox_id=mailbox.mailbox_id,
        )
        key = f"hard#{address}"
    else:
        key = f"soft#{address}#{bounce.report_id}"
    words = " ".join(part for part in (failure.status, failure.diagnostic) if part) or "no reason given"
    if address != failure.address:
        words += f" (reported for {failure.address})"
    detail = f"{address}: {words}"[:1000]
    event = "bounced" if failure.permanent else "delayed"
    record = BounceEntry(
        at=now,
        address=address,
        permanent=failure.permanent,
        status=failure.status,
        diagnostic=(failure.diagnostic or "")[:1000] or None,
        reported_by=bounce.reporting_mta,
    )
    try:
        message.update(
            actions=[
                MessageModel.bounces.set((MessageModel.bounces | []).append([record])),
                MessageModel.bounce_keys.add({key}),
                timeline.history_append(timeline.entry(now, event, detail)),
                MessageModel.updated_at.set(now),
            ],
            condition=~MessageModel.bounce_keys.contains(key),
        )
    except UpdateError as error:
        if is_condition_failure(error):
            return "duplicate"
        raise
    logger.info("delivery report recorded", extra={"event": event, "message_id": message.message_id})
    if failure.permanent:
        message_events.on_message_failed(message, f"bounced: {detail}")
        return "bounced"
    return "delayed"
