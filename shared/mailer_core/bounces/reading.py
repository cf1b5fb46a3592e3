"""Read a report from the inbox: which of our emails it is about, whom, and why.

A report is one of four kinds: a delivery report about failed or delayed recipients
(`bounce`), a delivery receipt (`receipt`), a complaint (`complaint`: ARF, RFC 5965, and the
providers' feedback loops that attach the email) or an automatic reply (`auto_reply`:
vacation, out of office; RFC 3834). Failed recipients are read from every place a report
may name them: the RFC 3464 delivery-status fields (always read), and flufl.bounce's
detectors for the MTAs that write no such part; for each, the status and the remote
server's words come from the DSN fields, else from the text around the address.
`classify` names the reason. Strings that are no address (a Message-ID, a host name) are
dropped. The returned headers give the Message-ID of our email; a mailbox that sends with a
token in the envelope sender (`local+mlr-{message id}@domain`) is matched by the address the
report was sent to as well.

Only messages that look like reports by their headers are read whole (`is_candidate`): a
multipart/report, mail from the null sender, MAILER-DAEMON or postmaster, or a feedback-loop
report. A person's reply that quotes an error message is never taken for a bounce.
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
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import Literal

from mailer_core.adapters.mime import ENVELOPE_TOKEN
from mailer_core.bounces import classify

Kind = Literal["bounce", "receipt", "complaint", "auto_reply"]
ULID = r"[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}"  # our message ids, in Message-IDs and envelope tokens
_TOKEN = re.compile(rf"\+{ENVELOPE_TOKEN}({ULID})@", re.I)
_MESSAGE_ID_LINE = re.compile(r"^(?:>\s*)?message-id:\s*(<[^<>\s]+>)", re.I | re.M)
_ADDRESS = re.compile(
    r"[^@\s<>()\[\],;:\"]{1,64}@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+"
)
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster", "mail-daemon", "mail delivery")
_REPORT_PART_TYPES = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers", "message/global")
_FEEDBACK_SUBJECT = re.compile(r"abuse report|complaint|feedback[- ]loop|\bfbl\b|жалоба", re.I)
_AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(matic)?[- ]?(reply|response)|auto:|vacation|abwesenheit|автоответ"
    r"|автоматический ответ)|out of (the )?office|нет на месте|в отпуске",
    re.I,
)
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")
_SPACE_BEFORE_COLON = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)[ \t]+:", re.M)
WORDS_LIMIT = 1000


@dataclass(frozen=True)
class RecipientFailure:
    address: str  # lower case, as the report names it
    reason: classify.Reason
    permanent: bool
    status: str | None = None  # RFC 3463 enhanced status code, e.g. "5.1.1"
    diagnostic: str | None = None  # the remote server's words
    action: str | None = None  # failed, delayed …


@dataclass(frozen=True)
class Report:
    kind: Kind
    report_id: str  # the report's own Message-ID, else a digest of its bytes
    message_ids: tuple[str, ...]  # Message-IDs of the returned message (and the report's references)
    tokens: tuple[str, ...]  # message ids found as envelope tokens
    failures: tuple[RecipientFailure, ...]
    reporting_mta: str | None = None


# -- recognising -----------------------------------------------------------------------------


def is_candidate(headers: bytes) -> bool:
    """Whether a message's header block says it is a report worth reading whole."""
    parsed = parse_headers(headers)
    if parsed.get_content_type() == "multipart/report" or parsed.get("X-Failed-Recipients"):
        return True
    return_path = str(parsed.get("Return-Path") or "").strip()
    if return_path in ("<>", "< >"):
        return True
    if _from_daemon(parsed):  # MAILER-DAEMON, postmaster, or From: MAILER-DAEMON <> (the null sender)
        return True
    return bool(_FEEDBACK_SUBJECT.search(decoded(parsed.get("Subject"))))


def is_auto_reply(headers: bytes | Message) -> bool:
    """An automatic answer (RFC 3834, vacation, out of office): neither a bounce nor a reply."""
    parsed = parse_headers(headers) if isinstance(headers, bytes) else headers
    auto = str(parsed.get("Auto-Submitted") or "").strip().lower()
    precedence = str(parsed.get("Precedence") or "").strip().lower()
    if auto.startswith("auto-replied") or precedence in ("auto_reply", "auto-reply"):
        return True
    if any(parsed.get(name) for name in _AUTO_HEADERS[:2]):
        return True
    return bool(_AUTO_SUBJECT.search(decoded(parsed.get("Subject"))))


def parse(raw: bytes) -> Report | None:
    """What the report says; None if it is no report at all."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    report_id = str(message.get("Message-ID") or "").strip() or hashlib.sha256(raw).hexdigest()[:32]
    message_ids = tuple(dict.fromkeys(_returned_message_ids(message)))
    tokens = tuple(dict.fromkeys(_tokens(message)))
    kind, failures, mta = _read(message, message_ids)
    if kind is None:
        return None
    return Report(kind, report_id, message_ids, tokens, tuple(failures), mta)


def _read(
    message: Message, message_ids: tuple[str, ...]
) -> tuple[Kind | None, list[RecipientFailure], str | None]:
    complaint = _complaint(message)
    if complaint is not None:
        return "complaint", complaint, None
    fields, mta = _delivery_status(message)
    ours = _not_recipients(message, message_ids)
    if any(_ADDRESS.fullmatch(a) and a not in ours for a in fields):
        failures = _failures(message, fields, {}, ours)
        delivered = all(f.reason == "delivered" for f in failures)
        return ("receipt" if delivered else "bounce"), failures, mta
    if not fields and is_auto_reply(message) and not _from_daemon(message):
        return "auto_reply", [], None
    # No usable DSN recipient: the MTA's own header, flufl.bounce's detectors, the text.
    found = _flufl(message) | {a: False for a in _failed_header(message) + _named_in_text(message)}
    only = next(iter(fields.values())) if len(fields) == 1 else None  # a DSN about a path, say
    failures = _failures(message, {a: only for a in found if only} if only else {}, found, ours)
    return ("bounce" if failures else None), failures, mta


def _not_recipients(message: Message, message_ids: tuple[str, ...]) -> set[str]:
    """Strings a report may name that are no failed recipient: Message-IDs, us, the report's addressee."""
    found = {m.strip("<>").lower() for m in message_ids}
    values = [str(v) for name in ("To", "Envelope-To", "Delivered-To") for v in message.get_all(name) or []]
    found |= {a.lower() for _, a in getaddresses(values) if a}
    for part in message.walk():
        if part.get_content_type() in _REPORT_PART_TYPES:
            inner = _returned_headers(part)
            if inner is not None:
                found |= {a.lower() for _, a in getaddresses([str(inner.get("From") or "")]) if a}
    return found


def _failed_header(message: Message) -> list[str]:
    values = [str(v) for v in message.get_all("X-Failed-Recipients") or []]
    return [a.lower() for _, a in getaddresses(values) if a]


def _named_in_text(message: Message) -> list[str]:
    """Addresses the report's text names that the returned email was sent to (text-only reports)."""
    sent_to = set(_returned_recipients_anywhere(message))
    text = _human_text(message).lower()
    return [a for a in dict.fromkeys(_ADDRESS.findall(text)) if a in sent_to]


def _flufl(message: Message) -> dict[str, bool]:
    """address -> whether flufl.bounce calls it temporary; for reports without a DSN part."""
    from flufl.bounce import all_failures  # cold start: flufl.bounce and its detectors

    temporary, permanent = all_failures(message)
    found = {_address(a): False for a in permanent} | {_address(a): True for a in temporary}
    found.pop("", None)
    return found


def _failures(
    message: Message,
    fields: dict[str, tuple[str | None, str | None, str | None]],
    flufl: dict[str, bool],
    not_recipients: set[str],
) -> list[RecipientFailure]:
    text = _human_text(message)
    failures = []
    for address in sorted(set(fields) | set(flufl)):
        if not _ADDRESS.fullmatch(address) or address in not_recipients:
            continue  # a Message-ID, a path, a host name, the sender: no recipient
        status, diagnostic, action = fields.get(address, (None, None, None))
        words = diagnostic or _words_near(text, address)
        status = status or classify.status_in(words)
        if status is None and flufl.get(address):
            action = action or "delayed"  # flufl.bounce read it as temporary
        reason = classify.reason_of(status, words, action)
        permanent = classify.is_permanent(reason, status, action)
        failures.append(
            RecipientFailure(address, reason, permanent, status, words[:WORDS_LIMIT] or None, action)
        )
    return failures


def _complaint(message: Message) -> list[RecipientFailure] | None:
    """The complaining recipient of an ARF report or a provider's feedback-loop report."""
    arf = any(p.get_content_type() == "message/feedback-report" for p in message.walk())
    if not arf and not _feedback_loop(message):
        return None
    addresses = []
    for part in message.walk():
        if part.get_content_type() in _REPORT_PART_TYPES:
            addresses += _returned_recipients(part)
    for part in message.walk():
        if part.get_content_type() == "message/feedback-report":
            addresses += _feedback_fields(part)
    wanted = [a for a in dict.fromkeys(addresses) if _ADDRESS.fullmatch(a)]
    return [
        RecipientFailure(address, "complained", False, None, "the recipient reported this email as spam")
        for address in wanted[:1]
    ]


def _feedback_loop(message: Message) -> bool:
    """A feedback loop that is no ARF: the complaint as a forwarded email, named so by its subject."""
    has_email = any(p.get_content_type() == "message/rfc822" for p in message.walk())
    return has_email and bool(_FEEDBACK_SUBJECT.search(decoded(message.get("Subject"))))


def _feedback_fields(part: Message) -> list[str]:
    payload = part.get_payload()
    blocks = payload if isinstance(payload, list) else [email.message_from_string(str(payload))]
    found = []
    for block in blocks:
        if isinstance(block, Message):
            for name in ("Original-Rcpt-To", "Removal-Recipient"):
                found += [_address(str(v)) for v in block.get_all(name) or []]
    return found


def _returned_headers(part: Message) -> Message | None:
    """The returned email's headers, from a message/rfc822 or a text/rfc822-headers part."""
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if isinstance(inner, Message):
        return inner
    text = part.get_payload(decode=True)
    return parse_headers(text) if isinstance(text, bytes) else None


def _returned_recipients(part: Message) -> list[str]:
    inner = _returned_headers(part)
    if inner is None:
        return []
    values = [
        str(v) for name in ("To", "Cc", "X-Original-To", "Delivered-To") for v in inner.get_all(name) or []
    ]
    return [a.lower() for _, a in getaddresses(values) if a]


def _returned_recipients_anywhere(message: Message) -> list[str]:
    """Whom the returned email was sent to: its attached headers, else headers quoted in the text."""
    found: list[str] = []
    for part in message.walk():
        if part.get_content_type() in _REPORT_PART_TYPES:
            found += _returned_recipients(part)
    if not found:
        quoted = re.findall(r"^\s*>?\s*(?:to|cc):\s*(.+)$", _human_text(message), re.I | re.M)
        found = [a.lower() for _, a in getaddresses(quoted) if a]
    return found


def _from_daemon(message: Message) -> bool:
    name, address = parseaddr(decoded(message.get("From")))
    return _daemon(name, address) or (not address and "<>" in decoded(message.get("From")))


def _daemon(name: str, address: str) -> bool:
    name = name.lower().strip()
    return address.lower().split("@")[0] in _BOUNCE_SENDERS or any(
        name.startswith(s) for s in _BOUNCE_SENDERS
    )


# -- fields and text -------------------------------------------------------------------------


def parse_headers(raw: bytes) -> Message:
    """A message's header block, parsed as the poller fetched it (no body)."""
    return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)


def decoded(value: object) -> str:
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
    return " ".join(decoded(value).split()) if value else None


def _delivery_status(
    message: Message,
) -> tuple[dict[str, tuple[str | None, str | None, str | None]], str | None]:
    """RFC 3464 fields per recipient: address -> (status, diagnostic, action); and the reporting MTA."""
    found: dict[str, tuple[str | None, str | None, str | None]] = {}
    reporting_mta = None
    for block in _status_blocks(message):
        if block.get("Reporting-MTA") and reporting_mta is None:
            reporting_mta = (_field(block, "Reporting-MTA") or "").split(";")[-1].strip() or None
        recipients = [block.get("Original-Recipient"), block.get("Final-Recipient")]
        if not any(recipients):
            continue
        status_match = re.match(r"([245]\.\d{1,3}\.\d{1,3})", _field(block, "Status") or "")
        diagnostic = _field(block, "Diagnostic-Code")
        if diagnostic and ";" in diagnostic.split(" ", 1)[0]:
            diagnostic = diagnostic.split(";", 1)[1].strip()  # "smtp; 550 …" -> "550 …"
        values = (
            status_match.group(1) if status_match else None,
            diagnostic,
            next(iter((_field(block, "Action") or "").lower().split()), None),  # "relayed (to …)"
        )
        for recipient in recipients:
            if recipient:
                found.setdefault(_address(str(recipient)), values)
    return found, reporting_mta


def _status_blocks(message: Message) -> list[Message]:
    blocks: list[Message] = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            blocks += [_lenient(b) for b in payload if isinstance(b, Message)]
        elif isinstance(payload, str):  # a part that was not parsed into blocks (encoded)
            body = part.get_payload(decode=True)
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else payload
            chunks = re.split(r"\r?\n\s*\r?\n", text)
            blocks += [email.message_from_string(_SPACE_BEFORE_COLON.sub(r"\1:", c)) for c in chunks]
    return blocks


def _lenient(block: Message) -> Message:
    """A block whose fields were written `Name : value` (Mimecast) parsed as fields after all."""
    if block.keys() or not isinstance(block.get_payload(), str):
        return block
    return email.message_from_string(_SPACE_BEFORE_COLON.sub(r"\1:", str(block.get_payload())))


def _human_text(message: Message) -> str:
    """The report's text meant for people: its first text parts, not the returned email."""
    texts = []
    for part in _own_parts(message):
        if part.get_content_type() in ("text/plain", "text/html"):
            body = part.get_payload(decode=True)
            if isinstance(body, bytes):
                charset = part.get_content_charset() or "utf-8"
                try:
                    text = body.decode(charset, "replace")
                except LookupError:
                    text = body.decode("utf-8", "replace")
                if part.get_content_type() == "text/html":
                    text = re.sub(r"<[^>]+>", " ", text)
                texts.append(text)
    return "\n".join(texts)


def _own_parts(message: Message) -> list[Message]:
    """The report's parts, leaving out what is inside a returned message."""
    if not message.is_multipart():
        return [message]
    parts: list[Message] = []
    for part in message.get_payload():
        if not isinstance(part, Message) or part.get_content_type() in _REPORT_PART_TYPES:
            continue
        if part.get_content_type() == "message/delivery-status":
            continue
        parts += _own_parts(part)
    return parts


def _words_near(text: str, address: str) -> str:
    """The lines about `address` in a text report (qmail, old Exim, Exchange's text NDRs).

    Each place the address appears opens a window of the next lines, up to another address;
    the first window that carries a status code and the words of a reason wins, then one with
    either, then the first one.
    """
    lines = text.splitlines()
    windows = []
    for number, line in enumerate(lines):
        if address in line.lower():
            window = [line.strip()]
            for following in lines[number + 1 : number + 8]:
                others = [a for a in _ADDRESS.findall(following.lower()) if a != address]
                if others and len(window) > 1:
                    break
                window.append(following.strip())
            windows.append(" ".join(w for w in window if w))
    if not windows:
        return " ".join(text.split())[:WORDS_LIMIT]
    return max(windows, key=_telling)


def _telling(words: str) -> int:
    """How much a window tells: a status code and a named reason are worth most."""
    named = classify.reason_of(None, words, "failed") not in ("other", "expired")
    return 2 * (classify.status_in(words) is not None) + named


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
    for block in _status_blocks(message):
        if block["X-Original-Message-ID"]:
            ids.append(str(block["X-Original-Message-ID"]))
    for header in ("X-Original-Message-ID", "In-Reply-To", "References"):
        ids += re.findall(r"<[^<>\s]+>", str(message.get(header) or ""))
    return [i.strip() for i in ids]


def _tokens(message: Message) -> list[str]:
    headers = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "Return-Path")
    values = [str(v) for name in headers for v in (message.get_all(name) or [])]
    return [m.upper() for _, address in getaddresses(values) for m in _TOKEN.findall(address)]
