"""Real SMTP servers for tests: aiosmtpd on 127.0.0.1, in a thread, on a free port.

    with smtp_server() as server:
        ...send to server.host, server.port...
        assert server.messages[0].parsed()["Subject"] == "..."

A `ScriptedHandler` records what arrives and can misbehave on purpose: refuse the sender
or some recipients, answer DATA with scripted replies, or hang up in the middle of DATA.
`server.connections` counts the TCP connections clients opened, and
`server.drop_connections()` hangs up on every open one (a server that closes idle
connections). `make_tls(tmp_path)` gives a throwaway CA and a certificate for
127.0.0.1/localhost to serve implicit TLS or STARTTLS with.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # the message exactly as the client sent it (CRLF line ends)

    def parsed(self) -> EmailMessage:
        return cast(EmailMessage, email.parser.BytesParser(policy=email.policy.default).parsebytes(self.data))


@dataclass
class ScriptedHandler:
    """An aiosmtpd handler that records accepted messages and answers as scripted.

    mail_reply: answer MAIL FROM with this (e.g. "550 5.7.1 sender rejected") instead of 250.
    rcpt_replies: address (lower case) -> the reply refusing it, e.g. "550 5.1.1 no such user".
    data_replies: replies for the first DATA commands, in order; 250 afterwards.
    drop_on_data: hang up after the message arrived, before answering it.
    """

    mail_reply: str | None = None
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    drop_on_data: bool = False
    messages: list[ReceivedMessage] = field(default_factory=list)
    data_attempts: int = 0  # DATA transactions that reached the end of the message

    async def handle_MAIL(self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]):
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]):
        refusal = self.rcpt_replies.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.data_attempts += 1
        if self.drop_on_data:
            assert server.transport is not None
            server.transport.close()
            return "250 never heard by the client"
        if self.data_replies:
            return self.data_replies.pop(0)
        content = envelope.original_content or envelope.content
        self.messages.append(ReceivedMessage(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(content)))
        return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"


class Credentials:
    """An aiosmtpd `authenticator` that accepts exactly one login and password."""

    def __init__(self, login: str, password: str) -> None:
        self.login = login.encode()
        self.password = password.encode()
        self.attempts = 0
        self.accepted = 0

    def __call__(self, server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        self.attempts += 1
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (self.login, self.password)
        self.accepted += ok
        return AuthResult(success=ok, handled=False)


class _Tracker:
    """Counts connections and keeps the open ones so a test can hang up on them."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.total = 0
        self.open: list[SMTP] = []


class _TrackedSMTP(SMTP):
    def __init__(self, *args: Any, tracker: _Tracker, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tracker = tracker

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # STARTTLS calls this again on the same connection
        super().connection_made(transport)
        if first:
            with self._tracker.lock:
                self._tracker.total += 1
                self._tracker.open.append(self)
                self._tracker.lock.notify_all()

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        with self._tracker.lock:
            if self in self._tracker.open:
                self._tracker.open.remove(self)
            self._tracker.lock.notify_all()


class _Controller(Controller):
    """aiosmtpd's Controller on port 0: learns the port the OS chose before its self-test."""

    def __init__(self, *args: Any, tracker: _Tracker, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tracker = tracker

    def factory(self) -> SMTP:
        return _TrackedSMTP(self.handler, tracker=self.tracker, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        server = cast(asyncio.Server, self.server)
        self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SmtpTestServer:
    host: str
    port: int
    handler: ScriptedHandler
    _controller: _Controller = field(repr=False)

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self.handler.messages

    @property
    def connections(self) -> int:
        """Client connections opened since the server started."""
        return self._controller.tracker.total

    def open_connections(self, wait_for: int | None = None, timeout: float = 5.0) -> int:
        """Connections open now; with `wait_for`, first wait (a while) until that many are."""
        tracker = self._controller.tracker
        with tracker.lock:
            if wait_for is not None:
                tracker.lock.wait_for(lambda: len(tracker.open) == wait_for, timeout)
            return len(tracker.open)

    def drop_connections(self, timeout: float = 5.0) -> None:
        """Hang up on every open connection, and wait until the server saw them close."""
        tracker = self._controller.tracker
        with tracker.lock:
            transports = [smtp.transport for smtp in tracker.open if smtp.transport is not None]
        for transport in transports:
            self._controller.loop.call_soon_threadsafe(transport.close)
        with tracker.lock:
            if not tracker.lock.wait_for(lambda: not tracker.open, timeout):
                raise TimeoutError("the server did not close its connections")


@contextmanager
def smtp_server(
    handler: ScriptedHandler | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    tls_context: ssl.SSLContext | None = None,
    require_starttls: bool = False,
    authenticator: Callable[..., AuthResult] | None = None,
    auth_require_tls: bool = True,
    **smtp_kwargs: Any,
) -> Iterator[SmtpTestServer]:
    """A running aiosmtpd server on 127.0.0.1 (implicit TLS with `ssl_context`)."""
    handler = handler or ScriptedHandler()
    tracker = _Tracker()
    controller = _Controller(
        handler,
        hostname=HOST,
        port=0,
        tracker=tracker,
        ssl_context=ssl_context,
        server_hostname="mx.test",
        tls_context=tls_context,
        require_starttls=require_starttls,
        authenticator=authenticator,
        auth_require_tls=auth_require_tls,
        **smtp_kwargs,
    )
    controller.start()
    with tracker.lock:  # forget the controller's own start-up probe
        tracker.lock.wait_for(lambda: not tracker.open, 5.0)
        tracker.total = 0
    try:
        yield SmtpTestServer(HOST, controller.port, handler, controller)
    finally:
        controller.stop()


@dataclass(frozen=True)
class TlsMaterial:
    """A throwaway CA, trusted only through `ca_file`, and a server context signed by it."""

    ca_file: str
    server_context: ssl.SSLContext


def make_tls(directory: Path, identities: Iterable[str] = (HOST, "localhost")) -> TlsMaterial:
    ca = trustme.CA()
    ca_file = directory / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*identities).configure_cert(server_context)
    return TlsMaterial(str(ca_file), server_context)
