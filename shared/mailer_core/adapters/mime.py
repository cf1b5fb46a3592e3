"""Outgoing messages as standards-clean MIME, built with the standard library.

Every message is multipart/alternative: a text/plain part generated from the HTML (so
clients and spam filters that prefer text get the same words and link targets), then the
HTML itself, as a whole document (base.html_document frames a fragment); with attachments,
a multipart/mixed holds that part and the files (see "attachments" below). Headers that
may hold non-ASCII text (the sender's display name, the subject) are RFC 2047 encoded,
and both bodies get a 7-bit transfer encoding (quoted-printable or base64), so no line
exceeds SMTP's limit and no server needs 8BITMIME. Bcc recipients go only into the
envelope, never into a header. A campaign email's unsubscribe URL becomes the RFC 2369
`List-Unsubscribe` header with RFC 8058's `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
(docs/opt-out.md).
"""

from __future__ import annotations

import binascii
import email.generator
import email.policy
import io
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime
from typing import Any, BinaryIO

from mailer_core.base import html_document, plain_text

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
_UNSUBSCRIBE_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})
ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058: the POST body, and the header that offers it


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
    # Files attached (multipart/mixed around the alternative part); see `Attachment`.
    attachments: tuple[Attachment, ...] = ()
    # Images shown in the HTML as `cid:` (multipart/related around the HTML part).
    inline_images: tuple[InlineImage, ...] = ()
    # The plain-text alternative; None: made from `html` (tracking gives the untracked text).
    text: str | None = None
    # The language of the words ("ru", "en_US"): the HTML document's `lang`; "" when unknown.
    language: str = ""
    # A campaign email's one-click unsubscribe URL (https): the List-Unsubscribe headers; "" none.
    unsubscribe_url: str = ""


@dataclass(frozen=True)
class InlineImage:
    """An image the HTML shows as `<img src="cid:{cid}">` (made by email_html from pasted images)."""

    cid: str  # without angle brackets
    content_type: str
    data: bytes
    filename: str = ""


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

    message = MailerMessage(policy=POLICY)
    message["From"] = Address(display_name=email.sender_name, addr_spec=email.sender_email)
    message["To"] = ", ".join(email.to)
    if email.cc:
        message["Cc"] = ", ".join(email.cc)
    message["Subject"] = email.subject
    message["Date"] = format_datetime(email.date)
    message["Message-ID"] = email.message_id
    message["MIME-Version"] = "1.0"
    if email.unsubscribe_url:
        if any(c in email.unsubscribe_url for c in "<>,\r\n \t"):
            raise ValueError("OutgoingEmail.unsubscribe_url must be a bare URL")
        if any(name.strip().lower() in _UNSUBSCRIBE_HEADERS for name, _ in email.extra_headers):
            raise ValueError("List-Unsubscribe comes from unsubscribe_url or extra_headers, not both")
        message["List-Unsubscribe"] = _Verbatim("List-Unsubscribe", f"<{email.unsubscribe_url}>")
        message["List-Unsubscribe-Post"] = ONE_CLICK
    for name, value in email.extra_headers:
        message[name] = value
    text = email.text if email.text is not None else html_to_text(email.html)
    message.set_content(text, subtype="plain", charset="utf-8")
    document = html_document.frame(email.html, title=email.subject, language=email.language)
    message.add_alternative(document, subtype="html", charset="utf-8")
    html_part: Any = message.get_payload()[-1]  # type: ignore[index]
    for image in email.inline_images:  # before the attachments: they wrap the whole body
        maintype, _, subtype = image.content_type.partition("/")
        html_part.add_related(
            image.data,
            maintype,
            subtype,
            cid=f"<{image.cid}>",
            filename=image.filename or None,
            disposition="inline",
        )
    _add_attachments(message, email.attachments)
    return message


class _Verbatim(str):
    """A header value written as it is. The standard library folds an unstructured header at 78
    characters, and a single word longer than that (a URL) it turns into RFC 2047 encoded
    words, which no client reads as a URL. A long one goes on its own folded line (RFC 5322
    allows 998 characters)."""

    name: str

    def __new__(cls, name: str, value: str) -> _Verbatim:
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy: Any) -> str:
        separator = " " if len(self.name) + 2 + len(self) <= 78 else policy.linesep + " "
        return f"{self.name}:{separator}{self}{policy.linesep}"


def html_to_text(html: str) -> str:
    """The plain-text alternative of `html` (base.plain_text): the words and link targets,
    no Markdown, the signature under `-- `, nothing of a tracking pixel."""
    return plain_text.from_html(html)


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


# ------------------------------------------------------------------ attachments
#
# With attachments the message is multipart/mixed: the multipart/alternative body first,
# then one base64 part per file, named in Content-Disposition `filename` and Content-Type
# `name`, both RFC 2231-encoded when not ASCII (Cyrillic names arrive intact). A file given
# by `open` is streamed: its part holds a one-line marker, and writing the message (`spool`,
# or `as_bytes`) copies the generated skeleton and writes the file's base64 in place of the
# marker, reading the file in 64 KB pieces. So a 100 MB attachment costs a temporary file
# (about 137 MB of base64), not memory.

SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024  # a written message larger than this goes to a temp file
_READ_BYTES = 57 * 1152  # a multiple of 57 bytes: 76 base64 characters per line, as the stdlib


@dataclass(frozen=True)
class Attachment:
    """A file to attach: `data`, or `open`, which returns a fresh binary stream of the file
    (read to its end and closed by whoever writes the message)."""

    filename: str
    content_type: str = "application/octet-stream"
    data: bytes | None = None
    open: Callable[[], BinaryIO] | None = None
    size: int | None = None  # when known (for logs and limits); never trusted for the bytes


class _StreamedPart(MIMEPart):
    """An attachment whose base64 body is written from `attachment.open()` in place of `marker`."""

    def __init__(self, attachment: Attachment) -> None:
        super().__init__(policy=POLICY)
        self.attachment = attachment
        self.marker = f"MAILER-STREAMED-ATTACHMENT-{uuid.uuid4().hex}".encode("ascii")


def _add_attachments(message: EmailMessage, attachments: tuple[Attachment, ...]) -> None:
    if not attachments:
        return
    message.make_mixed()
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.strip().lower().partition("/")
        if not maintype or not subtype or "/" in subtype:
            maintype, subtype = "application", "octet-stream"
        if attachment.open is not None:
            part: MIMEPart = _StreamedPart(attachment)
        elif attachment.data is not None:
            part = MIMEPart(policy=POLICY)
        else:
            raise ValueError(f"attachment {attachment.filename!r} has neither data nor open")
        part.set_content(
            attachment.data or b"",
            maintype=maintype,
            subtype=subtype,
            disposition="attachment",
            filename=attachment.filename,
            params={"name": attachment.filename},  # the Content-Type name older clients read
        )
        if isinstance(part, _StreamedPart):
            part.set_payload(part.marker.decode("ascii") + "\n")
        message.attach(part)  # type: ignore[arg-type]  # typeshed wants EmailMessage; MIMEPart is right


class Spool:
    """A written message: CRLF lines, 7-bit, in memory up to 8 MB and in a temp file beyond."""

    def __init__(self, file: Any, size: int) -> None:
        self._file = file
        self.size = size

    def lines(self) -> Iterator[bytes]:
        """The message line by line, each with its CRLF (one reader at a time)."""
        self._file.seek(0)
        yield from self._file

    def chunks(self, size: int) -> Iterator[bytes]:
        """The message in pieces of `size` bytes (one reader at a time)."""
        self._file.seek(0)
        while chunk := self._file.read(size):
            yield chunk

    def read_bytes(self) -> bytes:
        self._file.seek(0)
        return bytes(self._file.read())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MailerMessage(EmailMessage):
    """The message `build_message` returns: as an EmailMessage, but streamed attachments are
    read when the message is written, and once `spool` wrote it, its bytes come from there."""

    _spool: Spool | None = None

    def _has_streamed_parts(self) -> bool:
        return any(isinstance(part, _StreamedPart) for part in self.walk())

    def as_bytes(self, unixfrom: bool = False, policy: Any = None) -> bytes:
        if not self._has_streamed_parts():
            return super().as_bytes(unixfrom=unixfrom, policy=policy)
        policy = policy or self.policy
        if self._spool is not None and not unixfrom and policy.linesep == "\r\n" and not policy.utf8:
            return self._spool.read_bytes()
        with _write(self, policy, unixfrom=unixfrom) as written:
            return written.read_bytes()

    def as_string(self, unixfrom: bool = False, maxheaderlen: int | None = None, policy: Any = None) -> str:
        if not self._has_streamed_parts():
            return super().as_string(unixfrom=unixfrom, maxheaderlen=maxheaderlen, policy=policy)
        return self.as_bytes(unixfrom=unixfrom, policy=policy).decode("utf-8", "surrogateescape")


def spool(message: EmailMessage) -> Spool:
    """Write `message` to a Spool now, reading streamed attachments (their errors come out here).

    A message from `build_message` keeps the spool: `spooled(message)` and `as_bytes()` use
    it afterwards, and the SMTP transport sends it line by line. Close it when done.
    """
    existing = spooled(message)
    if existing is not None:
        return existing
    written = write(message)
    if isinstance(message, MailerMessage):
        message._spool = written
    return written


def write(message: EmailMessage) -> Spool:
    """`message` written to a new Spool (CRLF lines), whether or not it has one already."""
    return _write(message, message.policy.clone(linesep="\r\n"))


def spooled(message: EmailMessage) -> Spool | None:
    """The spool `spool(message)` wrote, if it did."""
    return message._spool if isinstance(message, MailerMessage) else None


def _write(message: EmailMessage, policy: Any, *, unixfrom: bool = False) -> Spool:
    streamed = {p.marker: p.attachment for p in message.walk() if isinstance(p, _StreamedPart)}
    skeleton = io.BytesIO()
    email.generator.BytesGenerator(skeleton, mangle_from_=False, policy=policy).flatten(
        message, unixfrom=unixfrom
    )
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115 - Spool closes it
    linesep = policy.linesep.encode("ascii")
    try:
        skeleton.seek(0)
        for line in skeleton:
            attachment = streamed.get(line.rstrip(b"\r\n")) if streamed else None
            if attachment is None:
                out.write(line)
            else:
                _write_base64(attachment, out, linesep)
    except BaseException:
        out.close()
        raise
    return Spool(out, out.tell())


def _write_base64(attachment: Attachment, out: Any, linesep: bytes) -> None:
    assert attachment.open is not None
    with attachment.open() as stream:
        pending = b""
        while chunk := stream.read(_READ_BYTES):
            data = pending + chunk if pending else chunk
            usable = len(data) - len(data) % 57
            out.write(_base64_lines(data[:usable], linesep))
            pending = data[usable:]
        if pending:
            out.write(_base64_lines(pending, linesep))


def _base64_lines(data: bytes, linesep: bytes) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    return b"".join(encoded[i : i + 76] + linesep for i in range(0, len(encoded), 76))


ENVELOPE_TOKEN = "mlr-"


def envelope_sender(sender_email: str, message_id: str) -> str:
    """`local+mlr-{message id}@domain`: bounces come back to an address naming the message."""
    local, _, domain = sender_email.rpartition("@")
    return f"{local}+{ENVELOPE_TOKEN}{message_id.lower()}@{domain}"
