"""The IMAP transport: the only module of Mailer that talks IMAP (with the stdlib's imaplib).

`open_session` connects (implicit TLS, STARTTLS or plain, as `smtp.open_session` does) and
logs in. A session finds the Sent folder (RFC 6154 SPECIAL-USE `\\Sent`, else the usual
names), appends a message to it marked `\\Seen` with the message's date as its internal
date, and reads new mail of a folder without changing it: EXAMINE (read-only) and
`BODY.PEEK`, from the last UID seen, under the folder's UIDVALIDITY. `ImapPool` keeps one
session per mailbox for a batch, as `smtp.SmtpPool` does for SMTP.

Folder names travel in modified UTF-7 (RFC 3501 §5.1.3), which imaplib does not handle:
`encode_folder_name` and `decode_folder_name` do. Every failure comes out as one
`ImapFailure` whose `kind` says what went wrong; `error` keeps the exception underneath.
The password goes to the server only, never into an exception or a log line. The server's
host must lead to addresses `ImapSettings.addresses` allows (public ones: a user names the
host), checked when the connection is made and connected to as checked.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from mailer_core.base.network_addresses import DEFAULT_POLICY, AddressPolicy, checked_address
from mailer_core.base.validation import breaks_a_command
from mailer_core.base.watchdog import Watchdog

if TYPE_CHECKING:  # imaplib is imported where it is used: it costs a cold start ~30 ms
    import imaplib

logger = logging.getLogger(__name__)

Security = Literal["ssl", "starttls", "none"]
FailureKind = Literal["auth", "tls", "connection", "refused", "protocol"]

# Names mail clients and providers give the Sent folder when the server has no SPECIAL-USE,
# in the order they are tried (compared without case, also below an "INBOX" parent).
SENT_NAMES = (
    "Sent",
    "Sent Items",
    "Sent Messages",
    "Sent Mail",
    "Отправленные",
    "Отправленные письма",
    "INBOX.Sent",
    "INBOX/Sent",
)
# Largest literal (bytes) the server may send, one message or header block: a server that
# announces more is cut off (bounces are far smaller); and all a session may receive.
MAX_FETCH_BYTES = 10 * 1024 * 1024
MAX_SESSION_BYTES = 64 * 1024 * 1024
HEADER_BYTES = 64 * 1024  # the header block read of each new message (a partial FETCH)
_FETCH_CHUNK = 25


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    security: Security
    login: str
    password: str = field(repr=False)
    timeout: float = 30.0  # each socket operation
    ca_file: str = ""  # an extra CA bundle to trust (tests use trustme), besides the system's
    # The whole session, connect to logout: past it the socket is shut, whatever the server
    # does (one byte every 20 s never ends a 30 s per-read timeout). None: no limit.
    time_limit: float | None = None
    max_literal: int = MAX_FETCH_BYTES
    max_received: int = MAX_SESSION_BYTES
    # The addresses the host may lead to (the local stack and the tests allow loopback).
    addresses: AddressPolicy = DEFAULT_POLICY


class ImapFailure(Exception):
    """A connection, login or command failed; `reply` keeps the server's own words."""

    def __init__(self, kind: FailureKind, reply: str, error: BaseException | None = None) -> None:
        super().__init__(kind, reply)
        self.kind: FailureKind = kind
        self.reply = reply
        self.error = error  # what raised underneath (socket, ssl or imaplib), if anything

    def __str__(self) -> str:
        return self.reply


# -- modified UTF-7 (RFC 3501 §5.1.3) -------------------------------------------------------


def encode_folder_name(name: str) -> str:
    """A folder name as IMAP sends it: printable ASCII as is, `&` as `&-`, the rest base64."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def decode_folder_name(raw: str) -> str:
    """The readable name of a folder; a name that is not valid modified UTF-7 is kept as is."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char != "&":
            out.append(char)
            i += 1
            continue
        end = raw.find("-", i + 1)
        if end < 0:
            return raw
        chunk = raw[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            try:
                out.append(base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True).decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError):
                return raw
        i = end + 1
    return "".join(out)


def quote(value: str) -> str:
    """An IMAP quoted string (imaplib sends arguments as they are)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- folders ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Folder:
    name: str  # readable (decoded) name
    raw: str  # the name on the wire (modified UTF-7)
    flags: frozenset[str]  # lower case, e.g. {"\\sent", "\\hasnochildren"}
    delimiter: str | None

    @property
    def selectable(self) -> bool:
        return not self.flags & {"\\noselect", "\\nonexistent"}


_LIST_LINE = re.compile(r'^\((?P<flags>[^)]*)\)\s+(?P<delim>"(?:\\.|[^"\\])*"|NIL)\s+(?P<name>.*)$', re.I)


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def parse_list_response(items: Sequence[Any]) -> list[Folder]:
    """Folders from imaplib's LIST data: lines, or (line, literal) pairs for literal names."""
    folders = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, tuple):
            line = item[0].decode("utf-8", "replace")
            name_raw = item[1].decode("utf-8", "replace")
            line = re.sub(r"\{\d+\}$", '""', line)
        else:
            line = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            name_raw = None
        match = _LIST_LINE.match(line.strip())
        if not match:
            continue
        delimiter = None if match["delim"].upper() == "NIL" else _unquote(match["delim"])
        raw = name_raw if name_raw is not None else _unquote(match["name"])
        flags = frozenset(flag.lower() for flag in match["flags"].split())
        folders.append(Folder(decode_folder_name(raw), raw, flags, delimiter))
    return folders


def choose_sent_folder(folders: Iterable[Folder]) -> Folder | None:
    """The folder marked `\\Sent` (RFC 6154), else the first of the usual names present."""
    usable = [f for f in folders if f.selectable]
    for folder in usable:
        if "\\sent" in folder.flags:
            return folder
    by_name: dict[str, Folder] = {}
    for folder in usable:
        by_name.setdefault(folder.name.casefold(), folder)
        if folder.delimiter and folder.name.upper().startswith("INBOX" + folder.delimiter):
            by_name.setdefault(folder.name[6:].casefold(), folder)
    for candidate in SENT_NAMES:
        found = by_name.get(candidate.casefold())
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class FolderState:
    """What EXAMINE tells about a folder: its UIDVALIDITY, the next UID and the count."""

    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True)
class NewMail:
    uid: int
    size: int
    headers: bytes


@dataclass(frozen=True)
class AppendResult:
    folder: str  # readable name
    reply: str  # e.g. "[APPENDUID 1700000000 5] Append completed."
    created: bool = False  # the Sent folder did not exist and was created


def _text(data: Any) -> str:
    if isinstance(data, list):
        data = data[-1] if data else b""
    if isinstance(data, tuple):
        data = data[0]
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return "" if data is None else str(data)


def _error_text(error: BaseException) -> str:
    """imaplib puts the server's bytes into its errors; say them as text."""
    if error.args and isinstance(error.args[0], bytes):
        return error.args[0].decode("utf-8", "replace")
    return str(error)


def classify(error: BaseException, *, during: str = "") -> ImapFailure:
    """The `ImapFailure` for an exception raised by imaplib, ssl or the socket layer."""
    import imaplib

    if isinstance(error, ImapFailure):
        return error
    if isinstance(error, imaplib.IMAP4.abort):
        return ImapFailure("connection", _error_text(error) or "the server closed the connection", error)
    if isinstance(error, imaplib.IMAP4.error):
        kind: FailureKind = "auth" if during == "login" else "refused"
        return ImapFailure(kind, _error_text(error), error)
    if isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return ImapFailure("connection", f"TLS connection closed: {error}", error)
    if isinstance(error, ssl.SSLError):
        return ImapFailure("tls", str(error), error)
    if isinstance(error, OSError):
        return ImapFailure("connection", str(error) or type(error).__name__, error)
    return ImapFailure("protocol", str(error) or type(error).__name__, error)


def _tls_context(settings: ImapSettings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context()
        if settings.ca_file:
            context.load_verify_locations(cafile=settings.ca_file)
    except (OSError, ValueError) as error:
        raise ImapFailure("tls", f"cannot load CA file {settings.ca_file!r}: {error}", error) from None
    return context


class _Guard:
    """A session's limits: its time (base.watchdog) and the bytes the server may send."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.received = 0
        self.watchdog = Watchdog(settings.time_limit)

    @property
    def expired(self) -> bool:
        return self.watchdog.expired

    def watch(self, sock: Any) -> None:
        self.watchdog.watch(sock)

    def take(self, size: int) -> None:
        """Before reading a literal of `size` bytes: refuse one too large, or one too many."""
        import imaplib

        self.received += size
        if size > self.settings.max_literal or self.received > self.settings.max_received:
            raise imaplib.IMAP4.abort(
                f"the server sent {size:,} bytes at once ({self.received:,} in this session); "
                f"the limits are {self.settings.max_literal:,} and {self.settings.max_received:,}"
            )

    def failure(self, failure: ImapFailure) -> ImapFailure:
        """The failure as the session's limit explains it, when the limit caused it."""
        if not self.expired:
            return failure
        return ImapFailure("connection", self.watchdog.words, failure.error or failure)

    def stop(self) -> None:
        self.watchdog.stop()


def _client_class(settings: ImapSettings, guard: _Guard) -> Callable[..., imaplib.IMAP4]:
    """imaplib's client for the security asked, its socket watched and its literals counted.

    It connects only to an address the policy allows: the host is resolved, every address
    checked, and the socket goes to the checked one (TLS verifies the certificate for the name).
    """
    import imaplib

    base: type[imaplib.IMAP4] = imaplib.IMAP4_SSL if settings.security == "ssl" else imaplib.IMAP4

    class Guarded(base):  # type: ignore[misc, valid-type]
        def _create_socket(self, timeout: float | None) -> Any:
            address = checked_address(self.host, self.port, settings.addresses)
            sock: Any = socket.create_connection((address, self.port), timeout)
            guard.watch(sock)
            if settings.security == "ssl":
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
                guard.watch(sock)
            return sock

        def read(self, size: int) -> bytes:
            guard.take(size)
            return bytes(super().read(size))

    return Guarded


class ImapSession:
    """One open, logged-in IMAP connection."""

    def __init__(self, client: imaplib.IMAP4, login_reply: str = "", guard: _Guard | None = None) -> None:
        self._client = client
        self.login_reply = login_reply
        self._sent: Folder | None = None
        self._guard = guard

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(str(c).upper() for c in self._client.capabilities)

    def _ok(self, response: tuple[str, Any], what: str) -> Any:
        typ, data = response
        if typ != "OK":
            raise ImapFailure("refused", f"{what}: {typ} {_text(data)}".strip())
        return data

    def _call(self, what: str, fn: Callable[..., tuple[str, Any]], *args: Any) -> Any:
        import imaplib

        try:
            return self._ok(fn(*args), what)
        except ImapFailure as failure:
            raise self._explained(failure) from None
        except (imaplib.IMAP4.error, OSError) as error:
            raise self._explained(classify(error)) from None

    def _explained(self, failure: ImapFailure) -> ImapFailure:
        return self._guard.failure(failure) if self._guard is not None else failure

    # folders
    def folders(self) -> list[Folder]:
        return parse_list_response(self._call("LIST", self._client.list, '""', "*"))

    def sent_folder(self, *, create: bool = True) -> tuple[Folder, bool]:
        """The Sent folder, found once per session; created as "Sent" when there is none."""
        if self._sent is not None:
            return self._sent, False
        folders = self.folders()
        found = choose_sent_folder(folders)
        created = False
        if found is None:
            if not create:
                raise ImapFailure("refused", "the mailbox has no Sent folder")
            found = self._create_sent(folders)
            created = True
        self._sent = found
        return found, created

    def _create_sent(self, folders: list[Folder]) -> Folder:
        inbox = next((f for f in folders if f.name.upper() == "INBOX"), None)
        delimiter = inbox.delimiter if inbox is not None else None
        others = [f for f in folders if f.name.upper() != "INBOX"]
        # Servers whose folders all live below INBOX (Courier and some hosts) want "INBOX.Sent".
        below_inbox = bool(delimiter and others) and all(
            f.name.upper().startswith(f"INBOX{delimiter}") for f in others
        )
        name = f"INBOX{delimiter}Sent" if below_inbox else "Sent"
        raw = encode_folder_name(name)
        self._call("CREATE", self._client.create, quote(raw))
        self._call("SUBSCRIBE", self._client.subscribe, quote(raw))
        return Folder(name, raw, frozenset(), delimiter)

    def forget_sent_folder(self) -> None:
        self._sent = None

    def append(self, folder_raw: str, data: bytes, when: datetime, flags: str = "(\\Seen)") -> str:
        """APPEND `data` to the folder (wire name) with `flags`; returns the server's reply."""
        import imaplib

        internal = imaplib.Time2Internaldate(when)
        return _text(self._call("APPEND", self._client.append, quote(folder_raw), flags, internal, data))

    # reading without changing anything
    def examine(self, folder: str = "INBOX") -> FolderState:
        """Open `folder` read-only (EXAMINE): nothing read later changes a flag."""
        data = self._call("EXAMINE", self._client.select, quote(encode_folder_name(folder)), True)
        validity = self._response_number("UIDVALIDITY")
        if validity is None:
            raise ImapFailure("protocol", f"the server gave no UIDVALIDITY for {folder}")
        return FolderState(validity, self._response_number("UIDNEXT"), int(_text(data) or 0))

    def _response_number(self, code: str) -> int | None:
        _, values = self._client.response(code)
        for value in values or ():
            text = _text(value).strip()
            if text.isdigit():
                return int(text)
        return None

    def uids_after(self, last_uid: int) -> list[int]:
        data = self._call("UID SEARCH", self._client.uid, "SEARCH", "UID", f"{last_uid + 1}:*")
        return sorted(uid for uid in _numbers(data) if uid > last_uid)

    def uids_since(self, day: date) -> list[int]:
        data = self._call("UID SEARCH", self._client.uid, "SEARCH", "SINCE", day.strftime("%d-%b-%Y"))
        return sorted(_numbers(data))

    def headers(self, uids: Sequence[int]) -> list[NewMail]:
        """Size and header block of each message, read with BODY.PEEK (no flag changes)."""
        found: list[NewMail] = []
        for chunk in _chunks(list(uids), _FETCH_CHUNK):
            data = self._call(
                "UID FETCH",
                self._client.uid,
                "FETCH",
                ",".join(map(str, chunk)),
                f"(UID RFC822.SIZE BODY.PEEK[HEADER]<0.{HEADER_BYTES}>)",
            )
            for meta, literal in _fetched(data):
                uid, size = _meta_number(meta, "UID"), _meta_number(meta, "RFC822.SIZE")
                if uid is not None:
                    found.append(NewMail(uid, size or len(literal), literal))
        return sorted(found, key=lambda m: m.uid)

    def message(self, uid: int) -> bytes:
        """The whole message with this UID, read with BODY.PEEK[] (no flag changes)."""
        data = self._call("UID FETCH", self._client.uid, "FETCH", str(uid), "(UID BODY.PEEK[])")
        for meta, literal in _fetched(data):
            if _meta_number(meta, "UID") in (uid, None):
                return literal
        raise ImapFailure("protocol", f"the server returned no message for UID {uid}")

    def is_alive(self) -> bool:
        import imaplib

        try:
            typ, _ = self._client.noop()
        except (imaplib.IMAP4.error, OSError):
            return False
        return typ == "OK"

    def close(self) -> None:
        import imaplib

        try:
            if self._guard is not None and self._guard.expired:
                raise OSError("the session's time is up")
            self._client.logout()
        except (imaplib.IMAP4.error, OSError):
            with contextlib.suppress(OSError):
                self._client.shutdown()
        finally:
            if self._guard is not None:
                self._guard.stop()


def _numbers(data: Any) -> list[int]:
    return [int(n) for n in " ".join(_text([d]) for d in (data or []) if d).split() if n.isdigit()]


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _fetched(data: Any) -> Iterator[tuple[str, bytes]]:
    for item in data or ():
        if isinstance(item, tuple) and len(item) >= 2:
            yield item[0].decode("ascii", "replace"), bytes(item[1])


def _meta_number(meta: str, name: str) -> int | None:
    match = re.search(rf"\b{re.escape(name)} (\d+)", meta, re.I)
    return int(match.group(1)) if match else None


def open_session(settings: ImapSettings) -> ImapSession:
    """Connect, secure the connection as settings say, and log in.

    A login or password with a CR, LF or NUL is refused before any connection: imaplib's LOGIN
    would send it as it is, and a line break there starts a command of the caller's choosing."""
    if breaks_a_command(settings.login) or breaks_a_command(settings.password):
        raise ImapFailure("auth", "the login or password holds a line break or NUL; nothing was sent")
    import imaplib

    context = _tls_context(settings) if settings.security != "none" else None
    client: imaplib.IMAP4 | None = None
    during = "connect"
    guard = _Guard(settings)
    client_class = _client_class(settings, guard)
    try:
        if settings.security == "ssl":
            client = client_class(settings.host, settings.port, ssl_context=context, timeout=settings.timeout)
        else:
            client = client_class(settings.host, settings.port, timeout=settings.timeout)
        if settings.security == "starttls":
            if "STARTTLS" not in client.capabilities:
                raise ImapFailure("tls", f"{settings.host} does not offer STARTTLS")
            during = "starttls"
            client.starttls(context)
        during = "login"
        reply = _login(client, settings.login, settings.password)
    except BaseException as error:
        guard.stop()
        if client is not None:
            _shutdown(client)
        if isinstance(error, (imaplib.IMAP4.error, OSError, ImapFailure)):
            failure = guard.failure(classify(error, during=during))
            logger.info("IMAP connection to %s:%s failed: %s", settings.host, settings.port, failure)
            raise failure from None
        raise
    return ImapSession(client, reply, guard)


def _login(client: imaplib.IMAP4, login: str, password: str) -> str:
    if "LOGINDISABLED" in client.capabilities:
        raise ImapFailure("tls", "the server refuses to log in over an unencrypted connection")
    if (login + password).isascii():
        _, login_data = client.login(login, password)
        return _text(login_data)
    # imaplib sends commands as ASCII; AUTHENTICATE PLAIN (RFC 4616) carries UTF-8.
    if "AUTH=PLAIN" not in client.capabilities:
        raise ImapFailure("auth", "a non-ASCII login or password needs AUTH=PLAIN, which the server lacks")
    token = f"\0{login}\0{password}".encode()
    _, auth_data = client.authenticate("PLAIN", lambda _challenge: token)
    return _text(auth_data)


def _shutdown(client: imaplib.IMAP4) -> None:
    with contextlib.suppress(OSError, AttributeError):
        client.shutdown()


class ImapPool:
    """One session per mailbox (`key`) for a whole batch; `close` (or `with`) ends them all."""

    def __init__(self, connect: Callable[[ImapSettings], ImapSession] = open_session) -> None:
        self._connect = connect
        self._sessions: dict[str, tuple[ImapSettings, ImapSession]] = {}

    def session(self, key: str, settings: ImapSettings) -> ImapSession:
        cached = self._sessions.get(key)
        if cached is not None:
            cached_settings, session = cached
            if cached_settings == settings and session.is_alive():
                return session
            self.drop(key)
        session = self._connect(settings)
        self._sessions[key] = (settings, session)
        return session

    def append_sent(
        self, key: str, settings: ImapSettings, data: bytes, when: datetime, *, folder_hint: str | None = None
    ) -> AppendResult:
        """APPEND `data` to the mailbox's Sent folder, marked seen, dated `when`.

        `folder_hint` (a readable name remembered from an earlier append) saves a LIST; if
        that folder is gone the folder is looked up again once. A failure closes the session
        and is raised; the append is never repeated after the server may have stored it.
        """
        import imaplib

        try:
            session = self.session(key, settings)
            created = False
            if folder_hint and session._sent is None:
                folder = Folder(folder_hint, encode_folder_name(folder_hint), frozenset(), None)
            else:
                folder, created = session.sent_folder()
            try:
                reply = session.append(folder.raw, data, when)
            except ImapFailure as failure:
                if failure.kind != "refused" or "TRYCREATE" not in failure.reply.upper():
                    raise
                session.forget_sent_folder()
                folder, created = session.sent_folder()
                reply = session.append(folder.raw, data, when)
            session._sent = folder
            return AppendResult(folder.name, reply, created)
        except ImapFailure:
            self.drop(key)
            raise
        except (imaplib.IMAP4.error, OSError) as error:
            self.drop(key)
            raise classify(error) from None

    def drop(self, key: str) -> None:
        cached = self._sessions.pop(key, None)
        if cached is not None:
            try:
                cached[1].close()
            except Exception:
                logger.debug("ignoring an error while closing an IMAP session", exc_info=True)

    def close(self) -> None:
        for key in list(self._sessions):
            self.drop(key)

    def __enter__(self) -> ImapPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
