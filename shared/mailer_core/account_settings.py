"""The widget's settings per Kommo account: who may use Mailer, who administers it, defaults.

Stored on the account's item (AccountModel); an attribute that was never set means its
default, so an account that never saved settings (or has no item at all: the tests and the
local stack compose without installing) behaves as "everyone allowed, Kommo's administrators
administer, stock defaults".

- `allowed_user_ids`: the Kommo users who may use Mailer; null or empty means every user of
  the account. Administrators are always allowed.
- `admin_user_ids`: Mailer administrators besides Kommo's account administrators (the
  token's `is_admin`). An administrator sees and manages every user's mailboxes, messages and
  templates, lifts suppressions and changes these settings.
- `default_rate_per_second`, `default_daily_cap`: what a new mailbox gets when the request
  does not say.
- `track_opens`: whether a new email or template carries the open pixel when it does not say.
- `filter_machine_traffic`: tell machines' opens and clicks apart (mailer_core.machine_traffic).
- `auto_emails_per_entity_per_day`: how many automatic emails one template may send to one
  lead, contact or company a day (the automation reads `auto_email_cap`).

`GET /v1/settings` answers every allowed user; `PATCH /v1/settings` only administrators. A
change reaches other warm containers within `access.CACHE_SECONDS` (the container that made
it at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailer_core import access
from mailer_core.base import validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Forbidden, InvalidInput
from mailer_core.store.models import AccountModel

if TYPE_CHECKING:
    from mailer_core.auth import Caller  # a type only: the send worker needs no JWT library

DEFAULT_RATE_PER_SECOND = 1.0
DEFAULT_DAILY_CAP = 2000
DEFAULT_AUTO_EMAILS_PER_ENTITY_PER_DAY = 3
MAX_USERS = 1000  # ids in one list; a Kommo account has far fewer users
FIELDS = (
    "allowed_user_ids",
    "admin_user_ids",
    "default_rate_per_second",
    "default_daily_cap",
    "track_opens",
    "filter_machine_traffic",
    "auto_emails_per_entity_per_day",
)


@dataclass(frozen=True)
class AccountSettings:
    """An account's settings with the defaults filled in."""

    allowed_user_ids: tuple[int, ...] | None = None  # None: every user of the account
    admin_user_ids: tuple[int, ...] = ()
    default_rate_per_second: float = DEFAULT_RATE_PER_SECOND
    default_daily_cap: int = DEFAULT_DAILY_CAP
    track_opens: bool = True
    filter_machine_traffic: bool = True
    auto_emails_per_entity_per_day: int = DEFAULT_AUTO_EMAILS_PER_ENTITY_PER_DAY

    def is_admin(self, user_id: int, *, kommo_admin: bool) -> bool:
        return kommo_admin or user_id in self.admin_user_ids

    def allows(self, user_id: int) -> bool:
        return self.allowed_user_ids is None or user_id in self.allowed_user_ids

    def view(self) -> dict[str, Any]:
        return {
            "allowed_user_ids": list(self.allowed_user_ids) if self.allowed_user_ids is not None else None,
            "admin_user_ids": list(self.admin_user_ids),
            "default_rate_per_second": self.default_rate_per_second,
            "default_daily_cap": self.default_daily_cap,
            "track_opens": self.track_opens,
            "filter_machine_traffic": self.filter_machine_traffic,
            "auto_emails_per_entity_per_day": self.auto_emails_per_entity_per_day,
        }


def _ids(values: Any) -> tuple[int, ...]:
    return tuple(sorted({int(v) for v in values or ()}))


def from_account(account: AccountModel | None) -> AccountSettings:
    """The settings stored on `account` (None: an account without an item), defaults filled in."""
    if account is None:
        return AccountSettings()
    allowed = _ids(account.allowed_user_ids)
    return AccountSettings(
        allowed_user_ids=allowed or None,
        admin_user_ids=_ids(account.admin_user_ids),
        default_rate_per_second=(
            float(account.default_rate_per_second)
            if account.default_rate_per_second is not None
            else DEFAULT_RATE_PER_SECOND
        ),
        default_daily_cap=(
            int(account.default_daily_cap) if account.default_daily_cap is not None else DEFAULT_DAILY_CAP
        ),
        track_opens=account.track_opens is not False,
        filter_machine_traffic=account.filter_machine_traffic is not False,
        auto_emails_per_entity_per_day=(
            int(account.auto_emails_per_entity_per_day)
            if account.auto_emails_per_entity_per_day is not None
            else DEFAULT_AUTO_EMAILS_PER_ENTITY_PER_DAY
        ),
    )


def for_account(account_id: int, *, clock: Clock = SYSTEM_CLOCK) -> AccountSettings:
    """The account's settings as the warm container knows them (at most `access.CACHE_SECONDS` old)."""
    return access.state(account_id, clock=clock).settings


def auto_email_cap(account_id: int, *, clock: Clock = SYSTEM_CLOCK) -> int:
    """How many automatic emails one template may send to one entity a day (at least 1)."""
    return max(1, for_account(account_id, clock=clock).auto_emails_per_entity_per_day)


def get(caller: Caller, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """GET /v1/settings: any user allowed to use Mailer may read them."""
    current = access.state(caller.account_id, clock=clock)
    return {**current.settings.view(), "status": current.status}


def _user_ids(data: dict[str, Any], name: str) -> list[int] | None:
    """Sorted distinct ids; an empty list is None (for allowed_user_ids: everyone)."""
    value = data[name]
    if not isinstance(value, list):
        raise InvalidInput("must be a list of Kommo user ids, or null", field=name)
    if len(value) > MAX_USERS:
        raise InvalidInput(f"has more than {MAX_USERS} user ids", field=name)
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item < 2**63:
            raise InvalidInput("must be a positive integer (a Kommo user id)", field=f"{name}[{index}]")
    return sorted(set(value)) or None


def validated(payload: Any) -> dict[str, Any]:
    """The settings a PATCH changes, checked; None values go back to the default."""
    data = validation.require_object(payload)
    validation.reject_unknown(data, FIELDS)
    if not data:
        raise InvalidInput(f"give at least one of {', '.join(FIELDS)}", field="body")
    out: dict[str, Any] = {name: None for name in FIELDS if name in data and data[name] is None}
    data = {name: value for name, value in data.items() if value is not None}
    for name in ("allowed_user_ids", "admin_user_ids"):
        if name in data:
            out[name] = _user_ids(data, name)
    if "default_rate_per_second" in data:
        out["default_rate_per_second"] = validation.number(
            data, "default_rate_per_second", default=DEFAULT_RATE_PER_SECOND, minimum=0.01, maximum=100
        )
    if "default_daily_cap" in data:
        out["default_daily_cap"] = validation.integer(
            data, "default_daily_cap", default=DEFAULT_DAILY_CAP, minimum=1, maximum=1_000_000
        )
    if "auto_emails_per_entity_per_day" in data:
        out["auto_emails_per_entity_per_day"] = validation.integer(
            data,
            "auto_emails_per_entity_per_day",
            default=DEFAULT_AUTO_EMAILS_PER_ENTITY_PER_DAY,
            minimum=1,
            maximum=1000,
        )
    for flag in ("track_opens", "filter_machine_traffic"):
        if flag in data:
            out[flag] = validation.boolean(data, flag, default=True)
    return out


def update(caller: Caller, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """PATCH /v1/settings: administrators only; one UpdateItem, nothing half-written.

    An account that has no item yet (never installed through Kommo) gets one holding the
    settings; a later install keeps them (kommo_oauth.store_account_tokens only sets its own
    attributes).
    """
    if not caller.is_admin:
        raise Forbidden("only a Mailer administrator changes the settings", reason=access.ADMIN_ONLY)
    changes = validated(payload)
    actions = [
        getattr(AccountModel, name).set(value) if value is not None else getattr(AccountModel, name).remove()
        for name, value in changes.items()
    ]
    actions += [
        AccountModel.subdomain.set(AccountModel.subdomain | caller.subdomain),
        AccountModel.status.set(AccountModel.status | access.ACTIVE),
        AccountModel.settings_updated_at.set(clock.now()),
        AccountModel.settings_updated_by.set(caller.user_id),
    ]
    account = AccountModel(caller.account_id)
    account.update(actions=actions)
    access.forget(caller.account_id)
    return {**from_account(account).view(), "status": account.status}
