"""`GET /v1/settings` and `PATCH /v1/settings`: the widget's settings read and changed.

`GET` answers every allowed user; `PATCH` only administrators. A change reaches other warm
containers within `access.CACHE_SECONDS` (the container that made it at once). What the
settings mean is told in `mailer_core.accounts.account_settings`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailer_core.accounts import access
from mailer_core.accounts.account_settings import (
    CAMPAIGN_THRESHOLDS,
    DEFAULT_AUTO_EMAILS_PER_ENTITY_PER_DAY,
    DEFAULT_DAILY_CAP,
    DEFAULT_RATE_PER_SECOND,
    FIELDS,
    MAX_TAG_CHARS,
    MAX_USERS,
    from_account,
)
from mailer_core.base import validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Forbidden, InvalidInput
from mailer_core.store.models import AccountModel

if TYPE_CHECKING:
    from mailer_core.accounts.auth import Caller


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


def _thresholds(data: dict[str, Any]) -> dict[str, float]:
    """The campaign thresholds given, each a per cent."""
    return {
        name: validation.number(data, name, default=default, minimum=0.01, maximum=100)
        for name, default in CAMPAIGN_THRESHOLDS.items()
        if name in data
    }


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
    if "opt_out_tag" in data:
        tag = validation.text(data, "opt_out_tag", max_length=MAX_TAG_CHARS, allow_empty=False).strip()
        if any(ord(c) < 32 for c in tag):
            raise InvalidInput("must be one line of text", field="opt_out_tag")
        out["opt_out_tag"] = tag
    out.update(_thresholds(data))
    for flag, default in (
        ("track_opens", True),
        ("filter_machine_traffic", True),
        ("complaints_run_failed", False),
        ("opt_out_footer", True),
        ("opt_out_note", False),
    ):
        if flag in data:
            out[flag] = validation.boolean(data, flag, default=default)
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
