"""The local stack's SMTP server: accepts every message, keeps it in memory, shows it on a page.

SMTP (aiosmtpd) and the page (http.server) both listen on 127.0.0.1 on free ports. AUTH PLAIN
and LOGIN succeed with any credentials over plain text, so a mailbox saved with a login works
against it (with MAILER_ALLOW_PLAINTEXT_SMTP). The page lists messages newest first and shows
each one's text and HTML; everything from a message is escaped, and its HTML renders only
inside a sandboxed iframe (`srcdoc`) that cannot run scripts. `/messages.json` gives the same
data to scripts and tests. `wait_for` blocks on a condition variable, never on a polling sleep.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import html
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from mailer_core.base.clock import SYSTEM_CLOCK, Clock

# Room for a 100 MB attachment after base64 (4/3) and the rest of the message.
DATA_SIZE_LIMIT = 150 * 1024 * 1024
_CSP = "script-src 'none'; object-src 'none'; form-action 'none'"


@dataclass(frozen=True)
class SinkAttachment:
    filename: str | None
    content_type: str
    size: int


@dataclass(frozen=True)
class SinkMessage:
    """One received message: the SMTP envelope, the raw bytes and the parsed parts."""

    id: int  # arrival number, from 1
    received_at: datetime
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    subject: str
    from_: str
    to: str
    cc: str
    date: str
    message_id: str
    text: str | None
    html: str | None
    headers: tuple[tuple[str, str], ...]
    attachments: tuple[SinkAttachment, ...]
    auth_login: str | None

    def message(self) -> EmailMessage:
        """The message parsed again, for assertions on any part of it."""
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at.isoformat(),
            "mail_from": self.mail_from,
            "rcpt_tos": list(self.rcpt_tos),
            "subject": self.subject,
            "from": self.from_,
            "to": self.to,
            "cc": self.cc,
            "date": self.date,
            "message_id": self.message_id,
            "text": self.text,
            "html": self.html,
            "headers": [list(h) for h in self.headers],
            "attachments": [
                {"filename": a.filename, "content_type": a.content_type, "size": a.size}
                for a in self.attachments
            ],
            "auth_login": self.auth_login,
            "size": len(self.raw),
        }


def _body(msg: EmailMessage, kind: str) -> str | None:
    part = msg.get_body(preferencelist=(kind,))
    if part is None:
        return None
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, KeyError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
    return content if isinstance(content, str) else None


def parse_message(
    number: int,
    received_at: datetime,
    mail_from: str,
    rcpt_tos: tuple[str, ...],
    raw: bytes,
    login: str | None,
) -> SinkMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)

    def header(name: str) -> str:
        try:
            return str(msg.get(name, "") or "")
        except (ValueError, IndexError):  # an unparsable header: keep its raw text
            return str(msg.get_all(name, [""])[0])

    attachments = []
    for part in msg.iter_attachments():
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        attachments.append(SinkAttachment(part.get_filename(), part.get_content_type(), size))
    return SinkMessage(
        id=number,
        received_at=received_at,
        mail_from=mail_from,
        rcpt_tos=rcpt_tos,
        raw=raw,
        subject=header("Subject"),
        from_=header("From"),
        to=header("To"),
        cc=header("Cc"),
        date=header("Date"),
        message_id=header("Message-ID"),
        text=_body(msg, "plain"),
        html=_body(msg, "html"),
        headers=tuple((k, str(v)) for k, v in msg.raw_items()),
        attachments=tuple(attachments),
        auth_login=login,
    )


def _hide_aiosmtpd_deprecation(record: logging.LogRecord) -> bool:
    """aiosmtpd 1.4 warns about its own legacy attribute on every login; not ours to fix."""
    return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_hide_aiosmtpd_deprecation)


def _accept_any_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """Every login succeeds; only the login name is kept, never the password."""
    login = auth_data.login if isinstance(auth_data, LoginPassword) else b""
    return AuthResult(success=True, auth_data=LoginPassword(login, b""))


class _Controller(Controller):
    """aiosmtpd's controller, able to listen on port 0: it learns the port the OS chose."""

    def _trigger_server(self) -> None:
        server = self.server
        if self.port == 0 and isinstance(server, asyncio.Server):
            self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpSink:
    """An SMTP server that keeps everything, plus a page that shows it."""

    def __init__(
        self, *, host: str = "127.0.0.1", smtp_port: int = 0, web_port: int = 0, clock: Clock = SYSTEM_CLOCK
    ):
        self.host = host
        self.clock = clock
        self._smtp_port = smtp_port
        self._web_port = web_port
        self._messages: list[SinkMessage] = []
        self._received = 0  # arrival numbers keep counting across clear()
        self._arrived = threading.Condition()
        self._controller: _Controller | None = None
        self._web: ThreadingHTTPServer | None = None
        self._web_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> SmtpSink:
        self._controller = _Controller(
            _Handler(self),
            hostname=self.host,
            port=self._smtp_port,
            server_hostname="mailer-smtp-sink.localhost",  # no getfqdn(): no DNS on this network
            authenticator=_accept_any_login,
            auth_require_tls=False,
            data_size_limit=DATA_SIZE_LIMIT,
            enable_SMTPUTF8=True,
        )
        self._controller.start()
        handler = type("_BoundPage", (_Page,), {"sink": self})
        self._web = ThreadingHTTPServer((self.host, self._web_port), handler)
        self._web.daemon_threads = True
        self._web_thread = threading.Thread(
            target=self._web.serve_forever, args=(0.05,), name="smtp-sink-web", daemon=True
        )
        self._web_thread.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._web is not None:
            self._web.shutdown()
            self._web.server_close()
            self._web = None
        if self._web_thread is not None:
            self._web_thread.join(timeout=5)
            self._web_thread = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def smtp_port(self) -> int:
        if self._controller is None:
            raise RuntimeError("the sink is not started")
        return int(self._controller.port)

    @property
    def web_url(self) -> str:
        if self._web is None:
            raise RuntimeError("the sink is not started")
        return f"http://{self.host}:{self._web.server_address[1]}"

    # -- messages --------------------------------------------------------------------------

    @property
    def messages(self) -> list[SinkMessage]:
        """Every message so far, in arrival order."""
        with self._arrived:
            return list(self._messages)

    def clear(self) -> None:
        with self._arrived:
            self._messages.clear()

    def _keep(self, envelope: Envelope, session: Session) -> SinkMessage:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        auth = session.auth_data
        login = auth.login.decode("utf-8", "replace") if isinstance(auth, LoginPassword) else None
        with self._arrived:
            self._received += 1
            message = parse_message(
                self._received,
                self.clock.now(),
                str(envelope.mail_from or ""),
                tuple(envelope.rcpt_tos),
                raw,
                login,
            )
            self._messages.append(message)
            self._arrived.notify_all()
        return message

    def wait_for(
        self, predicate: Callable[[SinkMessage], bool] = lambda m: True, timeout: float = 5.0
    ) -> SinkMessage:
        """The first message (in arrival order) that satisfies `predicate`, waiting for it to come."""
        found: list[SinkMessage] = []

        def ready() -> bool:
            found[:] = [m for m in self._messages if predicate(m)][:1]
            return bool(found)

        with self._arrived:
            if not self._arrived.wait_for(ready, timeout):
                raise TimeoutError(f"no matching message within {timeout} s ({len(self._messages)} received)")
        return found[0]

    def wait_for_count(self, count: int, timeout: float = 5.0) -> list[SinkMessage]:
        """Wait until at least `count` messages arrived; return them all."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(f"{len(self._messages)} of {count} messages within {timeout} s")
            return list(self._messages)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = self.sink._keep(envelope, session)
        return f"250 2.0.0 Ok: kept as message {message.id}"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;width:100%}
td,th{padding:.35rem .6rem;border-bottom:1px solid #ddd;text-align:left}
pre{white-space:pre-wrap;background:#f6f6f6;padding:.8rem}
iframe{width:100%;height:32rem;border:1px solid #ccc}
.muted{color:#777}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, *, refresh: bool = False) -> str:
    meta = '<meta http-equiv="refresh" content="5">' if refresh else ""
    return (
        f'<!doctype html><html><head><meta charset="utf-8">{meta}<title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def render_list(messages: list[SinkMessage]) -> str:
    rows = "".join(
        f"<tr><td>{m.id}</td><td>{_e(m.received_at.strftime('%Y-%m-%d %H:%M:%S'))}</td>"
        f"<td>{_e(m.from_ or m.mail_from)}</td><td>{_e(m.to or ', '.join(m.rcpt_tos))}</td>"
        f'<td><a href="/messages/{m.id}">{_e(m.subject or "(no subject)")}</a></td></tr>'
        for m in reversed(messages)
    )
    table = (
        f"<table><tr><th>#</th><th>received</th><th>from</th><th>to</th><th>subject</th></tr>{rows}</table>"
        if messages
        else '<p class="muted">No messages yet.</p>'
    )
    body = (
        f"<h1>SMTP sink</h1><p class=muted>{len(messages)} message(s), newest first. "
        f'<a href="/messages.json">JSON</a></p>{table}'
    )
    return _page("SMTP sink", body, refresh=True)


def render_message(m: SinkMessage) -> str:
    fields = [
        ("From", m.from_),
        ("To", m.to),
        ("Cc", m.cc),
        ("Subject", m.subject),
        ("Date", m.date),
        ("Message-ID", m.message_id),
        ("Envelope from", m.mail_from),
        ("Envelope to", ", ".join(m.rcpt_tos)),
        ("Login", m.auth_login or ""),
        ("Attachments", ", ".join(f"{a.filename} ({a.content_type}, {a.size} B)" for a in m.attachments)),
    ]
    head = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in fields if v)
    parts = [f'<p><a href="/">&larr; all messages</a> · <a href="/messages/{m.id}/raw">raw</a></p>']
    parts.append(f"<h1>{_e(m.subject or '(no subject)')}</h1><table>{head}</table>")
    if m.html is not None:
        # The sandbox allows no scripts, forms or same-origin access; links open in a new tab.
        doc = '<base target="_blank">' + m.html
        parts.append(
            '<h2>HTML</h2><iframe sandbox="allow-popups allow-popups-to-escape-sandbox" '
            f'referrerpolicy="no-referrer" srcdoc="{_e(doc)}"></iframe>'
        )
    if m.text is not None:
        parts.append(f"<h2>Text</h2><pre>{_e(m.text)}</pre>")
    return _page(m.subject or "message", "".join(parts))


class _Page(BaseHTTPRequestHandler):
    sink: SmtpSink
    server_version = "MailerSmtpSink/1.0"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        messages = self.sink.messages
        if path == "/":
            self._send(200, "text/html; charset=utf-8", render_list(messages).encode("utf-8"))
        elif path == "/messages.json":
            data = json.dumps([m.to_json() for m in reversed(messages)], ensure_ascii=False).encode("utf-8")
            self._send(200, "application/json", data)
        else:
            found = self._find(path, messages)
            if found is None:
                self._send(404, "text/plain; charset=utf-8", b"not found")
            elif path.endswith("/raw"):
                self._send(200, "text/plain; charset=utf-8", found.raw)
            else:
                self._send(200, "text/html; charset=utf-8", render_message(found).encode("utf-8"))

    @staticmethod
    def _find(path: str, messages: list[SinkMessage]) -> SinkMessage | None:
        parts = path.strip("/").split("/")
        if (
            len(parts) in (2, 3)
            and parts[0] == "messages"
            and parts[1].isdigit()
            and parts[2:] in ([], ["raw"])
        ):
            number = int(parts[1])
            return next((m for m in messages if m.id == number), None)
        return None

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""
