"""How Mailer reaches a stored mailbox: found by id or as a user's default, its SMTP and IMAP
settings with the password decrypted for the session (never returned, never logged)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pynamodb.exceptions import DoesNotExist

from mailer_core.adapters import kms
from mailer_core.base.config import get_settings
from mailer_core.base.network_addresses import DEFAULT_POLICY, LOOPBACK_ALLOWED, AddressPolicy
from mailer_core.mailboxes import defaults as mailbox_defaults
from mailer_core.store.models import MailboxModel

if TYPE_CHECKING:
    from mailer_core.adapters.imap import ImapSettings  # cold start: imaplib
    from mailer_core.adapters.smtp import SmtpSettings  # cold start: smtplib


IMAP_DEFAULT_PORTS = {"ssl": 993, "starttls": 143, "none": 143}

# One SMTP operation (connect and log in, or one email's send) in all, whatever the server does:
# within the send function's 60 s, so a stalling server fails its email and frees the batch.
SMTP_OPERATION_SECONDS = 45.0


def address_policy() -> AddressPolicy:
    """The addresses a mailbox's servers may be on: public ones; loopback too where the settings
    allow it (the local stack and the tests, MAILER_ALLOW_LOOPBACK_MAILBOXES)."""
    return LOOPBACK_ALLOWED if get_settings().allow_loopback_mailboxes else DEFAULT_POLICY


def password_context(account_id: int, mailbox_id: str, purpose: str = "smtp_password") -> dict[str, str]:
    return {"account_id": str(account_id), "mailbox_id": mailbox_id, "purpose": purpose}


def default_for_user(account_id: int, user_id: int) -> MailboxModel | None:
    """The user's default mailbox, else their only one, else None (mailer_core.mailboxes.defaults)."""
    return mailbox_defaults.choose(mailbox_defaults.user_mailboxes(account_id, user_id))


def find(account_id: int, mailbox_id: str) -> MailboxModel | None:
    try:
        return MailboxModel.get(account_id, mailbox_id)
    except DoesNotExist:
        return None


def smtp_settings(mailbox: MailboxModel) -> SmtpSettings:
    """Connection settings with the decrypted password, for the send worker only."""
    from mailer_core.adapters.smtp import SmtpSettings  # cold start: smtplib

    settings = get_settings()
    password = kms.decrypt(
        mailbox.password_ciphertext, password_context(int(mailbox.account_id), mailbox.mailbox_id)
    )
    return SmtpSettings(
        host=mailbox.smtp_host,
        port=int(mailbox.smtp_port),
        security=mailbox.smtp_security,  # type: ignore[arg-type]
        login=mailbox.smtp_login,
        password=password,
        timeout=settings.smtp_timeout_seconds,
        ca_file=settings.smtp_ca_file,
        addresses=address_policy(),
        time_limit=SMTP_OPERATION_SECONDS,
    )


def imap_settings(mailbox: MailboxModel) -> ImapSettings | None:
    """IMAP connection settings with the decrypted password; None when IMAP is not set."""
    if not mailbox.imap_host:
        return None
    from mailer_core.adapters.imap import ImapSettings  # cold start: imaplib

    settings = get_settings()
    account_id = int(mailbox.account_id)
    if mailbox.imap_password_ciphertext:
        password = kms.decrypt(
            mailbox.imap_password_ciphertext,
            password_context(account_id, mailbox.mailbox_id, "imap_password"),
        )
    else:
        password = kms.decrypt(mailbox.password_ciphertext, password_context(account_id, mailbox.mailbox_id))
    security = mailbox.imap_security or "ssl"
    return ImapSettings(
        host=mailbox.imap_host,
        port=int(mailbox.imap_port or IMAP_DEFAULT_PORTS[security]),
        security=security,  # type: ignore[arg-type]
        login=mailbox.imap_login or mailbox.smtp_login,
        password=password,
        timeout=settings.smtp_timeout_seconds,
        ca_file=settings.smtp_ca_file,
        addresses=address_policy(),
    )
