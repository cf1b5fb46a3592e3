"""Switching Mailer off for an account: Kommo's uninstall hook, or an operator's disable.

`disable` marks the account (status `disabled` or `uninstalled`, the reason, `disabled_at`),
forgets its Kommo tokens (Kommo revokes them on uninstall anyway; `token_version` moves on, so
a refresh running at that moment cannot store new ones), and cancels its pending work: every
`scheduled` and `queued` message composed before that moment, found through the `by_status`
index, moves to `canceled` by one conditional write each (never a message that is already
sending) and loses its EventBridge schedule. From then on:

- every /v1 call of the account answers 403 with the reason (mailer_core.accounts.access);
- the send worker cancels instead of sending any email of the account it meets, and any email
  composed before `disabled_at`, even after a reinstall (`access.send_refusal`); this also
  covers what the sweep did not reach within its time budget (it cancels thousands; a job
  already on the queue, or a schedule that fires, meets the worker's check);
- the automation asks `access.account_active` before doing anything.

Reinstalling (kommo_oauth.store_account_tokens) makes the account active again and keeps all
its data: settings, mailboxes, templates, history.

Kommo's hook. When the integration is switched off in an account, Kommo sends
`GET {hook URL}?client_uuid=…&account_id=…&signature=…` where `signature` is the hex
HMAC-SHA256 of `"{client_id}|{account_id}"` keyed with the integration's client secret
(https://developers.kommo.com/docs/oauth-20, "hook on disabling the integration").
`receive_uninstall_hook` checks `client_uuid` is our integration and the signature, both in
constant time. The signature carries no time, so a captured hook URL could be replayed as a
permanent off switch; the hook is therefore confirmed with Kommo before anything is cancelled:
Kommo revokes the integration's tokens when it is switched off, so one request with the
account's token (`GET /api/v4/account`, one attempt, `CONFIRM_SECONDS`) that Kommo still
answers means the integration is installed: the hook is refused (409) and nothing changes.
A refused token (401, a refused refresh) confirms it. When Kommo cannot be asked (down, busy,
no token kept), the hook is honoured: switching off what the customer switched off matters
more than a replay, which a reinstall undoes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.accounts import access
from mailer_core.accounts.auth import AuthNotConfigured
from mailer_core.adapters import secrets
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.config import get_settings
from mailer_core.base.errors import Conflict, Forbidden, MailerError, MalformedRequest
from mailer_core.base.logs import logger
from mailer_core.kommo import accounts as kommo_accounts
from mailer_core.kommo.errors import KommoAccessDenied
from mailer_core.messages.lifecycle import cancel_stored
from mailer_core.store import message_state as state
from mailer_core.store.models import AccountModel, MessageModel

UNINSTALL_PATH = "/hooks/kommo/uninstall"
SWEEP_SECONDS = 6.0  # of the webhook function's 10 s
CONFIRM_SECONDS = 2.0  # the request that asks Kommo whether the integration is still installed
SWEEP_THREADS = 8
_ACCOUNT_ID = re.compile(r"^[0-9]{1,19}$")


@dataclass(frozen=True)
class DisableResult:
    account_id: int
    status: str  # disabled, uninstalled, or unknown (no such account: nothing done)
    canceled: int = 0  # messages canceled by the sweep
    finished: bool = True  # False: the time budget ran out; the worker cancels the rest


def disable(
    account_id: int,
    reason: str,
    *,
    clock: Clock = SYSTEM_CLOCK,
    status: str = access.DISABLED,
    budget_seconds: float = SWEEP_SECONDS,
) -> DisableResult:
    """Switch Mailer off for an installed account and cancel its pending work (idempotent)."""
    if status not in access.INACTIVE:
        raise ValueError(f"status must be one of {sorted(access.INACTIVE)}")
    when = clock.now()
    try:
        AccountModel(account_id).update(
            actions=[
                AccountModel.status.set(status),
                AccountModel.status_detail.set(reason),
                AccountModel.status_changed_at.set(when),
                AccountModel.disabled_at.set(when),
                AccountModel.kommo_token_ciphertext.remove(),
                AccountModel.kommo_refresh_token_ciphertext.remove(),
                AccountModel.token_expires_at.remove(),
                AccountModel.token_version.add(1),
                AccountModel.refresh_lease_owner.remove(),
                AccountModel.refresh_lease_until.remove(),
                AccountModel.blocked_until.remove(),
            ],
            condition=AccountModel.account_id.exists(),
        )
    except UpdateError as exc:
        if not state.is_condition_failure(exc):
            raise
        logger.warning("disable for an account Mailer does not know", extra={"account_id": account_id})
        return DisableResult(account_id, "unknown")
    access.forget(account_id)
    canceled, finished = cancel_pending(
        account_id,
        before=when,
        reason=f"Mailer was switched off for the account: {reason}",
        clock=clock,
        deadline=clock.timestamp() + budget_seconds,
    )
    logger.info(
        "account switched off",
        extra={"account_id": account_id, "status": status, "canceled": canceled, "finished": finished},
    )
    return DisableResult(account_id, status, canceled, finished)


def cancel_pending(
    account_id: int, *, before: datetime, reason: str, clock: Clock, deadline: float
) -> tuple[int, bool]:
    """Cancel the account's scheduled and queued messages composed up to `before`.

    Returns (how many this call canceled, whether it went through all of them before
    `deadline`). Each cancel is the same conditional transition a user's cancel makes, so a
    message the worker claimed meanwhile, or a second sweep, is left alone.
    """
    futures: list[Future[bool]] = []
    finished = True
    with ThreadPoolExecutor(max_workers=SWEEP_THREADS, thread_name_prefix="sweep") as pool:
        for status in (state.SCHEDULED, state.QUEUED):
            for message in MessageModel.by_status.query(state.status_key(account_id, status)):
                if clock.timestamp() >= deadline:
                    finished = False
                    break
                if message.created_at <= before:
                    futures.append(pool.submit(cancel_one, message, reason, clock))
            if not finished:
                break
    return sum(f.result() for f in futures), finished


def cancel_one(message: MessageModel, reason: str, clock: Clock) -> bool:
    """A user's cancel, made by Mailer: a conditional transition, then the schedule goes."""
    return cancel_stored(message, detail=reason, clock=clock, error=reason)


# -- Kommo's hook ------------------------------------------------------------------------------


def hook_signature(client_id: str, account_id: str, secret: str) -> str:
    return hmac.new(secret.encode(), f"{client_id}|{account_id}".encode(), hashlib.sha256).hexdigest()


def receive_uninstall_hook(params: Mapping[str, str], *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Verify Kommo's "integration disabled" hook and switch the account off.

    Raises MalformedRequest (400) for a hook without its parameters, Forbidden (403) for one
    that is not signed by our integration.
    """
    settings = get_settings()
    client_uuid = (params.get("client_uuid") or "").strip()
    account_text = (params.get("account_id") or "").strip()
    signature = (params.get("signature") or "").strip().lower()
    for name, value in (("client_uuid", client_uuid), ("account_id", account_text), ("signature", signature)):
        if not value:
            raise MalformedRequest(f"the hook lacks {name}", field=name)
    if not _ACCOUNT_ID.match(account_text) or int(account_text) < 1:
        raise MalformedRequest("account_id is not a Kommo account id", field="account_id")
    client_secret = secrets.kommo_client_secret() if settings.kommo_client_id else ""
    if not settings.kommo_client_id or not client_secret:
        raise AuthNotConfigured("the Kommo integration is not configured (client id, secret)")
    if not hmac.compare_digest(client_uuid.encode(), settings.kommo_client_id.encode()):
        raise Forbidden("the hook is for another integration", field="client_uuid")
    expected = hook_signature(settings.kommo_client_id, account_text, client_secret)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise Forbidden("the hook's signature does not match", field="signature")
    started = time.monotonic()
    if _still_installed(int(account_text), clock):
        logger.warning(
            "an uninstall hook for an account Kommo still serves", extra={"account_id": account_text}
        )
        raise Conflict(
            "Kommo still accepts the account's token: the integration is on; nothing was switched off",
            field="account_id",
        )
    result = disable(
        int(account_text),
        "the integration was switched off in Kommo",
        clock=clock,
        status=access.UNINSTALLED,
        budget_seconds=max(1.0, SWEEP_SECONDS - (time.monotonic() - started)),
    )
    return {
        "account_id": result.account_id,
        "status": result.status,
        "canceled": result.canceled,
        "finished": result.finished,
    }


def _still_installed(account_id: int, clock: Clock) -> bool:
    """Whether Kommo still answers with the account's token (then the integration is on)."""
    try:
        account = AccountModel.get(account_id, consistent_read=True)
    except DoesNotExist:
        return False
    if not account.kommo_token_ciphertext:
        return False  # switched off before, or never connected: nothing to ask with
    try:
        client = kommo_accounts.client_for_account(
            account, clock=clock, max_retries=0, timeout=CONFIRM_SECONDS
        )
        client.account()
    except KommoAccessDenied:
        return False  # the token is refused: Kommo switched the integration off
    except MailerError as error:  # Kommo down, busy or blocked: cannot tell, so honour the hook
        logger.warning("could not confirm an uninstall with Kommo", extra={"reason": str(error)[:200]})
        return False
    return True
