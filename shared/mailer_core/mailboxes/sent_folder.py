"""Filing sent emails into the mailbox's Sent folder, where the mail client and Kommo see them.

After a successful send the send worker hands the exact bytes that went out to `SentFiler`,
which appends them over IMAP (one session per mailbox, kept for the batch) to the Sent folder,
marked `\\Seen`, dated with the message's Date. Filing never fails or repeats a send: a
failure is written into the message's history ("not_filed") and onto the mailbox
(`last_append_error`), and the next emails of the batch from a mailbox whose IMAP is down
are not tried again for a while, so a dead IMAP server cannot stall sending.

Nothing is filed when the mailbox has no IMAP, or when its provider files mail sent over
SMTP by itself (`append_to_sent` false: Gmail, Outlook, Microsoft 365), where a second copy
would be a duplicate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.message import EmailMessage
from typing import Literal

from pynamodb.expressions.update import Action

from mailer_core.adapters import imap, mime
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.logs import logger
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.store import timeline
from mailer_core.store.models import MailboxModel, MessageModel

Outcome = Literal["filed", "skipped", "not_filed"]
# The copy is held in memory for the APPEND (imaplib sends a literal whole); larger emails
# are sent (SMTP streams them) but not filed, with the reason in the history.
MAX_APPEND_BYTES = 25 * 1024 * 1024
APPEND_TIMEOUT_SECONDS = 15.0
PAUSE_AFTER_FAILURE_SECONDS = 300.0


def sent_bytes(message: EmailMessage) -> bytes | None:
    """The bytes the SMTP transport sent for `message` (None when too large to file)."""
    spool = mime.spooled(message)
    if spool is not None:
        return spool.read_bytes() if spool.size <= MAX_APPEND_BYTES else None
    data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    return data if len(data) <= MAX_APPEND_BYTES else None


def wants_copy(mailbox: MailboxModel) -> bool:
    return bool(mailbox.imap_host) and mailbox.append_to_sent is not False


@dataclass
class SentFiler:
    clock: Clock = field(default_factory=lambda: SYSTEM_CLOCK)
    pool: imap.ImapPool = field(default_factory=imap.ImapPool)
    monotonic: Callable[[], float] = time.monotonic
    _settings: dict[tuple[str, str], imap.ImapSettings] = field(default_factory=dict)
    _paused: dict[str, tuple[float, str]] = field(default_factory=dict)

    def file(
        self, mailbox: MailboxModel, message: MessageModel, data: bytes | None, when: datetime
    ) -> Outcome:
        """Append `data` to the mailbox's Sent folder and say so in the message's history."""
        if not wants_copy(mailbox):
            return "skipped"
        if data is None:
            limit = MAX_APPEND_BYTES // (1024 * 1024)
            return self._not_filed(mailbox, message, f"the email is larger than {limit} MB", on_mailbox=False)
        paused = self._paused.get(mailbox.mailbox_id)
        if paused is not None and self.monotonic() < paused[0]:
            reason = f"IMAP failed a moment ago: {paused[1]}"
            return self._not_filed(mailbox, message, reason, on_mailbox=False)
        try:
            settings = self._imap_settings(mailbox)
            result = self.pool.append_sent(
                mailbox.mailbox_id, settings, data, when, folder_hint=mailbox.sent_folder
            )
        except imap.ImapFailure as failure:
            reason = f"{failure.kind}: {failure}"
            if failure.kind in ("auth", "tls", "connection"):
                self._paused[mailbox.mailbox_id] = (self.monotonic() + PAUSE_AFTER_FAILURE_SECONDS, reason)
            return self._not_filed(mailbox, message, reason)
        except Exception as error:  # never let filing break sending
            logger.exception("filing into Sent failed")
            return self._not_filed(mailbox, message, f"{type(error).__name__}: {error}")
        self._paused.pop(mailbox.mailbox_id, None)
        note = " (created by Mailer)" if result.created else ""
        self._note(message, "filed", f"copied to “{result.folder}”{note}")
        if mailbox.last_append_error or mailbox.sent_folder != result.folder:
            self._update_mailbox(
                mailbox,
                [
                    MailboxModel.sent_folder.set(result.folder),
                    MailboxModel.last_append_error.remove(),
                    MailboxModel.last_append_error_at.remove(),
                ],
            )
        return "filed"

    def _imap_settings(self, mailbox: MailboxModel) -> imap.ImapSettings:
        key = (mailbox.mailbox_id, mailbox.updated_at.isoformat())
        if key not in self._settings:
            settings = mailbox_connection.imap_settings(mailbox)
            if settings is None:
                raise imap.ImapFailure("protocol", "IMAP is not set up")
            self._settings[key] = replace(settings, timeout=min(settings.timeout, APPEND_TIMEOUT_SECONDS))
        return self._settings[key]

    def _not_filed(
        self, mailbox: MailboxModel, message: MessageModel, reason: str, *, on_mailbox: bool = True
    ) -> Outcome:
        logger.warning("not filed into Sent", extra={"reason": reason})
        self._note(message, "not_filed", f"not copied to the Sent folder: {reason}")
        if on_mailbox:
            self._update_mailbox(
                mailbox,
                [
                    MailboxModel.last_append_error.set(reason[:1000]),
                    MailboxModel.last_append_error_at.set(self.clock.now()),
                ],
            )
        return "not_filed"

    def _note(self, message: MessageModel, event: str, detail: str) -> None:
        """A history entry that changes nothing else (best effort: the send is recorded)."""
        try:
            timeline.note(message, self.clock.now(), event, detail)
        except Exception:
            logger.exception("could not record the filing in the message's history")

    def _update_mailbox(self, mailbox: MailboxModel, actions: list[Action]) -> None:
        try:
            mailbox.update(actions=actions, condition=MailboxModel.mailbox_id.exists())
        except Exception:
            logger.exception("could not record the filing on the mailbox")

    def close(self) -> None:
        self.pool.close()
