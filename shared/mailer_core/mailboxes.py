"""Mailboxes: the SMTP accounts emails leave through.

Rules: a user manages their own mailboxes, an administrator everyone's in the account; the
password is encrypted with KMS before it is stored and is never returned or logged; port 25
is refused because AWS blocks it for Lambda.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pynamodb.exceptions import DoesNotExist, PutError

from mailer_core import secrets, validation
from mailer_core.auth import Caller
from mailer_core.clock import SYSTEM_CLOCK, Clock
from mailer_core.errors import Conflict, Forbidden, InvalidInput, NotFound
from mailer_core.models import MailboxModel
from mailer_core.settings import get_settings

if TYPE_CHECKING:  # the send worker needs SMTP; the API should not import it
    from mailer_core.smtp import SmtpSettings

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
}
SECURITY_CHOICES = ("ssl", "starttls")
DEFAULT_RATE_PER_SECOND = 1.0
DEFAULT_DAILY_CAP = 2000


def _password_context(account_id: int, mailbox_id: str) -> dict[str, str]:
    return {"account_id": str(account_id), "mailbox_id": mailbox_id, "purpose": "smtp_password"}


def public_view(mailbox: MailboxModel) -> dict[str, Any]:
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
    }


def _validated(payload: dict[str, Any], *, current: MailboxModel | None, caller: Caller) -> dict[str, Any]:
    """Check a create (current is None) or a patch; return the fields to write."""
    validation.reject_unknown(payload, FIELDS)
    creating = current is None
    out: dict[str, Any] = {}
    if creating or "sender_email" in payload:
        out["sender_email"] = validation.email_address(payload.get("sender_email"), "sender_email")
    if "sender_name" in payload or creating:
        out["sender_name"] = validation.text(payload, "sender_name", max_length=200).strip()
    if creating or "smtp_host" in payload:
        out["smtp_host"] = validation.hostname(payload, "smtp_host", required=True)
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
        login = validation.text(payload, "smtp_login", max_length=320)
        out["smtp_login"] = login or out.get("sender_email") or (current.sender_email if current else "")
    if creating or "smtp_password" in payload:
        out["smtp_password"] = validation.text(
            payload, "smtp_password", required=creating, max_length=1000, allow_empty=False
        )
    if "rate_per_second" in payload or creating:
        out["rate_per_second"] = validation.number(
            payload, "rate_per_second", default=DEFAULT_RATE_PER_SECOND, minimum=0.01, maximum=100
        )
    if "daily_cap" in payload or creating:
        out["daily_cap"] = validation.integer(
            payload, "daily_cap", default=DEFAULT_DAILY_CAP, minimum=1, maximum=1_000_000
        )
    if "is_default" in payload:
        out["is_default"] = validation.boolean(payload, "is_default")
    if "user_id" in payload:
        user_id = validation.integer(payload, "user_id", minimum=1)
        if user_id != caller.user_id and not caller.is_admin:
            raise Forbidden("only an administrator manages another user's mailboxes", field="user_id")
        out["user_id"] = user_id
    return out


def _load(caller: Caller, mailbox_id: str) -> MailboxModel:
    try:
        mailbox = MailboxModel.get(caller.account_id, mailbox_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such mailbox", field="mailbox_id") from None
    if not caller.is_admin and int(mailbox.user_id) != caller.user_id:
        raise NotFound("no such mailbox", field="mailbox_id")
    return mailbox


def create(caller: Caller, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    fields = _validated(validation.require_object(payload), current=None, caller=caller)
    mailbox_id = clock.new_id()
    now = clock.now()
    password = fields.pop("smtp_password")
    mailbox = MailboxModel(
        caller.account_id,
        mailbox_id,
        user_id=fields.pop("user_id", caller.user_id),
        password_ciphertext=secrets.encrypt(password, _password_context(caller.account_id, mailbox_id)),
        created_at=now,
        updated_at=now,
        **fields,
    )
    try:
        mailbox.save(condition=MailboxModel.mailbox_id.does_not_exist())
    except PutError as exc:  # an id collision would be a bug; never overwrite
        raise Conflict("a mailbox with this id exists") from exc
    return public_view(mailbox)


def list_for(caller: Caller) -> list[dict[str, Any]]:
    condition = None if caller.is_admin else (MailboxModel.user_id == caller.user_id)
    return [public_view(m) for m in MailboxModel.query(caller.account_id, filter_condition=condition)]


def get(caller: Caller, mailbox_id: str) -> dict[str, Any]:
    return public_view(_load(caller, mailbox_id))


def update(caller: Caller, mailbox_id: str, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    mailbox = _load(caller, mailbox_id)
    fields = _validated(validation.require_object(payload), current=mailbox, caller=caller)
    password = fields.pop("smtp_password", None)
    actions = [getattr(MailboxModel, name).set(value) for name, value in fields.items()]
    if password is not None:
        ciphertext = secrets.encrypt(password, _password_context(caller.account_id, mailbox_id))
        actions.append(MailboxModel.password_ciphertext.set(ciphertext))
    actions.append(MailboxModel.updated_at.set(clock.now()))
    mailbox.update(actions=actions, condition=MailboxModel.mailbox_id.exists())
    return public_view(mailbox)


def delete(caller: Caller, mailbox_id: str) -> None:
    mailbox = _load(caller, mailbox_id)
    mailbox.delete(condition=MailboxModel.mailbox_id.exists())


def default_for_user(account_id: int, user_id: int) -> MailboxModel | None:
    """The user's default mailbox, else their only one, else None."""
    own = list(MailboxModel.query(account_id, filter_condition=MailboxModel.user_id == user_id))
    defaults = [m for m in own if m.is_default]
    if defaults:
        return defaults[0]
    return own[0] if len(own) == 1 else None


def find(account_id: int, mailbox_id: str) -> MailboxModel | None:
    try:
        return MailboxModel.get(account_id, mailbox_id)
    except DoesNotExist:
        return None


def smtp_settings(mailbox: MailboxModel) -> SmtpSettings:
    """Connection settings with the decrypted password, for the send worker only."""
    from mailer_core.smtp import SmtpSettings

    settings = get_settings()
    password = secrets.decrypt(
        mailbox.password_ciphertext, _password_context(int(mailbox.account_id), mailbox.mailbox_id)
    )
    return SmtpSettings(
        host=mailbox.smtp_host,
        port=int(mailbox.smtp_port),
        security=mailbox.smtp_security,  # type: ignore[arg-type]
        login=mailbox.smtp_login,
        password=password,
        timeout=settings.smtp_timeout_seconds,
        ca_file=settings.smtp_ca_file,
    )
