"""The mailbox traffic light: can it send (SMTP), and can it file and read mail (IMAP)?

A check sends nothing. SMTP: connect, TLS as configured, log in. IMAP (when set): connect,
TLS, log in, find the Sent folder, look at the inbox. Both run side by side under one
deadline, so an API call that checks a mailbox answers in time.

- green: SMTP and IMAP work; Mailer sends, files into Sent and reads bounces;
- gray: SMTP works, IMAP is not set or does not work: Mailer sends, but cannot file into
  Sent or read bounces;
- red: SMTP does not work: Mailer cannot send.

Each side's result names a cause (`auth`, `tls`, `certificate`, `port_closed`, `host_unknown`,
`address_not_allowed`, `timeout`, `refused`, `connection`, `not_configured`), says it in words a manager
understands, and keeps the server's own reply. The result is stored on the mailbox with a
write conditioned on the mailbox not having changed since, so a slow check of old settings
never overwrites the result for new ones.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action

from mailer_core.adapters import imap, smtp
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.config import get_settings
from mailer_core.base.logs import logger
from mailer_core.base.network_addresses import AddressRefused
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.mailboxes import presets
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import MailboxModel

Status = Literal["green", "gray", "red", "unchecked"]
GREEN: Status = "green"
GRAY: Status = "gray"
RED: Status = "red"
UNCHECKED: Status = "unchecked"


@dataclass(frozen=True)
class Probe:
    """One protocol's result."""

    ok: bool
    cause: str | None
    words: str
    reply: str | None = None

    def view(self) -> dict[str, Any]:
        return {"ok": self.ok, "cause": self.cause, "words": self.words, "reply": self.reply}


@dataclass(frozen=True)
class ImapFindings:
    sent_folder: str | None = None
    uidvalidity: int | None = None
    uidnext: int | None = None


@dataclass(frozen=True)
class CheckResult:
    status: Status
    smtp: Probe
    imap: Probe
    checked_at: datetime
    findings: ImapFindings = ImapFindings()

    @property
    def summary(self) -> str:
        if self.status == GREEN:
            return "Ready: Mailer sends from this mailbox, files every email into Sent and reads bounces."
        if self.status == GRAY:
            return f"Sends, but cannot file into Sent or read bounces. {self.imap.words}"
        return f"Cannot send. {self.smtp.words}"

    def view(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "summary": self.summary,
            "checked_at": self.checked_at.isoformat(),
            "smtp": self.smtp.view(),
            "imap": {**self.imap.view(), "sent_folder": self.findings.sent_folder},
        }


# -- words ----------------------------------------------------------------------------------


def _chain(error: BaseException) -> list[BaseException]:
    """The error and every error beneath it (causes, contexts, what a failure keeps)."""
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not e for e in found):
        found.append(current)
        kept = current.error if isinstance(current, imap.ImapFailure) else None
        current = kept or current.__cause__ or current.__context__
    return found


def _cause(kind: str, error: BaseException) -> str:
    chain = _chain(error)

    def has(*types: type[BaseException]) -> bool:
        return any(isinstance(e, types) for e in chain)

    if has(AddressRefused):
        return "address_not_allowed"
    if has(ssl.SSLCertVerificationError):
        return "certificate"
    if has(socket.gaierror):
        return "host_unknown"
    if has(ConnectionRefusedError):
        return "port_closed"
    if has(TimeoutError, socket.timeout):
        return "timeout"
    if kind == "auth":
        return "auth"
    if kind == "tls" or has(ssl.SSLError):
        return "tls"
    if kind in ("permanent", "temporary", "refused"):
        return "refused"
    return "connection"


def _words(cause: str, protocol: str, host: str, port: int, security: str, reply: str) -> str:
    where = f"{host}:{port}"
    if cause == "auth":
        preset = presets.for_host(host)
        extra = f" {preset.hint}" if preset and preset.app_password else ""
        return f"Wrong login or password: {protocol} server {host} refused to log in.{extra}"
    if cause == "certificate":
        return (
            f"The {protocol} server's certificate is not valid for {host}: check the server name "
            "(use the provider's own host name, not an IP address or alias)."
        )
    if cause == "tls":
        advice = {
            "SMTP": "port 465 uses SSL, port 587 uses STARTTLS",
            "IMAP": "port 993 uses SSL, port 143 uses STARTTLS",
        }[protocol]
        return f"The {protocol} server refused the secure connection ({security}) on {where}: {advice}."
    if cause == "address_not_allowed":
        return f"Mailer does not connect there: {reply}. Use the provider's public {protocol} server."
    if cause == "host_unknown":
        return f"The {protocol} server {host} does not exist: check the server name."
    if cause == "port_closed":
        return f"Nothing answers on port {port} of {host}: the port is closed or blocked; check the port."
    if cause == "timeout":
        hint = ""
        if security != "ssl" and port in (465, 993):
            hint = f" Port {port} expects SSL."
        return (
            f"{where} did not answer in time: a firewall may block the port, "
            f"or the port expects another security setting.{hint}"
        )
    if cause == "refused":
        return f"The {protocol} server refused the connection: {reply}"
    return f"The connection to {protocol} server {where} failed: {reply}"


# -- probes ---------------------------------------------------------------------------------


def probe_smtp(
    settings: smtp.SmtpSettings, *, connect: Callable[..., smtp.SmtpSession] | None = None
) -> Probe:
    try:
        session = (connect or smtp.open_session)(settings)
    except smtp.SmtpFailure as failure:
        cause = _cause(failure.kind, failure)
        reply = str(failure)
        return Probe(
            False, cause, _words(cause, "SMTP", settings.host, settings.port, settings.security, reply), reply
        )
    with contextlib.suppress(smtplib.SMTPException, OSError):
        session.close()
    security = {"ssl": "SSL", "starttls": "STARTTLS", "none": "no encryption"}[settings.security]
    return Probe(True, None, f"SMTP works: logged in to {settings.host}:{settings.port} ({security}).")


def probe_imap(
    settings: imap.ImapSettings | None, *, connect: Callable[..., imap.ImapSession] | None = None
) -> tuple[Probe, ImapFindings]:
    if settings is None:
        return (
            Probe(False, "not_configured", "IMAP is not set up for this mailbox."),
            ImapFindings(),
        )
    step = "login"
    try:
        session = (connect or imap.open_session)(settings)
        try:
            step = "folder list"
            folder = imap.choose_sent_folder(session.folders())  # found, never created by a check
            step = "inbox"
            inbox = session.examine("INBOX")
        finally:
            session.close()
    except imap.ImapFailure as failure:
        cause = _cause(failure.kind, failure)
        reply = str(failure)
        words = _words(cause, "IMAP", settings.host, settings.port, settings.security, reply)
        if step != "login" and cause == "refused":
            words = f"IMAP logged in, but the {step} could not be read: {reply}"
        return Probe(False, cause, words, reply), ImapFindings()
    if folder is None:
        filed = "there is no Sent folder yet: Mailer creates “Sent” with the first email"
    else:
        filed = f"sent emails are filed into “{folder.name}”"
    words = f"IMAP works: {filed}, and bounces are read from the inbox."
    return (
        Probe(True, None, words, session.login_reply or None),
        ImapFindings(folder.name if folder else None, inbox.uidvalidity, inbox.uidnext),
    )


def run_check(
    smtp_settings: smtp.SmtpSettings,
    imap_settings: imap.ImapSettings | None,
    *,
    clock: Clock = SYSTEM_CLOCK,
    deadline_seconds: float | None = None,
) -> CheckResult:
    """Probe SMTP and IMAP side by side; whatever has not answered by the deadline timed out."""
    timeout = smtp_settings.timeout
    deadline = deadline_seconds if deadline_seconds is not None else timeout * 2.5
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mailbox-check")
    try:
        smtp_future = pool.submit(probe_smtp, smtp_settings)
        imap_future = pool.submit(probe_imap, imap_settings)
        started = time.monotonic()  # real time: the deadline is about the network, not the domain
        try:
            smtp_probe = smtp_future.result(timeout=deadline)
        except FutureTimeout:
            smtp_probe = _late("SMTP", smtp_settings.host, smtp_settings.port, smtp_settings.security)
        spent = time.monotonic() - started
        try:
            imap_probe, findings = imap_future.result(timeout=max(0.1, deadline - spent))
        except FutureTimeout:
            assert imap_settings is not None  # an unset IMAP answers at once
            imap_probe = _late("IMAP", imap_settings.host, imap_settings.port, imap_settings.security)
            findings = ImapFindings()
    finally:
        pool.shutdown(wait=False)  # a probe that hangs ends with its socket timeout
    status: Status = RED if not smtp_probe.ok else GREEN if imap_probe.ok else GRAY
    return CheckResult(status, smtp_probe, imap_probe, clock.now(), findings)


def _late(protocol: str, host: str, port: int, security: str) -> Probe:
    return Probe(
        False, "timeout", _words("timeout", protocol, host, port, security, "timed out"), "timed out"
    )


# -- on the mailbox -------------------------------------------------------------------------


def check_mailbox(mailbox: MailboxModel, *, clock: Clock = SYSTEM_CLOCK) -> CheckResult:
    """Check the mailbox's saved settings (short timeouts) and store the result on it."""
    timeout = get_settings().mailbox_check_timeout_seconds
    smtp_settings = replace(mailbox_connection.smtp_settings(mailbox), timeout=timeout)
    imap_settings = mailbox_connection.imap_settings(mailbox)
    if imap_settings is not None:
        imap_settings = replace(imap_settings, timeout=timeout)
    result = run_check(smtp_settings, imap_settings, clock=clock)
    record(mailbox, result)
    return result


def record(mailbox: MailboxModel, result: CheckResult) -> bool:
    """Store the result unless the mailbox changed since it was read; False if it had."""
    actions: list[Action] = [
        MailboxModel.status.set(result.status),
        MailboxModel.last_check_at.set(result.checked_at),
        MailboxModel.last_check.set(result.view()),
    ]
    found = result.findings
    if found.sent_folder:
        actions.append(MailboxModel.sent_folder.set(found.sent_folder))
    if found.uidvalidity is not None and found.uidnext is not None:
        # Bounce polling starts from here, unless it already has a place in this inbox.
        actions += [
            MailboxModel.imap_uidvalidity.set(MailboxModel.imap_uidvalidity | found.uidvalidity),
            MailboxModel.imap_last_uid.set(MailboxModel.imap_last_uid | max(0, found.uidnext - 1)),
        ]
    try:
        mailbox.update(actions=actions, condition=MailboxModel.updated_at == mailbox.updated_at)
    except UpdateError as error:
        if is_condition_failure(error):
            logger.info("mailbox changed during its check; result not stored")
            return False
        raise
    return True


def mark_smtp_refused_login(mailbox: MailboxModel, failure: smtp.SmtpFailure, *, clock: Clock) -> bool:
    """A send was refused at login: the mailbox turns red (unless it was changed meanwhile)."""
    reply = str(failure)
    words = _words("auth", "SMTP", mailbox.smtp_host, int(mailbox.smtp_port), mailbox.smtp_security, reply)
    marked = _mark(mailbox, RED, "smtp", Probe(False, "auth", words, reply), "send", clock)
    if marked:
        logger.warning(
            "mailbox turned red: the SMTP login was refused", extra={"mailbox_id": mailbox.mailbox_id}
        )
    return marked


def mark_imap_refused_login(mailbox: MailboxModel, failure: imap.ImapFailure, *, clock: Clock) -> bool:
    """Bounce polling was refused at login: the mailbox still sends, but turns gray."""
    if (mailbox.status or UNCHECKED) == RED:
        return False
    reply = str(failure)
    host, security = str(mailbox.imap_host), str(mailbox.imap_security or "ssl")
    words = _words("auth", "IMAP", host, int(mailbox.imap_port or 993), security, reply)
    return _mark(mailbox, GRAY, "imap", Probe(False, "auth", words, reply), "bounce polling", clock)


def _mark(mailbox: MailboxModel, status: Status, side: str, probe: Probe, source: str, clock: Clock) -> bool:
    """Store a status learnt outside a check, keeping what the last check said of the other side."""
    previous = mailbox.last_check.as_dict() if mailbox.last_check is not None else {}
    view = {
        **previous,
        "status": status,
        "checked_at": clock.now().isoformat(),
        "source": source,
        side: {**probe.view(), **({"sent_folder": None} if side == "imap" else {})},
    }
    if "smtp" not in view:
        view["smtp"] = Probe(False, None, "SMTP was not checked.").view()
    if "imap" not in view:
        view["imap"] = Probe(False, "not_configured", "IMAP was not checked.").view()
    words = view[side]["words"]
    view["summary"] = (
        f"Cannot send. {words}"
        if status == RED
        else f"Sends, but cannot file into Sent or read bounces. {words}"
    )
    try:
        mailbox.update(
            actions=[
                MailboxModel.status.set(status),
                MailboxModel.last_check_at.set(clock.now()),
                MailboxModel.last_check.set(view),
            ],
            condition=MailboxModel.updated_at == mailbox.updated_at,
        )
    except UpdateError as error:
        if is_condition_failure(error):
            return False
        raise
    return True


def refused_login_reason(mailbox: MailboxModel) -> str | None:
    """Why sending from a red mailbox is pointless now, or None when it should be tried.

    A mailbox turns red on a refused login (by a check or a send) and stays so until it is
    changed or checked again; trying again with the same password would only count failed
    logins, which makes providers lock the account.
    """
    if (mailbox.status or UNCHECKED) != RED or mailbox.last_check is None:
        return None
    smtp_view = mailbox.last_check.as_dict().get("smtp") or {}
    if smtp_view.get("cause") != "auth":
        return None
    return f"the mailbox's SMTP login was refused: {smtp_view.get('reply') or 'wrong login or password'}"
