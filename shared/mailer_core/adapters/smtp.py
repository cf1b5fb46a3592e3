"""The SMTP transport: the only module of Mailer that talks SMTP.

`open_session` opens one authenticated connection; `SmtpPool` keeps one per mailbox for a
whole batch and replaces a connection the server dropped while it sat idle. Every
failure comes out as one `SmtpFailure` whose `kind` tells the caller what to do:
retry later (temporary, connection) or stop and report (permanent, auth, tls).
The mailbox password goes to the server and nowhere else: not into an exception, not
into a log line (smtplib's debug output, which would print it, stays off). The server's host
must lead to addresses `SmtpSettings.addresses` allows (public ones: a user names the host),
checked when the connection is made and connected to as checked.

`timeout` bounds each socket read; `time_limit` bounds a whole operation (connecting with the
login, and each message's send): a timer shuts the socket when it is up, so a server that
answers one byte every 20 s cannot hold a worker for ever. The failure is a `connection` one
that says so (in the data stage, as any cut there: the server may have the message).

A connection lost once the whole message went out (the final dot) and before the server's
answer leaves the outcome unknown (`SmtpFailure.outcome_unknown`): a server takes a message
when it has it, and a drop, a crash or a read timeout may come between that and its "250"
reaching us (RFC 1047). Sending it again may deliver it twice; a cut before the final dot
cannot have delivered it (a server drops a DATA that never ended).
"""

from __future__ import annotations

import base64
import copy
import logging
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal

from mailer_core.adapters import mime
from mailer_core.base.network_addresses import DEFAULT_POLICY, AddressPolicy, AddressRefused, checked_address
from mailer_core.base.validation import breaks_a_command
from mailer_core.base.watchdog import Watchdog

logger = logging.getLogger(__name__)

Security = Literal["ssl", "starttls", "none"]
FailureKind = Literal["temporary", "permanent", "auth", "tls", "connection"]
# Where a send failed: before the message's bytes went out ("connect", "envelope") or
# while they were going out or being answered ("data"), when the server may have them.
Stage = Literal["connect", "envelope", "data"]


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: Security
    login: str
    password: str = field(repr=False)
    timeout: float = 30.0
    ca_file: str = ""  # an extra CA bundle to trust (tests use trustme), besides the system's
    # The addresses the host may lead to (the local stack and the tests allow loopback).
    addresses: AddressPolicy = DEFAULT_POLICY
    time_limit: float | None = None  # seconds for one operation: connect and log in, or one send


class SmtpFailure(Exception):
    """A send or a connection failed; `kind` says whether trying again can help."""

    def __init__(
        self,
        kind: FailureKind,
        reply: str,
        code: int | None = None,
        *,
        stage: Stage = "connect",
        handed_over: bool = False,
    ) -> None:
        super().__init__(kind, reply, code)  # the order __init__ takes (so it pickles)
        self.kind: FailureKind = kind
        self.code = code
        self.reply = reply
        self.stage: Stage = stage
        # The whole message, final dot included, had gone out when it failed.
        self.handed_over = handed_over

    @property
    def retryable(self) -> bool:
        return self.kind in ("temporary", "connection")

    @property
    def outcome_unknown(self) -> bool:
        """The message went out whole and the connection failed before the server answered:
        the server may have taken it, and sending it again may deliver it twice."""
        return self.handed_over and self.kind == "connection"

    def __str__(self) -> str:
        return f"{self.code} {self.reply}" if self.code is not None else self.reply


@dataclass(frozen=True)
class SendResult:
    reply: str  # the server's answer to the end of DATA, e.g. "250 2.0.0 Ok: queued as 4C1F"
    refused: dict[str, str] = field(default_factory=dict)  # address -> "code words"


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _by_code(code: int, reply: bytes | str, stage: Stage) -> SmtpFailure:
    kind: FailureKind = "temporary" if 400 <= code < 500 else "permanent"
    return SmtpFailure(kind, _text(reply), code, stage=stage)


def classify(error: BaseException, stage: Stage = "connect") -> SmtpFailure:
    """The `SmtpFailure` for an exception raised by smtplib, ssl or the socket layer."""
    if isinstance(error, SmtpFailure):
        return error
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return SmtpFailure("auth", _text(error.smtp_error), error.smtp_code, stage=stage)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = max(error.recipients.values(), key=lambda answer: answer[0])
        return _by_code(code, reply, stage)
    if isinstance(error, smtplib.SMTPResponseException):
        return _by_code(error.smtp_code, error.smtp_error, stage)
    if isinstance(error, AddressRefused):  # the host leads where Mailer does not connect
        return SmtpFailure("permanent", str(error), stage=stage)
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return SmtpFailure("connection", str(error) or "server disconnected", stage=stage)
    if isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return SmtpFailure("connection", f"TLS connection closed: {error}", stage=stage)
    if isinstance(error, ssl.SSLError):  # includes certificate verification failures
        return SmtpFailure("tls", str(error), stage=stage)
    if isinstance(error, OSError):  # refused, reset, timed out, DNS failure
        return SmtpFailure("connection", str(error) or type(error).__name__, stage=stage)
    return SmtpFailure("permanent", str(error) or type(error).__name__, stage=stage)


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """A verifying context: the system's CAs, plus `settings.ca_file` when set."""
    try:
        context = ssl.create_default_context()
        if settings.ca_file:
            context.load_verify_locations(cafile=settings.ca_file)
    except (OSError, ValueError) as error:
        raise SmtpFailure("tls", f"cannot load CA file {settings.ca_file!r}: {error}") from None
    return context


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _data_from_spool(
    client: smtplib.SMTP, spool: mime.Spool, on_data_sent: Callable[[], None] | None = None
) -> tuple[int, bytes]:
    """DATA as smtplib's `data` does it (dot-stuffing, the final dot), sent in 1 MB pieces.

    `on_data_sent` is called once the final dot is out, before the server's answer: the wait
    for that answer (the provider scanning and storing the message) is the longest of a send.
    """
    client.putcmd("data")
    code, reply = client.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    # Each piece is sent once the next is known, so the last goes out in one write with the
    # final dot: a dot sent alone would wait for the server's delayed ACK (Nagle), ~40 ms.
    unsent, pending, last = b"", b"", b"\r\n"
    for chunk in spool.chunks(1024 * 1024):
        data = pending + chunk
        cut = data.rfind(b"\n") + 1  # whole lines only: each piece starts at the start of a line
        if cut:
            if unsent:
                client.send(unsent)
            unsent = _LEADING_DOT.sub(b"..", data[:cut])
            last = data[max(0, cut - 2) : cut]
        pending = data[cut:]
    if pending:
        unsent += _LEADING_DOT.sub(b"..", pending)
        last = pending[-2:]
    client.send(unsent + (b"" if last.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    if on_data_sent is not None:
        try:
            on_data_sent()
        except Exception:  # the caller's business: it must not cost the message its answer
            logger.exception("on_data_sent failed")
    try:
        return client.getreply()
    except (smtplib.SMTPException, OSError) as error:  # the server may have the message
        failure = classify(error, "data")
        failure.handed_over = True
        raise failure from None


def _explained(watchdog: Watchdog, failure: SmtpFailure) -> SmtpFailure:
    """The failure as the operation's time limit explains it, when the limit caused it."""
    if not watchdog.expired:
        return failure
    return SmtpFailure("connection", watchdog.words, stage=failure.stage, handed_over=failure.handed_over)


class SmtpSession:
    """One open, authenticated SMTP connection. After a failed send, close it."""

    def __init__(self, client: smtplib.SMTP, time_limit: float | None = None) -> None:
        self._client = client
        self._time_limit = time_limit

    def send(
        self,
        message: EmailMessage,
        from_addr: str,
        to_addrs: Sequence[str],
        on_data_sent: Callable[[], None] | None = None,
    ) -> SendResult:
        """Hand `message` over for `to_addrs`; raises SmtpFailure unless someone accepted it.

        Recipients refused while others were accepted come back in `refused`. Only the
        envelope decides who gets the message: a Bcc header, if any, is not sent. A message
        written beforehand (`mime.spool`) is streamed from its spool; any other is written now.
        `on_data_sent`: see `_data_from_spool`.
        """
        if not to_addrs:
            raise SmtpFailure("permanent", "no recipients", stage="envelope")
        spool = mime.spooled(message)
        if message["Bcc"] is not None:  # the envelope carries Bcc; a header would reveal it
            message = copy.copy(message)
            del message["Bcc"]
            spool = None
        if spool is None:
            spool = mime.write(message)
        watchdog = Watchdog(self._time_limit)
        watchdog.watch(self._client.sock)
        try:
            result = self._send(spool, from_addr, to_addrs, on_data_sent)
        except SmtpFailure as failure:
            raise _explained(watchdog, failure) from None
        finally:
            watchdog.stop()
        if watchdog.expired:  # smtplib reads a reply cut short as a whole one ("250 queued, ve")
            raise _explained(watchdog, SmtpFailure("connection", "cut", stage="data", handed_over=True))
        return result

    def _send(
        self,
        spool: mime.Spool,
        from_addr: str,
        to_addrs: Sequence[str],
        on_data_sent: Callable[[], None] | None,
    ) -> SendResult:
        client = self._client
        try:
            options = self._mail_options(from_addr, to_addrs, spool.size)
            code, reply = client.mail(from_addr, options)
            if code != 250:
                raise _by_code(code, reply, "envelope")
            refused: dict[str, tuple[int, bytes]] = {}
            for address in to_addrs:
                code, reply = client.rcpt(address)
                if code == 421:
                    raise _by_code(code, reply, "envelope")
                if code not in (250, 251):
                    refused[address] = (code, reply)
            if len(refused) == len(to_addrs):
                raise classify(smtplib.SMTPRecipientsRefused(refused), "envelope")
        except (smtplib.SMTPException, OSError) as error:
            raise classify(error, "envelope") from None
        try:
            code, reply = _data_from_spool(client, spool, on_data_sent)
        except (smtplib.SMTPException, OSError) as error:
            raise classify(error, "data") from None
        if code != 250:
            raise _by_code(code, reply, "data")
        return SendResult(
            reply=f"{code} {_text(reply)}",
            refused={address: f"{refusal[0]} {_text(refusal[1])}" for address, refusal in refused.items()},
        )

    def _mail_options(self, from_addr: str, to_addrs: Sequence[str], size: int) -> list[str]:
        options: list[str] = []
        if self._client.has_extn("size"):
            options.append(f"SIZE={size}")
        if not all(address.isascii() for address in (from_addr, *to_addrs)):
            if not self._client.has_extn("smtputf8"):
                raise SmtpFailure(
                    "permanent", "the server does not accept non-ASCII addresses", stage="envelope"
                )
            options.append("SMTPUTF8")
        return options

    def is_alive(self) -> bool:
        """Whether the server still answers (a NOOP); False for a dropped connection."""
        try:
            code, _ = self._client.noop()
        except (smtplib.SMTPException, OSError):
            return False
        return code == 250

    def close(self) -> None:
        """QUIT politely; a connection that is already gone is just closed."""
        try:
            self._client.quit()
        except (smtplib.SMTPException, OSError):
            self._client.close()


def open_session(settings: SmtpSettings) -> SmtpSession:
    """Connect, say EHLO, secure the connection as settings say, and log in.

    A login or password with a CR, LF or NUL is refused before any connection: it could end
    the AUTH command early or shift AUTH PLAIN's parts."""
    if breaks_a_command(settings.login) or breaks_a_command(settings.password):
        raise SmtpFailure("auth", "the login or password holds a line break or NUL; nothing was sent")
    context = _tls_context(settings) if settings.security != "none" else None
    client: smtplib.SMTP | None = None
    watchdog = Watchdog(settings.time_limit)
    client_class = _pinned_client(settings, watchdog)
    try:
        if settings.security == "ssl":
            client = client_class(settings.host, settings.port, timeout=settings.timeout, context=context)
        else:
            client = client_class(settings.host, settings.port, timeout=settings.timeout)
        client.ehlo()
        if settings.security == "starttls":
            if not client.has_extn("starttls"):
                raise SmtpFailure("tls", f"{settings.host} does not offer STARTTLS")
            client.starttls(context=context)
            client.ehlo()
        if settings.login:
            if not client.has_extn("auth"):
                raise SmtpFailure("auth", f"{settings.host} does not offer AUTH on this connection")
            _login(client, settings.login, settings.password)
    except BaseException as error:
        if client is not None:
            client.close()
        if isinstance(error, (smtplib.SMTPException, OSError, SmtpFailure)):
            failure = _explained(watchdog, classify(error))
            logger.info("SMTP connection to %s:%s failed: %s", settings.host, settings.port, failure)
            raise failure from None
        raise
    finally:
        watchdog.stop()
    if watchdog.expired:  # a reply cut short may have read as a whole one
        client.close()
        raise _explained(watchdog, SmtpFailure("connection", "cut"))
    return SmtpSession(client, settings.time_limit)


def _pinned_client(settings: SmtpSettings, watchdog: Watchdog) -> Callable[..., smtplib.SMTP]:
    """smtplib's client for the security asked, connecting only to an address the policy allows:
    the host is resolved, every address checked, and the socket goes to the checked one (TLS
    still verifies the certificate for the host's name)."""
    policy = settings.addresses
    base = smtplib.SMTP_SSL if settings.security == "ssl" else smtplib.SMTP

    class Pinned(base):  # type: ignore[misc, valid-type]
        def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
            sock: socket.socket = super()._get_socket(checked_address(host, port, policy), port, timeout)
            watchdog.watch(sock)
            return sock

    return Pinned


def _login(client: smtplib.SMTP, login: str, password: str) -> None:
    if (login + password).isascii():
        client.login(login, password)
        return
    # smtplib encodes credentials as ASCII; AUTH PLAIN (RFC 4616) carries UTF-8.
    if "plain" not in client.esmtp_features.get("auth", "").lower().split():
        raise SmtpFailure("auth", "a non-ASCII login or password needs AUTH PLAIN, which the server lacks")
    token = base64.b64encode(f"\0{login}\0{password}".encode()).decode("ascii")
    code, reply = client.docmd("AUTH", f"PLAIN {token}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


class SmtpPool:
    """One session per mailbox (`key`), kept across batches; `close` (or `with`) ends them all.

    A session used within `fresh_seconds` is trusted without a NOOP (one round trip less per
    email: the envelope step still catches a dead connection and reconnects once); one idle
    longer than `idle_seconds` is replaced without asking, as providers hang up on idle
    clients after a few minutes.
    """

    def __init__(
        self,
        connect: Callable[[SmtpSettings], SmtpSession] = open_session,
        *,
        fresh_seconds: float = 30.0,
        idle_seconds: float = 240.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._sessions: dict[str, tuple[SmtpSettings, SmtpSession]] = {}
        self._last_used: dict[str, float] = {}
        self._fresh_seconds = fresh_seconds
        self._idle_seconds = idle_seconds
        self._monotonic = monotonic

    def _usable(self, key: str, settings: SmtpSettings) -> SmtpSession | None:
        cached = self._sessions.get(key)
        if cached is None:
            return None
        cached_settings, session = cached
        idle = self._monotonic() - self._last_used.get(key, float("-inf"))
        if cached_settings != settings or idle > self._idle_seconds:
            self._drop(key)
            return None
        if idle <= self._fresh_seconds or session.is_alive():
            return session
        logger.info("SMTP session for %s is gone; reconnecting", key)
        self._drop(key)
        return None

    def connect(self, key: str, settings: SmtpSettings) -> None:
        """Have the mailbox's session open and logged in now, so that a `send` right after
        starts with the envelope (the send worker takes its rate token in between).

        Raises SmtpFailure as `send` would when the connection or the login fails."""
        if self._usable(key, settings) is None:
            self._open(key, settings)
        else:  # known alive now: `send` need not ask again
            self._last_used[key] = self._monotonic()

    def send(
        self,
        key: str,
        settings: SmtpSettings,
        message: EmailMessage,
        from_addr: str,
        to_addrs: Sequence[str],
        *,
        on_data_sent: Callable[[], None] | None = None,
    ) -> SendResult:
        """Send over the mailbox's session, opening or replacing it as needed.

        A cached session that turns out dead before the message went out (NOOP fails, or
        the server hangs up during the envelope) is replaced once and the send repeated.
        A failure while the message itself was going out is raised as it is: the server
        may hold the message, and the caller decides whether to send again. After any
        failure the mailbox's session is closed and forgotten.
        """
        session = self._usable(key, settings)
        reused = session is not None
        if session is None:
            session = self._open(key, settings)
        try:
            return self._send(key, session, message, from_addr, to_addrs, on_data_sent)
        except SmtpFailure as failure:
            self._drop(key)
            if not (reused and failure.kind == "connection" and failure.stage != "data"):
                raise
        except BaseException:
            self._drop(key)
            raise
        logger.info("SMTP session for %s dropped before the message went out; reconnecting", key)
        session = self._open(key, settings)
        try:
            return self._send(key, session, message, from_addr, to_addrs, on_data_sent)
        except BaseException:
            self._drop(key)
            raise

    def _send(
        self,
        key: str,
        session: SmtpSession,
        message: EmailMessage,
        from_addr: str,
        to_addrs: Sequence[str],
        on_data_sent: Callable[[], None] | None,
    ) -> SendResult:
        result = session.send(message, from_addr, to_addrs, on_data_sent)
        self._last_used[key] = self._monotonic()
        return result

    def _open(self, key: str, settings: SmtpSettings) -> SmtpSession:
        session = self._connect(settings)
        self._sessions[key] = (settings, session)
        self._last_used[key] = self._monotonic()
        return session

    def _drop(self, key: str) -> None:
        cached = self._sessions.pop(key, None)
        self._last_used.pop(key, None)
        if cached is not None:
            _close_quietly(cached[1])

    def close(self) -> None:
        """QUIT every session, ignoring errors."""
        for key in list(self._sessions):
            self._drop(key)

    def __enter__(self) -> SmtpPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _close_quietly(session: SmtpSession) -> None:
    try:
        session.close()
    except Exception:
        logger.debug("ignoring an error while closing an SMTP session", exc_info=True)
