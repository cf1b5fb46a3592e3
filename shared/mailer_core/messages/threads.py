"""Answers and forwards of a received email (docs/letters.md#reply-and-forward).

A received email is an email in the Kommo feed that came into the manager's mailbox. Mailer
does not keep their bodies (the bounce poller reads headers only: mailer_core.bounces.replies),
so the widget sends what the feed's card shows, in the compose body's `received` object, and
the email is identified by its own Message-ID header (`message_id_header`, in angle brackets).
When it answers one of Mailer's emails the widget names that message too (`message_id`, the
ULID the poller counted the reply on): its Message-ID then leads the References, so the whole
conversation is one thread in every client.

- a reply sets `In-Reply-To` to the received email's Message-ID and `References` to its
  References (when known) followed by its Message-ID (RFC 5322 3.6.4);
- a forward sets `References` only: it starts a new conversation with another person, and an
  `In-Reply-To` would thread it under the original for its sender's client too;
- the subject (the compose's own, else the received one, which stays text: `literal_subject`)
  is prefixed once: "Re: " (a reply) or "Fwd: " (a forward) after every leading
  prefix of the same kind is taken off, in any case and language ("RE:", "Re[2]:", "AW:",
  "Fw:", "Отв:" …), so "Re: Re:" never happens;
- the received body is quoted under the compose's own HTML, as text in a `<blockquote>` with
  a line naming the sender and date (a forward: the usual "Forwarded message" header block).
  Its braces are written as HTML entities: a quoted `{{ x }}` or `{name}` stays text and is
  never taken for one of Mailer's variables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape
from typing import Any

from mailer_core.base import validation
from mailer_core.base.errors import InvalidInput
from mailer_core.base.plain_text import from_html as html_to_text

MODES = ("reply", "forward")
FIELDS = {"mode", "message_id_header", "references", "message_id", "subject", "from", "date", "text", "html"}
MAX_QUOTED_CHARS = 200_000
MAX_REFERENCES = 50
_MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|vs|antw|ha|отв|ответ)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*)+", re.I)
_FORWARD_PREFIX = re.compile(r"^\s*(?:(?:fwd?|wg|tr|rv|пересл|fw)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*)+", re.I)


@dataclass(frozen=True)
class Received:
    """The received email a compose answers or forwards, as the widget read it from the feed."""

    mode: str
    message_id_header: str
    references: tuple[str, ...] = ()
    message_id: str | None = None  # the Mailer message it answers, if any
    subject: str = ""
    sender: str = ""
    date: str = ""
    text: str = ""

    def threading(self, own_header: str | None = None) -> tuple[str | None, list[str]]:
        """(In-Reply-To, References) for the answer; `own_header` is our message's Message-ID."""
        refs = [own_header] if own_header else []
        refs += [r for r in self.references if r not in refs]
        if self.message_id_header not in refs:
            refs.append(self.message_id_header)
        refs = refs[-MAX_REFERENCES:]
        return (self.message_id_header if self.mode == "reply" else None), refs


def parse(value: Any) -> Received | None:
    """The compose body's `received` object, each field checked (422 naming it)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("must be an object describing the received email", field="received")
    validation.reject_unknown(
        {f"received.{k}": v for k, v in value.items()}, {f"received.{f}" for f in FIELDS}
    )
    mode = value.get("mode", "reply")
    if mode not in MODES:
        raise InvalidInput(f"must be one of {', '.join(MODES)}", field="received.mode")
    header = _message_id(value.get("message_id_header"), "received.message_id_header")
    references = value.get("references") or []
    if isinstance(references, str):
        references = _MESSAGE_ID.findall(references)
    if not isinstance(references, list) or len(references) > MAX_REFERENCES:
        raise InvalidInput(
            f"must be a list of at most {MAX_REFERENCES} Message-IDs", field="received.references"
        )
    refs = tuple(_message_id(r, f"received.references[{i}]") for i, r in enumerate(references))
    text = _text(value, "text", MAX_QUOTED_CHARS)
    if not text and value.get("html"):
        text = html_to_text(_text(value, "html", MAX_QUOTED_CHARS * 2))
    return Received(
        mode=mode,
        message_id_header=header,
        references=refs,
        message_id=validation.optional_identifier({"message_id": value.get("message_id")}, "message_id"),
        subject=_text(value, "subject", 998),
        sender=_text(value, "from", 500),
        date=_text(value, "date", 100),
        text=text[:MAX_QUOTED_CHARS],
    )


def _message_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("must be a Message-ID like <id@host>", field=field)
    value = value.strip()
    if not value.startswith("<"):
        value = f"<{value}>"
    if not _MESSAGE_ID.fullmatch(value) or len(value) > 998:
        raise InvalidInput("must be a Message-ID like <id@host>", field=field)
    return value


def _text(value: dict[str, Any], name: str, limit: int) -> str:
    raw = value.get(name)
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise InvalidInput("must be text", field=f"received.{name}")
    if len(raw) > limit:
        raise InvalidInput(f"is longer than {limit} characters", field=f"received.{name}")
    return raw


def prefixed_subject(mode: str, subject: str) -> str:
    """The answer's subject: one "Re: " (or "Fwd: ") in front, never two."""
    pattern, prefix = (_REPLY_PREFIX, "Re: ") if mode == "reply" else (_FORWARD_PREFIX, "Fwd: ")
    bare = pattern.sub("", subject or "", count=1).strip()
    return prefix + bare


def literal_subject(text: str) -> str:
    """A received subject as a subject source that renders as itself: text with braces becomes
    one Jinja2 string literal, so a client's "{{ x }}" or "{subject}" is never a variable."""
    if not any(c in text for c in "{}%#"):
        return text
    return '{{ "' + text.replace("\\", "\\\\").replace('"', '\\"') + '" }}'


def _entities(text: str) -> str:
    """Escaped HTML with braces as entities: quoted text is never a variable."""
    return escape(text).replace("{", "&#123;").replace("}", "&#125;").replace("%", "&#37;")


def quoted_html(received: Received) -> str:
    """The received email quoted below the answer."""
    body = _entities(received.text).replace("\n", "<br>\n")
    if received.mode == "forward":
        lines = ["---------- Forwarded message ---------"]
        lines += [
            f"{label}: {value}"
            for label, value in (
                ("From", received.sender),
                ("Date", received.date),
                ("Subject", received.subject),
            )
            if value
        ]
        head = "<br>\n".join(_entities(line) for line in lines)
        return f'<div class="mailer-forward">{head}<br><br>\n{body}</div>'
    said = " ".join(p for p in (received.date, received.sender) if p)
    head = f"<p>{_entities(said)} wrote:</p>\n" if said else ""
    style = "margin:0 0 0 .8ex;border-left:1px solid #ccc;padding-left:1ex"
    return f'{head}<blockquote type="cite" style="{style}">{body}</blockquote>'


def answer_html(received: Received, html: str) -> str:
    """The compose's own HTML with the received email quoted under it."""
    return f"{html}\n<br>\n{quoted_html(received)}" if html else quoted_html(received)
