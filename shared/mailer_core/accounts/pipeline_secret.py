"""The digital pipeline action's secret: one per installed account, and the settings route.

Kommo signs nothing on the digital pipeline webhook (only `account_id` and `subdomain` say
who posts), so the action's settings carry a secret of the installation: the administrator
puts it into the Mailer action once (the widget's settings form fills it from
`GET /v1/pipeline/settings`), Kommo posts it back with every event, and the webhook compares
it in constant time with the account's. It is made at install (`kommo_oauth`) or on the
first read of the settings by an older account, with one conditional write each, so two
concurrent first reads agree on one secret.

The secret is stored as is in the (encrypted-at-rest) Accounts table: the webhook must
compare it within Kommo's deadline, and it is no more secret than the action settings that
Kommo keeps in plain text. It is never logged.
"""

from __future__ import annotations

import hmac
import secrets as random_source
from typing import Any

from pynamodb.exceptions import UpdateError

from mailer_core.accounts.auth import Caller
from mailer_core.base.errors import Conflict, Forbidden
from mailer_core.store.message_state import is_condition_failure
from mailer_core.store.models import AccountModel

SECRET_BYTES = 32  # 43 URL-safe characters
DP_PATH = "/hooks/kommo/dp"
SALESBOT_PATH = "/hooks/kommo/salesbot"
# What the Mailer action's settings form sends (action[settings][widget][settings][...]).
ACTION_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": "template_id", "required": True, "description": "the template to send (its id)"},
    {"name": "secret", "required": True, "description": "this installation's secret, as given here"},
    {
        "name": "mailbox_id",
        "required": False,
        "description": "the sender; empty: the default mailbox of the lead's responsible user",
    },
    {
        "name": "to",
        "required": False,
        "description": "an address or a variable such as {{ contact.email }}; empty: the lead's contacts",
    },
    {"name": "delay", "required": False, "description": "seconds to wait before sending; empty or 0: now"},
)
_DUMMY = "x" * 43


def new_secret() -> str:
    return random_source.token_urlsafe(SECRET_BYTES)


def matches(account: AccountModel | None, presented: str) -> bool:
    """Whether `presented` is the account's secret; the comparison takes the same time either way."""
    stored = (account.dp_secret if account is not None else None) or ""
    same = hmac.compare_digest((stored or _DUMMY).encode(), presented.encode())
    return bool(stored) and same


def ensure(account_id: int) -> str:
    """The account's secret, made now if it has none (one conditional write; concurrent calls agree)."""
    account = AccountModel(account_id)
    try:
        account.update(
            actions=[AccountModel.dp_secret.set(AccountModel.dp_secret | new_secret())],
            condition=AccountModel.account_id.exists(),
        )
    except UpdateError as exc:
        if is_condition_failure(exc):
            raise Conflict("the account is not connected to Kommo", field=None) from None
        raise
    return str(account.dp_secret)


def settings_view(caller: Caller, *, base_url: str) -> dict[str, Any]:
    """`GET /v1/pipeline/settings`: what the Mailer action's settings form needs (administrators only)."""
    if not caller.is_admin:
        raise Forbidden("only an administrator of the account sees the pipeline settings")
    base = base_url.rstrip("/")
    return {
        "webhook_url": base + DP_PATH,
        "salesbot_url": base + SALESBOT_PATH,
        "secret": ensure(caller.account_id),
        "action_fields": [dict(f) for f in ACTION_FIELDS],
    }
