"""Who may use Mailer in an account, checked in one place for every /v1 route.

The widget token says who calls (mailer_core.accounts.auth); this module says whether they may. After
the token is verified, `authorize` loads the account and refuses, with 403 and a `reason`:

- `account_disabled` / `account_uninstalled`: Mailer was switched off for the account (an
  operator, or Kommo's uninstall hook: mailer_core.kommo_hooks.uninstall);
- `user_not_allowed`: the account's settings name the users who may use Mailer and this one
  is not among them (administrators are always allowed).

The effective administrator flag (a Kommo account administrator, or a user the settings
name as a Mailer administrator) replaces the token's `is_admin` for the rest of the request.
Routes refuse what only an administrator may do with reason `admin_only`.

An account without an item (the tests and the local stack compose without installing) has
the default settings: everyone allowed, Kommo's administrators administer.

The account is read once and kept per warm container for `CACHE_SECONDS` (time from the
injected clock): a change of permissions or status reaches every container within that time,
the container that made it at once (`forget`). The send worker and the automation ask
`account_active` / `send_refusal` through the same cache: one read per account per 30 s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from pynamodb.exceptions import DoesNotExist

from mailer_core.accounts.account_settings import AccountSettings, from_account
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.config import Settings, get_settings
from mailer_core.base.errors import Forbidden
from mailer_core.base.ttl_cache import TtlCache
from mailer_core.store.models import AccountModel

if TYPE_CHECKING:
    from mailer_core.accounts.auth import Caller  # only a type here: the send worker needs no JWT library

CACHE_SECONDS = 30.0
ACTIVE, DISABLED, UNINSTALLED = "active", "disabled", "uninstalled"
INACTIVE = frozenset({DISABLED, UNINSTALLED})
# The `reason` of a 403.
ACCOUNT_DISABLED, ACCOUNT_UNINSTALLED = "account_disabled", "account_uninstalled"
USER_NOT_ALLOWED, ADMIN_ONLY, NOT_OWNER = "user_not_allowed", "admin_only", "not_owner"


@dataclass(frozen=True)
class AccountState:
    """What access needs to know of an account."""

    account_id: int
    installed: bool  # an item exists
    status: str
    detail: str | None
    disabled_at: datetime | None
    settings: AccountSettings

    @property
    def active(self) -> bool:
        return self.status not in INACTIVE


_cache: TtlCache[int, AccountState] = TtlCache(CACHE_SECONDS)
# The configuration the cache belongs to: another one (the tests' next stack) starts it afresh.
_cache_owner: list[Settings] = []


def _load(account_id: int) -> AccountState:
    try:
        account: AccountModel | None = AccountModel.get(account_id)
    except DoesNotExist:
        account = None
    return AccountState(
        account_id=account_id,
        installed=account is not None,
        status=(account.status if account is not None else None) or ACTIVE,
        detail=account.status_detail if account is not None else None,
        disabled_at=account.disabled_at if account is not None else None,
        settings=from_account(account),
    )


def state(account_id: int, *, clock: Clock = SYSTEM_CLOCK) -> AccountState:
    """The account's state, read at most once per `CACHE_SECONDS` per container."""
    settings = get_settings()
    if not _cache_owner or _cache_owner[0] is not settings:
        _cache.clear()
        _cache_owner[:] = [settings]
    return _cache.get_or_load(account_id, clock.timestamp(), lambda: _load(account_id))


def forget(account_id: int | None = None) -> None:
    """Drop what this container knows of one account (after a change it made), or of all."""
    if account_id is None:
        _cache.clear()
    else:
        _cache.pop(account_id)


def account_active(account_id: int, *, clock: Clock = SYSTEM_CLOCK) -> bool:
    """False once the account is disabled or uninstalled (seen within `CACHE_SECONDS`)."""
    return state(account_id, clock=clock).active


def _inactive_words(current: AccountState) -> str:
    what = "uninstalled from" if current.status == UNINSTALLED else "disabled for"
    detail = f" ({current.detail})" if current.detail else ""
    return f"Mailer was {what} this Kommo account{detail}"


def authorize(caller: Caller, *, clock: Clock = SYSTEM_CLOCK) -> Caller:
    """The caller with their effective administrator flag; 403 with a reason if they may not use Mailer."""
    current = state(caller.account_id, clock=clock)
    if not current.active:
        reason = ACCOUNT_UNINSTALLED if current.status == UNINSTALLED else ACCOUNT_DISABLED
        again = "install it again" if current.status == UNINSTALLED else "ask Mailer's support to enable it"
        raise Forbidden(f"{_inactive_words(current)}; an administrator can {again}", reason=reason)
    admin = current.settings.is_admin(caller.user_id, kommo_admin=caller.is_admin)
    if not admin and not current.settings.allows(caller.user_id):
        raise Forbidden(
            "an administrator of this account has not allowed you to use Mailer", reason=USER_NOT_ALLOWED
        )
    return caller if admin == caller.is_admin else replace(caller, is_admin=admin)


def send_refusal(
    account_id: int, *, composed_at: datetime | None = None, clock: Clock = SYSTEM_CLOCK
) -> str | None:
    """Why an email of this account must not go out now (None: it may).

    An email composed before the account was last disabled never goes out, even after a
    reinstall: disabling cancels the account's scheduled work, and what that sweep did not
    reach is canceled here when its time comes.
    """
    current = state(account_id, clock=clock)
    if not current.active:
        return _inactive_words(current)
    if composed_at is not None and current.disabled_at is not None and composed_at <= current.disabled_at:
        return f"composed before Mailer was switched off for this account ({current.disabled_at.isoformat()})"
    return None


def settings_of(account_id: int, *, clock: Clock = SYSTEM_CLOCK) -> AccountSettings:
    """The account's settings as the warm container knows them (at most `CACHE_SECONDS` old)."""
    return state(account_id, clock=clock).settings


def auto_email_cap(account_id: int, *, clock: Clock = SYSTEM_CLOCK) -> int:
    """How many automatic emails one template may send to one entity a day (at least 1)."""
    return max(1, settings_of(account_id, clock=clock).auto_emails_per_entity_per_day)
