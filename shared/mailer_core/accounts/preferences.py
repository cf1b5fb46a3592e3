"""The compose window's remembered choices, per Kommo user (docs/letters.md#attachment-downloads).

001's changelog: the "track attachment downloads" box "remembers its last state for new
emails". The last value a user chose in a compose is kept on the account item under the
user's id; a new compose that does not choose uses it. Last writer wins: a preference, not a
fact that must happen once. Two idempotent UpdateItems (the map made if missing, then the
user's entry set), no read.
"""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import AccountModel, plain_map

DEFAULTS: dict[str, Any] = {"track_downloads": False}


def of_user(account_id: int, user_id: int) -> dict[str, Any]:
    """The user's choices, the defaults filled in; an account not stored yet has the defaults."""
    try:
        account = AccountModel.get(account_id, attributes_to_get=["compose_preferences"])
    except DoesNotExist:
        return dict(DEFAULTS)
    mine = plain_map(plain_map(account.compose_preferences).get(str(user_id)))
    return {**DEFAULTS, **{k: v for k, v in mine.items() if k in DEFAULTS}}


def remember(account_id: int, user_id: int, name: str, value: Any) -> None:
    """Keep one choice; an account not stored (no Kommo install yet) keeps nothing."""
    if name not in DEFAULTS:
        raise ValueError(f"unknown preference {name!r}")
    account = AccountModel(account_id)
    exists = AccountModel.account_id.exists()
    try:
        account.update(
            actions=[AccountModel.compose_preferences.set(AccountModel.compose_preferences | {})],
            condition=exists,
        )
        mine = AccountModel.compose_preferences[str(user_id)]
        account.update(
            actions=[mine.set(AccountModel.compose_preferences[str(user_id)] | {})], condition=exists
        )
        account.update(
            actions=[AccountModel.compose_preferences[str(user_id)][name].set(value)], condition=exists
        )
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise


def view(account_id: int, user_id: int) -> dict[str, Any]:
    """`GET /v1/preferences`: what the caller's compose window starts with."""
    return of_user(account_id, user_id)


def update(account_id: int, user_id: int, payload: Any) -> dict[str, Any]:
    """`PATCH /v1/preferences`: a choice kept without composing (the window's box ticked)."""
    from mailer_core.base import validation  # cold start: only this route checks a body

    data = validation.require_object(payload)
    validation.reject_unknown(data, set(DEFAULTS))
    for name in data:
        remember(account_id, user_id, name, validation.boolean(data, name))
    return of_user(account_id, user_id)
