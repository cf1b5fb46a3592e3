"""Real IMAP servers for tests: Dovecot (devstack.imap_server) and helpers to look inside them.

The helpers talk IMAP with imaplib directly, independently of mailer_core.adapters.imap, so a test
checks what Mailer did with a second, plain client:

    user = new_user(server)
    append(server, user, "INBOX", raw_bytes)
    [mail] = read_folder(server, user, "Sent")
    assert "\\Seen" in mail.flags

`require_dovecot()` skips a test when Dovecot cannot run here, and fails it under CI=true.
"""

from __future__ import annotations

import imaplib
import itertools
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

import pytest

from devstack.imap_server import DovecotServer, unavailable_reason

_counter = itertools.count(1)
_lock = threading.Lock()


def require_dovecot() -> None:
    reason = unavailable_reason()
    if reason is None:
        return
    message = f"the IMAP tests need a Dovecot server: {reason}"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class ImapUser:
    login: str
    password: str


def new_user(server: DovecotServer, name: str = "user", password: str = "imap-pass-1") -> ImapUser:
    """A user of its own on `server`, so tests sharing a server never see each other's mail."""
    with _lock:
        login = f"{name}{os.getpid()}x{next(_counter)}@example.com"
        server.add_user(login, password)
    return ImapUser(login, password)


def connect(server: DovecotServer, user: ImapUser) -> imaplib.IMAP4:
    client = imaplib.IMAP4(server.host, server.port, timeout=10)
    client.login(user.login, user.password)
    return client


def _quoted(raw_name: str) -> str:
    return '"' + raw_name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def create_folder(server: DovecotServer, user: ImapUser, raw_name: str) -> None:
    """CREATE a folder by its wire name (modified UTF-7 already applied by the caller)."""
    client = connect(server, user)
    try:
        typ, data = client.create(_quoted(raw_name))
        assert typ == "OK", data
    finally:
        client.logout()


def append(server: DovecotServer, user: ImapUser, raw_folder: str, data: bytes, *, flags: str = "") -> None:
    client = connect(server, user)
    try:
        typ, reply = client.append(_quoted(raw_folder), flags or None, None, data)
        assert typ == "OK", reply
    finally:
        client.logout()


@dataclass(frozen=True)
class StoredMail:
    uid: int
    flags: tuple[str, ...]
    internal_date: datetime
    data: bytes


def read_folder(server: DovecotServer, user: ImapUser, raw_folder: str) -> list[StoredMail]:
    """Every message of the folder, read without changing a flag (EXAMINE, BODY.PEEK)."""
    client = connect(server, user)
    try:
        typ, _ = client.select(_quoted(raw_folder), readonly=True)
        assert typ == "OK", f"no folder {raw_folder!r}"
        typ, data = client.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
        assert typ == "OK", data
    finally:
        client.logout()
    found = []
    for item in data:
        if not isinstance(item, tuple):
            continue
        meta = item[0].decode()
        uid = int(re.search(r"UID (\d+)", meta).group(1))  # type: ignore[union-attr]
        flags = tuple(re.search(r"FLAGS \(([^)]*)\)", meta).group(1).split())  # type: ignore[union-attr]
        internal = re.search(r'INTERNALDATE "([^"]+)"', meta).group(1)  # type: ignore[union-attr]
        when = datetime.strptime(internal, "%d-%b-%Y %H:%M:%S %z")
        found.append(StoredMail(uid, flags, when, bytes(item[1])))
    return sorted(found, key=lambda m: m.uid)


def folder_names(server: DovecotServer, user: ImapUser) -> list[str]:
    """The wire names of the user's folders."""
    client = connect(server, user)
    try:
        _, data = client.list()
    finally:
        client.logout()
    names = []
    for item in data:
        line = item.decode() if isinstance(item, bytes) else item[1].decode()
        names.append(line.rsplit(" ", 1)[-1].strip('"') if isinstance(item, bytes) else line)
    return names


def date_header(data: bytes) -> datetime:
    match = re.search(rb"^Date: (.+?)\r?$", data, re.M)
    assert match, "the message has no Date header"
    return parsedate_to_datetime(match.group(1).decode())
