"""The digital pipeline action's secret: one per installed account, stored hashed, rotatable.

Kommo signs nothing on the digital pipeline webhook (only `account_id` and `subdomain` say
who posts), so the action's settings carry a secret of the installation: the administrator
puts it into the Mailer action once, Kommo posts it back with every event, and the webhook
compares its SHA-256 with the account's stored hash in constant time.

Only the hash is stored (`dp_secret_hash`): the secret is 256 random bits, so a plain SHA-256
cannot be reversed or guessed, and a leaked table row no longer lets anyone post events. The
secret is therefore shown once: `GET /v1/pipeline/settings` makes it on the account's first
read (one conditional write, so two concurrent first reads give it to one of them) and answers
`secret: null` afterwards; `POST /v1/pipeline/secret/rotate` makes a new one, shows it once,
and refuses the old one from then on (no grace period: a rotation is for a secret that leaked,
and an old one kept working would defeat it; Kommo's events between the rotation and the
administrator's edit of the action are refused with 404, as for any wrong secret).

Accounts from before (`dp_secret`, the plain secret) keep working: the hook still accepts the
plain secret and then replaces it by its hash (a write conditioned on the plain value, so it
never undoes a rotation); the settings' first read shows it one last time and hashes it too.
Never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as random_source
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.accounts.auth import Caller
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Conflict, Forbidden
from mailer_core.base.logs import logger
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
_DUMMY_HASH = "0" * 64
ROTATE_PATH = "/v1/pipeline/secret/rotate"


def new_secret() -> str:
    return random_source.token_urlsafe(SECRET_BYTES)


def digest(secret: str) -> str:
    """What is stored of a secret: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def matches(account: AccountModel | None, presented: str) -> bool:
    """Whether `presented` is the account's secret; the comparison takes the same time either way.

    An account that still holds its plain secret has it replaced by the hash on a match."""
    stored_hash = (account.dp_secret_hash if account is not None else None) or ""
    plain = (account.dp_secret if account is not None else None) or ""
    if not stored_hash and plain:
        same = hmac.compare_digest(digest(plain), digest(presented))
        if same and presented and account is not None:
            _hash_plain(int(account.account_id), plain)
        return same and bool(presented)
    same = hmac.compare_digest(stored_hash or _DUMMY_HASH, digest(presented))
    return bool(stored_hash) and bool(presented) and same


def _hash_plain(account_id: int, plain: str) -> None:
    """Store the hash of an account's plain secret in its place, unless it changed meanwhile."""
    try:
        AccountModel(account_id).update(
            actions=[AccountModel.dp_secret_hash.set(digest(plain)), AccountModel.dp_secret.remove()],
            condition=(AccountModel.dp_secret == plain) & AccountModel.dp_secret_hash.does_not_exist(),
        )
    except UpdateError as exc:
        if not is_condition_failure(exc):  # the hook's answer does not depend on it: next time
            logger.warning("the pipeline secret was not hashed", extra={"account_id": account_id})


def ensure(account_id: int) -> str | None:
    """The account's secret when this call made it (or found it plain, and hashed it), else None:
    the secret is shown once. One conditional write; of concurrent first calls one gets it."""
    secret = new_secret()
    try:
        AccountModel(account_id).update(
            actions=[AccountModel.dp_secret_hash.set(digest(secret))],
            condition=AccountModel.account_id.exists()
            & AccountModel.dp_secret_hash.does_not_exist()
            & AccountModel.dp_secret.does_not_exist(),
        )
        return secret
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
    try:
        account = AccountModel.get(account_id, consistent_read=True)
    except DoesNotExist:
        raise Conflict("the account is not connected to Kommo", field=None) from None
    if account.dp_secret_hash or not account.dp_secret:
        return None
    plain = str(account.dp_secret)
    _hash_plain(account_id, plain)
    return plain


def rotate(caller: Caller, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """`POST /v1/pipeline/secret/rotate`: a new secret, shown once; the old one is refused at once."""
    if not caller.is_admin:
        raise Forbidden("only an administrator of the account rotates the pipeline secret")
    secret = new_secret()
    when = clock.now()
    try:
        AccountModel(caller.account_id).update(
            actions=[
                AccountModel.dp_secret_hash.set(digest(secret)),
                AccountModel.dp_secret_rotated_at.set(when),
                AccountModel.dp_secret.remove(),
            ],
            condition=AccountModel.account_id.exists(),
        )
    except UpdateError as exc:
        if is_condition_failure(exc):
            raise Conflict("the account is not connected to Kommo", field=None) from None
        raise
    logger.info("pipeline secret rotated", extra={"account_id": caller.account_id, "user_id": caller.user_id})
    return {"secret": secret, "rotated_at": when.isoformat().replace("+00:00", "Z")}


def settings_view(caller: Caller, *, base_url: str) -> dict[str, Any]:
    """`GET /v1/pipeline/settings`: what the Mailer action's settings form needs (administrators only).

    `secret` is the secret on the read that made it, and null afterwards (only its hash is kept)."""
    if not caller.is_admin:
        raise Forbidden("only an administrator of the account sees the pipeline settings")
    base = base_url.rstrip("/")
    return {
        "webhook_url": base + DP_PATH,
        "salesbot_url": base + SALESBOT_PATH,
        "secret": ensure(caller.account_id),
        "rotate_url": base + ROTATE_PATH,
        "action_fields": [dict(f) for f in ACTION_FIELDS],
    }
