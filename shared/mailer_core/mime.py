"""Outgoing messages as standards-clean MIME, built with the standard library.

Every message is multipart/alternative: a text/plain part generated from the HTML (so
clients and spam filters that prefer text get the same words and link targets), then the
HTML itself. Headers that may hold non-ASCII text (the sender's display name, the
subject) are RFC 2047 encoded, and both bodies get a 7-bit transfer encoding
(quoted-printable or base64), so no line exceeds SMTP's limit and no server needs
8BITMIME. Bcc recipients go only into the envelope, never into a header.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

# SMTP's policy (CRLF line ends, RFC 2047 headers) with bodies kept 7-bit clean.
POLICY = email.policy.SMTP.clone(cte_type="7bit")

# Headers that build_message sets itself; extra_headers may not name them.
_RESERVED = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)


@dataclass(frozen=True)
class OutgoingEmail:
    """One rendered email, ready to be turned into bytes."""

    sender_name: str
    sender_email: str
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    html: str = ""
    message_id: str = ""  # the full header value, e.g. "<01J...@example.com>"
    date: datetime | None = None  # timezone-aware; required by build_message
    extra_headers: tuple[tuple[str, str], ...] = ()


def build_message(email: OutgoingEmail) -> EmailMessage:
    """The MIME message for `email`; raises ValueError for a missing date or Message-ID.

    The date and the Message-ID come from the caller (who owns the clock and the id), so
    that a retried send produces the very same message.
    """
    if email.date is None or email.date.tzinfo is None:
        raise ValueError("OutgoingEmail.date must be a timezone-aware datetime")
    if not email.message_id:
        raise ValueError("OutgoingEmail.message_id is required")
    for name, _ in email.extra_headers:
        if name.strip().lower() in _RESERVED:
            raise ValueError(f"extra header {name!r} is set by build_message itself")

    message = EmailMessage(policy=POLICY)
    message["From"] = Address(display_name=email.sender_name, addr_spec=email.sender_email)
    message["To"] = ", ".join(email.to)
    if email.cc:
        message["Cc"] = ", ".join(email.cc)
    message["Subject"] = email.subject
    message["Date"] = format_datetime(email.date)
    message["Message-ID"] = email.message_id
    message["MIME-Version"] = "1.0"
    for name, value in email.extra_headers:
        message[name] = value
    message.set_content(html_to_text(email.html), subtype="plain", charset="utf-8")
    message.add_alternative(email.html, subtype="html", charset="utf-8")
    return message


def html_to_text(html: str) -> str:
    """A readable plain-text version of `html`: words kept, links as `[text](url)`.

    Images are replaced by their alt text (so a tracking pixel leaves nothing behind),
    and paragraphs are not re-wrapped: mail clients wrap text themselves.
    """
    import html2text  # imported here: only the send worker converts HTML

    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.unicode_snob = True  # keep Cyrillic and accents as they are
    converter.ignore_emphasis = True
    converter.images_to_alt = True
    converter.inline_links = True
    converter.protect_links = False
    text = converter.handle(html)
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return "\n".join(lines) + "\n" if lines else ""


def envelope_recipients(email: OutgoingEmail) -> list[str]:
    """To, Cc and Bcc addresses in that order, each once (compared case-insensitively)."""
    seen: set[str] = set()
    recipients: list[str] = []
    for address in (*email.to, *email.cc, *email.bcc):
        address = address.strip()
        key = address.lower()
        if address and key not in seen:
            seen.add(key)
            recipients.append(address)
    return recipients


def make_message_id(unique: str, sender_email: str) -> str:
    """A Message-ID header value in the sender's domain: `<{unique}@{domain}>`."""
    domain = sender_email.rpartition("@")[2].strip().lower()
    if not domain or "@" not in sender_email:
        raise ValueError(f"sender address {sender_email!r} has no domain")
    return f"<{unique}@{domain}>"
