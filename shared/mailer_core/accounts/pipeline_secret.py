"""The digital pipeline action's secret: one per installed account, stored hashed, rotatable.

Kommo signs nothing on the digital pipeline webhook (only `account_id` and `subdomain` say
who posts), so the action's settings carry a secret of the installation: the administrator
puts it into the Mailer action once, Kommo posts it back with every event, and the webhook
compares its SHA-256 with the account's stored hash in constant time.

Only the hash is stored (`dp_secret_hash`), with the secret's version (`dp_secret_version`):
the secret itself is derived, an HMAC-SHA256 of the account and the version under the Kommo
client secret (held in Secrets Manager, never in the table). A leaked table row therefore lets
nobody post events, and yet `GET /v1/pipeline/settings` can give an administrator the secret
whenever the widget's action dialog needs it (every stage's action carries it, and Kommo gives
a widget no way to read another action's settings). The first read makes version 1 (one
conditional write). `POST /v1/pipeline/secret/rotate` moves to the next version, so the old
secret is refused from then on (no grace period: a rotation is for a secret that leaked, and an
old one kept working would defeat it; Kommo's events between the rotation and the
administrator's edit of the actions are refused with 404, as for any wrong secret). A change of
the client secret changes every derived secret: the settings then answer `secret: null` until
an administrator rotates.

Accounts from before (`dp_secret`, the plain secret) keep working: the hook still accepts the
plain secret and then replaces it by its hash (a write conditioned on the plain value, so it
never undoes a rotation); the settings' first read shows it one last time and hashes it too
(an administrator who rotates moves the account to a derived secret).
Never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.accounts.auth import Caller
from mailer_core.adapters import secrets
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Conflict, Forbidden
from mailer_core.base.logs import logger
from mailer_core.store.message_state import is_condition_failure
from mailer_core.store.models import AccountModel

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


def derived(account_id: int, version: int) -> str:
    """The account's secret of `version`: 43 URL-safe characters, an HMAC under the client secret."""
    key = secrets.kommo_client_secret().encode("utf-8")
    mac = hmac.new(key, f"mailer-dp-secret:{int(account_id)}:{int(version)}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode("ascii").rstrip("=")


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
    """The account's secret: made (version 1) on the first call, derived again on later ones;
    an account's plain secret from before is shown one last time and hashed. None: a stored hash
    that no derived secret matches (the client secret changed), until an administrator rotates."""
    try:
        first = derived(account_id, 1)
        AccountModel(account_id).update(
            actions=[AccountModel.dp_secret_hash.set(digest(first)), AccountModel.dp_secret_version.set(1)],
            condition=AccountModel.account_id.exists()
            & AccountModel.dp_secret_hash.does_not_exist()
            & AccountModel.dp_secret.does_not_exist(),
        )
        return first
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
    try:
        account = AccountModel.get(account_id, consistent_read=True)
    except DoesNotExist:
        raise Conflict("the account is not connected to Kommo", field=None) from None
    if account.dp_secret_hash:
        version = int(account.dp_secret_version or 0)
        current = derived(account_id, version) if version else ""
        same = bool(current) and hmac.compare_digest(digest(current), str(account.dp_secret_hash))
        return current if same else None
    if not account.dp_secret:
        return None
    plain = str(account.dp_secret)
    _hash_plain(account_id, plain)
    return plain


def rotate(caller: Caller, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """`POST /v1/pipeline/secret/rotate`: a new secret, shown once; the old one is refused at once."""
    if not caller.is_admin:
        raise Forbidden("only an administrator of the account rotates the pipeline secret")
    when = clock.now()
    for _ in range(3):  # a concurrent rotation moved the version: take the next one
        try:
            account = AccountModel.get(caller.account_id, consistent_read=True)
        except DoesNotExist:
            raise Conflict("the account is not connected to Kommo", field=None) from None
        version = int(account.dp_secret_version or 0)
        secret = derived(caller.account_id, version + 1)
        unchanged = (
            AccountModel.dp_secret_version == version
            if account.dp_secret_version is not None
            else AccountModel.dp_secret_version.does_not_exist()
        )
        try:
            AccountModel(caller.account_id).update(
                actions=[
                    AccountModel.dp_secret_hash.set(digest(secret)),
                    AccountModel.dp_secret_version.set(version + 1),
                    AccountModel.dp_secret_rotated_at.set(when),
                    AccountModel.dp_secret.remove(),
                ],
                condition=AccountModel.account_id.exists() & unchanged,
            )
            break
        except UpdateError as exc:
            if not is_condition_failure(exc):
                raise
    else:
        raise Conflict("the pipeline secret is being rotated by someone else; try again", field=None)
    logger.info("pipeline secret rotated", extra={"account_id": caller.account_id, "user_id": caller.user_id})
    return {"secret": secret, "rotated_at": when.isoformat().replace("+00:00", "Z")}


def settings_view(caller: Caller, *, base_url: str) -> dict[str, Any]:
    """`GET /v1/pipeline/settings`: what the Mailer action's settings form needs (administrators only).

    `secret` is derived again on each read (only its hash and version are stored)."""
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
