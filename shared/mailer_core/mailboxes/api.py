"""Mailboxes: the SMTP accounts emails leave through, and their IMAP side (Sent, bounces).

Rules: a user manages their own mailboxes, an administrator everyone's in the account; the
password is encrypted with KMS before it is stored and is never returned or logged; port 25
is refused because AWS blocks it for Lambda; an SMTP or IMAP host that leads to a loopback,
private or otherwise non-public address is refused (the check would otherwise probe the
network Mailer runs in), and the adapters check the addresses again when they connect. A
mailbox of a known provider needs only its address and password (mailer_core.mailboxes.presets
fills the servers). Saving a mailbox, or changing how it connects, checks it at once
(mailer_core.mailboxes.check): the mailbox is stored even when the check fails, and the answer
carries its status (green, gray, red) and the reasons.
A user has any number of mailboxes and exactly one default (mailer_core.mailboxes.defaults); a
new mailbox takes the account's default rate and daily cap unless it gives its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pynamodb.exceptions import DoesNotExist

from mailer_core.accounts import access, account_settings
from mailer_core.accounts.access import ADMIN_ONLY
from mailer_core.adapters import kms
from mailer_core.base import validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.config import get_settings
from mailer_core.base.errors import Forbidden, InvalidInput, NotFound
from mailer_core.base.logs import logger
from mailer_core.base.network_addresses import host_refusal
from mailer_core.mailboxes import connection, health, presets
from mailer_core.mailboxes import defaults as mailbox_defaults
from mailer_core.rendering.source_checks import validate_source
from mailer_core.store.models import MailboxModel

if TYPE_CHECKING:  # the send worker needs SMTP; the API should not import it
    from mailer_core.accounts.auth import Caller  # a type only: the send worker needs no JWT library

FIELDS = {
    "sender_name",
    "sender_email",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_login",
    "smtp_password",
    "rate_per_second",
    "daily_cap",
    "is_default",
    "user_id",
    "imap_host",
    "imap_port",
    "imap_security",
    "imap_login",
    "imap_password",
    "append_to_sent",
    "envelope_token",
    "signature",
    "sender_phone",
}
MAX_SIGNATURE_CHARS = 64 * 1024
# Changing one of these checks the mailbox again (and forgets what IMAP polling knew).
CONNECTION_FIELDS = frozenset(
    {"sender_email", "smtp_host", "smtp_port", "smtp_security", "smtp_login", "smtp_password"}
)
IMAP_FIELDS = frozenset({"imap_host", "imap_port", "imap_security", "imap_login", "imap_password"})
SECURITY_CHOICES = ("ssl", "starttls")
# Stock defaults; an account's settings may choose others for its new mailboxes.
DEFAULT_RATE_PER_SECOND = account_settings.DEFAULT_RATE_PER_SECOND
DEFAULT_DAILY_CAP = account_settings.DEFAULT_DAILY_CAP


def public_view(mailbox: MailboxModel, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """What the API shows: everything but the password."""
    return {
        "id": mailbox.mailbox_id,
        "user_id": int(mailbox.user_id),
        "sender_name": mailbox.sender_name,
        "sender_email": mailbox.sender_email,
        "smtp_host": mailbox.smtp_host,
        "smtp_port": int(mailbox.smtp_port),
        "smtp_security": mailbox.smtp_security,
        "smtp_login": mailbox.smtp_login,
        "has_password": bool(mailbox.password_ciphertext),
        "rate_per_second": float(mailbox.rate_per_second),
        "daily_cap": int(mailbox.daily_cap),
        "is_default": bool(mailbox.is_default),
        "created_at": mailbox.created_at.isoformat(),
        "updated_at": mailbox.updated_at.isoformat(),
        "imap_host": mailbox.imap_host,
        "imap_port": int(mailbox.imap_port) if mailbox.imap_port is not None else None,
        "imap_security": mailbox.imap_security,
        "imap_login": mailbox.imap_login,
        "has_imap_password": bool(mailbox.imap_password_ciphertext),
        "append_to_sent": mailbox.append_to_sent is not False,
        "envelope_token": bool(mailbox.envelope_token),
        "signature": mailbox.signature or "",
        "sender_phone": mailbox.sender_phone or "",
        "status": mailbox.status or "unchecked",
        "last_check_at": mailbox.last_check_at.isoformat() if mailbox.last_check_at else None,
        "last_check": mailbox.last_check.as_dict() if mailbox.last_check is not None else None,
        "sent_folder": mailbox.sent_folder,
        "last_append_error": mailbox.last_append_error,
        "last_append_error_at": (
            mailbox.last_append_error_at.isoformat() if mailbox.last_append_error_at else None
        ),
        "delivery_problem": health.problem_view(mailbox, clock.now()),
        "bounce_polling": health.polling_view(mailbox),
    }


# Many branches on purpose: one check per field of the request.
def _validated(payload: dict[str, Any], *, current: MailboxModel | None, caller: Caller) -> dict[str, Any]:  # noqa: C901
    """Check a create (current is None) or a patch; return the fields to write."""
    validation.reject_unknown(payload, FIELDS)
    creating = current is None
    out: dict[str, Any] = {}
    if creating or "sender_email" in payload:
        out["sender_email"] = validation.email_address(payload.get("sender_email"), "sender_email")
    if "sender_name" in payload or creating:
        out["sender_name"] = validation.text(payload, "sender_name", max_length=200).strip()
    if creating or "smtp_host" in payload:
        out["smtp_host"] = _public_host(validation.hostname(payload, "smtp_host", required=True), "smtp_host")
    if creating or "smtp_port" in payload:
        port = validation.integer(payload, "smtp_port", required=True, minimum=1, maximum=65535)
        if port == 25:
            raise InvalidInput(
                "port 25 is blocked for outgoing mail on AWS Lambda; use 465 (ssl) or 587 (starttls)",
                field="smtp_port",
            )
        out["smtp_port"] = port
    if creating or "smtp_security" in payload:
        security = validation.text(payload, "smtp_security", required=True)
        allowed = SECURITY_CHOICES + (("none",) if get_settings().allow_plaintext_smtp else ())
        if security not in allowed:
            raise InvalidInput(f"must be one of {', '.join(allowed)}", field="smtp_security")
        out["smtp_security"] = security
    if "smtp_login" in payload or creating:
        login = validation.credential(payload, "smtp_login", max_length=320)
        out["smtp_login"] = login or out.get("sender_email") or (current.sender_email if current else "")
    if creating or "smtp_password" in payload:
        out["smtp_password"] = validation.credential(
            payload, "smtp_password", required=creating, max_length=1000, allow_empty=False
        )
    if "rate_per_second" in payload or creating:  # unset: the account's default (account_settings)
        default_rate = access.settings_of(caller.account_id).default_rate_per_second
        out["rate_per_second"] = validation.number(
            payload, "rate_per_second", default=default_rate, minimum=0.01, maximum=100
        )
    if "daily_cap" in payload or creating:
        default_cap = access.settings_of(caller.account_id).default_daily_cap
        out["daily_cap"] = validation.integer(
            payload, "daily_cap", default=default_cap, minimum=1, maximum=1_000_000
        )
    if "is_default" in payload:
        out["is_default"] = validation.boolean(payload, "is_default")
    if "user_id" in payload:
        user_id = validation.integer(payload, "user_id", minimum=1)
        if user_id != caller.user_id and not caller.is_admin:
            raise Forbidden(
                "only an administrator manages another user's mailboxes", field="user_id", reason=ADMIN_ONLY
            )
        out["user_id"] = user_id
    for flag in ("append_to_sent", "envelope_token"):
        if flag in payload:
            out[flag] = validation.boolean(payload, flag)
    if "signature" in payload:
        signature = validation.text(payload, "signature", max_length=MAX_SIGNATURE_CHARS)
        out["signature"] = validate_source(signature, field="signature", html=True) or None
    if "sender_phone" in payload:
        phone = validation.text(payload, "sender_phone", max_length=50).strip()
        if any(ord(ch) < 32 for ch in phone):
            raise InvalidInput("must be one line", field="sender_phone")
        out["sender_phone"] = phone or None
    out.update(_validated_imap(payload, current=current))
    return out


def _validated_imap(payload: dict[str, Any], *, current: MailboxModel | None) -> dict[str, Any]:
    """IMAP fields, all optional. An empty or null imap_host turns IMAP off (SMTP only);
    None values are removed from the stored mailbox."""
    given = IMAP_FIELDS & set(payload)
    if not given:
        return {}
    if "imap_host" in payload:
        host = validation.hostname(payload, "imap_host")
        if not host:
            return dict.fromkeys(IMAP_FIELDS)
        _public_host(host, "imap_host")
    elif not (current and current.imap_host):
        raise InvalidInput("set imap_host to use IMAP", field=sorted(given)[0])
    out: dict[str, Any] = {"imap_host": host} if "imap_host" in payload else {}
    old_security = (current.imap_security if current else None) or "ssl"
    security = old_security
    if "imap_security" in payload:
        security = validation.text(payload, "imap_security", required=True)
        allowed = SECURITY_CHOICES + (("none",) if get_settings().allow_plaintext_smtp else ())
        if security not in allowed:
            raise InvalidInput(f"must be one of {', '.join(allowed)}", field="imap_security")
    if "imap_security" in payload or not (current and current.imap_security):
        out["imap_security"] = security
    if "imap_port" in payload:
        out["imap_port"] = validation.integer(payload, "imap_port", required=True, minimum=1, maximum=65535)
    else:
        old_port = current.imap_port if current else None
        if old_port is None or int(old_port) == connection.IMAP_DEFAULT_PORTS[old_security]:
            out["imap_port"] = connection.IMAP_DEFAULT_PORTS[security]
    if "imap_login" in payload:
        out["imap_login"] = validation.credential(payload, "imap_login", max_length=320) or None
    if "imap_password" in payload:
        # null or "" forgets a separate IMAP password: the SMTP password serves IMAP again.
        out["imap_password"] = validation.credential(payload, "imap_password", max_length=1000) or None
    return out


def _public_host(host: str, field: str) -> str:
    """`host` unless it leads to an address Mailer does not connect to (422 naming `field`)."""
    refusal = host_refusal(host, connection.address_policy())
    if refusal:
        raise InvalidInput(f"{refusal}: give the provider's public server", field=field)
    return host


def _load(caller: Caller, mailbox_id: str) -> MailboxModel:
    try:
        mailbox = MailboxModel.get(caller.account_id, mailbox_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such mailbox", field="mailbox_id") from None
    if not caller.is_admin and int(mailbox.user_id) != caller.user_id:
        raise NotFound("no such mailbox", field="mailbox_id")
    return mailbox


def create(caller: Caller, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    data = validation.require_object(payload)
    if isinstance(data.get("sender_email"), str):
        data = presets.fill(data, data["sender_email"])
    fields = _validated(data, current=None, caller=caller)
    mailbox_id = clock.new_id()
    now = clock.now()
    password = fields.pop("smtp_password")
    imap_password = fields.pop("imap_password", None)
    wants_default = fields.pop("is_default", None)
    mailbox = MailboxModel(
        caller.account_id,
        mailbox_id,
        user_id=fields.pop("user_id", caller.user_id),
        password_ciphertext=kms.encrypt(password, connection.password_context(caller.account_id, mailbox_id)),
        imap_password_ciphertext=(
            kms.encrypt(
                imap_password, connection.password_context(caller.account_id, mailbox_id, "imap_password")
            )
            if imap_password
            else None
        ),
        created_at=now,
        updated_at=now,
        **{name: value for name, value in fields.items() if value is not None},
    )
    # The first mailbox of a user becomes their default; a new default unsets the old one.
    mailbox_defaults.save_new(mailbox, wants_default=wants_default)
    return _checked_view(mailbox, clock)


def _checked_view(mailbox: MailboxModel, clock: Clock) -> dict[str, Any]:
    """Check the stored mailbox now and show it with the result (stored unless it changed)."""
    from mailer_core.mailboxes import check as mailbox_check  # cold start: smtplib, imaplib

    try:
        result = mailbox_check.check_mailbox(mailbox, clock=clock)
    except Exception:  # the mailbox is saved; a failed check leaves it unchecked, never half-written
        logger.exception("the mailbox check failed", extra={"mailbox_id": mailbox.mailbox_id})
        return public_view(mailbox)
    view = public_view(mailbox)
    view.update(status=result.status, last_check=result.view(), last_check_at=result.checked_at.isoformat())
    return view


def check(caller: Caller, mailbox_id: str, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """POST /v1/mailboxes/{id}/check: test the saved settings without sending anything."""
    return _checked_view(_load(caller, mailbox_id), clock)


def list_for(caller: Caller) -> list[dict[str, Any]]:
    condition = None if caller.is_admin else (MailboxModel.user_id == caller.user_id)
    return [public_view(m) for m in MailboxModel.query(caller.account_id, filter_condition=condition)]


def get(caller: Caller, mailbox_id: str) -> dict[str, Any]:
    return public_view(_load(caller, mailbox_id))


def update(caller: Caller, mailbox_id: str, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    mailbox = _load(caller, mailbox_id)
    data = validation.require_object(payload)
    fields = _validated(data, current=mailbox, caller=caller)
    _require_password_for_new_hosts(mailbox, fields)
    password = fields.pop("smtp_password", None)
    wants_default = fields.pop("is_default", None)
    imap_password_given = "imap_password" in fields
    imap_password = fields.pop("imap_password", None)
    actions = [
        getattr(MailboxModel, name).set(value) if value is not None else getattr(MailboxModel, name).remove()
        for name, value in fields.items()
    ]
    if password is not None:
        ciphertext = kms.encrypt(password, connection.password_context(caller.account_id, mailbox_id))
        actions.append(MailboxModel.password_ciphertext.set(ciphertext))
    if imap_password_given:
        context = connection.password_context(caller.account_id, mailbox_id, "imap_password")
        actions.append(
            MailboxModel.imap_password_ciphertext.set(kms.encrypt(imap_password, context))
            if imap_password
            else MailboxModel.imap_password_ciphertext.remove()
        )
    if {"imap_host", "imap_port", "imap_login"} & set(data):
        # Another IMAP server or account: what polling and filing knew of the old one is void.
        actions += [
            MailboxModel.sent_folder.remove(),
            MailboxModel.imap_uidvalidity.remove(),
            MailboxModel.imap_last_uid.remove(),
            MailboxModel.imap_polled_at.remove(),
        ]
    actions.append(MailboxModel.updated_at.set(clock.now()))
    if "is_default" in data or "user_id" in fields:  # with the default rules, in one transaction
        new_owner = fields.get("user_id")
        mailbox_defaults.update(mailbox, actions, wants_default=wants_default, new_owner=new_owner)
        mailbox = _load(caller, mailbox_id)
    else:
        mailbox.update(actions=actions, condition=MailboxModel.mailbox_id.exists())
    if (CONNECTION_FIELDS | IMAP_FIELDS) & set(data):
        return _checked_view(mailbox, clock)
    return public_view(mailbox)


def _new_host(current: str | None, given: object) -> bool:
    return isinstance(given, str) and given.strip().lower() != (current or "").strip().lower()


def _require_password_for_new_hosts(mailbox: MailboxModel, fields: dict[str, Any]) -> None:
    """A stored password never goes to a server it was not given for: moving a mailbox to
    another SMTP or IMAP host needs that side's password in the same request (422 otherwise).
    Without it, anyone who may edit the mailbox could send its owner's password to a host of
    their own by the check that follows every change."""
    if _new_host(mailbox.smtp_host, fields.get("smtp_host")) and "smtp_password" not in fields:
        raise InvalidInput(
            f"give the password again: the mailbox moves to another server ({fields['smtp_host']})",
            field="smtp_password",
        )
    imap_host = fields.get("imap_host")
    if not imap_host or not _new_host(mailbox.imap_host, imap_host) or fields.get("imap_password"):
        return
    if "imap_password" not in fields and mailbox.imap_password_ciphertext is not None:
        raise InvalidInput(
            f"give the IMAP password again: IMAP moves to another server ({imap_host})", field="imap_password"
        )
    if "smtp_password" not in fields:  # IMAP signs in with the SMTP password
        raise InvalidInput(
            f"give the password again: IMAP moves to another server ({imap_host})", field="smtp_password"
        )


def delete(caller: Caller, mailbox_id: str) -> None:
    """Delete a mailbox; a deleted default passes to the user's oldest remaining mailbox."""
    mailbox_defaults.delete(_load(caller, mailbox_id))
