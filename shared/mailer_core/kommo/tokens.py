"""Kommo's OAuth 2.0 tokens of an installed account, refreshed before expiry.

Tokens. The access token lives 24 h; the refresh token rotates on every refresh (the old one
is refused from then on), so losing a new refresh token loses the account. `AccountTokens`
refreshes when the access token expires within `kommo_refresh_margin_seconds`, under a lease:

1. read the account (consistent); not due → use the stored access token;
2. take the lease: one conditional update, `token_version = v` and no live lease;
3. the winner refreshes with the refresh token of version v (attempts stop before the lease
   runs out), then stores both new tokens with `token_version = v + 1`, conditionally on
   `token_version = v` (optimistic concurrency), releasing the lease in the same write;
4. a loser never calls Kommo: it waits (through the injected clock) and re-reads until the
   version moved, then uses the new access token. It never holds, sends or writes a refresh
   token it did not just read.

A refresh Kommo refuses because the refresh token is dead (400/401 whose hint says revoked,
expired or undecryptable: `KommoInvalidGrant`) marks the account `disconnected` (only if
nobody stored newer tokens meanwhile), logs an error with the account id, and raises
`KommoDisconnected`; the widget must be installed again. A refresh that fails otherwise
releases the lease, keeps the refresh token, and keeps using the current access token while it
is still valid, then raises: 5xx, no answer, a 429's pause (`KommoRateLimited`), and Kommo
refusing our integration itself (a wrong client id or secret: 401 "Некорректный клиент",
`KommoMisconfigured`, logged as an error): that is our configuration, not the account's, and
disconnecting every account at its next refresh would turn one bad deploy into a reinstall
for every customer.

Every token is KMS-encrypted with an encryption context naming its account (or install) and
its purpose; tokens are never logged.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.adapters import kms, secrets
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.config import get_settings
from mailer_core.base.errors import Conflict
from mailer_core.base.logs import logger
from mailer_core.kommo import client as kommo
from mailer_core.kommo import errors as kommo_errors
from mailer_core.kommo.limits import DISCONNECTED
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import AccountModel

LEASE_SECONDS = 60.0  # the refresh lease; longer than a refresh's attempts
LEASE_POLL_SECONDS = 0.25  # a caller that lost the lease re-reads this often
MAX_LEASE_WAIT_SECONDS = 20.0  # … and gives up after this (using a still-valid token if it has one)


def token_context(account_id: int, purpose: Literal["access", "refresh"]) -> dict[str, str]:
    """The KMS encryption context of an account's token."""
    return {"account_id": str(int(account_id)), "purpose": f"kommo_{purpose}_token"}


def oauth_payload(grant_type: str, **values: str) -> dict[str, str]:
    settings = get_settings()
    client_secret = secrets.kommo_client_secret() if settings.kommo_client_id else ""
    if not (settings.kommo_client_id and client_secret and settings.kommo_redirect_uri):
        raise Conflict("the Kommo integration is not configured (client id, secret, redirect URI)")
    return {
        "client_id": settings.kommo_client_id,
        "client_secret": client_secret,
        "grant_type": grant_type,
        "redirect_uri": settings.kommo_redirect_uri,
        **values,
    }


# -- tokens of an installed account --------------------------------------------------------------


class AccountTokens:
    """The `kommo.TokenProvider` of an installed account (see the module docstring)."""

    def __init__(
        self,
        account: AccountModel,
        *,
        clock: Clock = SYSTEM_CLOCK,
        gate: kommo.RequestGate | None = None,
        margin: float | None = None,
    ) -> None:
        self.account_id = int(account.account_id)
        self.clock = clock
        self.gate = gate
        self.margin = margin if margin is not None else get_settings().kommo_refresh_margin_seconds
        self.owner = uuid.uuid4().hex
        self.refreshes = 0  # refreshes this provider made (tests and logs)
        self._snapshot: AccountModel | None = account
        self._token: str | None = None
        self._version = 0
        self._expires_at: float | None = None
        # A token kept although due (another worker's lease lives, or a refresh just failed)
        # is used without asking again until then.
        self._keep_until = 0.0

    def current(self) -> str:
        if self._token is not None and (
            not self._due(self._expires_at) or self.clock.timestamp() < self._keep_until
        ):
            return self._token
        return self._obtain(force_version=None)

    def renew(self, rejected: str) -> str | None:
        """Kommo refused `rejected` (401): refresh it (unless someone already did) and return the new one."""
        if rejected != self._token:
            return self._token
        token = self._obtain(force_version=self._version)
        return token if token != rejected else None

    # -- internals -------------------------------------------------------------------------

    def _due(self, expires_at: float | None) -> bool:
        return expires_at is not None and float(expires_at) - self.clock.timestamp() <= self.margin

    def _read(self) -> AccountModel:
        try:
            return AccountModel.get(self.account_id, consistent_read=True)
        except DoesNotExist:
            raise kommo_errors.KommoDisconnected(
                f"the Kommo account {self.account_id} is not installed", kommo_status=None
            ) from None

    def _use(self, account: AccountModel) -> str:
        if not account.kommo_token_ciphertext:
            raise kommo_errors.KommoDisconnected(
                f"the Kommo account {self.account_id} is not connected", kommo_status=None
            )
        self._token = kms.decrypt(account.kommo_token_ciphertext, token_context(self.account_id, "access"))
        self._version = int(account.token_version or 0)
        self._expires_at = float(account.token_expires_at) if account.token_expires_at is not None else None
        return self._token

    def _obtain(self, *, force_version: int | None) -> str:
        started = self.clock.timestamp()
        account = self._snapshot if self._snapshot is not None and force_version is None else self._read()
        self._snapshot = None
        while True:
            if account.status == DISCONNECTED:
                raise kommo_errors.KommoDisconnected(
                    f"the Kommo account {self.account_id} is disconnected: install the widget again",
                    kommo_status=None,
                    detail=account.status_detail,
                )
            version = int(account.token_version or 0)
            forced = force_version is not None and version == force_version
            if not forced and not self._due(account.token_expires_at):
                return self._use(account)
            now = self.clock.timestamp()
            expires_at = float(account.token_expires_at) if account.token_expires_at is not None else None
            if not account.kommo_refresh_token_ciphertext:
                # A token without a refresh token (a long-lived one): use it while it lasts.
                if forced or (expires_at is not None and expires_at <= now):
                    raise kommo_errors.KommoDisconnected(
                        f"the Kommo token of account {self.account_id} expired and cannot be refreshed",
                        kommo_status=401,
                    )
                return self._use(account)
            lease_until = account.refresh_lease_until
            if lease_until is None or float(lease_until) <= now:
                if self._take_lease(version, now):
                    return self._refresh(account, version, now + LEASE_SECONDS)
            elif now - started >= MAX_LEASE_WAIT_SECONDS:
                if expires_at is not None and expires_at > now + 60:
                    self._keep_until = min(float(lease_until), expires_at - 60)
                    return self._use(account)
                raise kommo_errors.KommoBusy(
                    f"another worker is refreshing the Kommo token of account {self.account_id}",
                    retry_after=float(lease_until) - now,
                )
            else:
                self.clock.sleep(LEASE_POLL_SECONDS)
            account = self._read()
            if force_version is not None and int(account.token_version or 0) != force_version:
                force_version = None  # someone refreshed meanwhile: their token is the new one

    def _take_lease(self, version: int, now: float) -> bool:
        free = AccountModel.refresh_lease_until.does_not_exist() | (AccountModel.refresh_lease_until <= now)
        try:
            AccountModel(self.account_id).update(
                actions=[
                    AccountModel.refresh_lease_owner.set(self.owner),
                    AccountModel.refresh_lease_until.set(now + LEASE_SECONDS),
                ],
                condition=(AccountModel.token_version == version) & free,
            )
        except UpdateError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    def _release_lease(self) -> None:
        try:
            AccountModel(self.account_id).update(
                actions=[
                    AccountModel.refresh_lease_owner.remove(),
                    AccountModel.refresh_lease_until.remove(),
                ],
                condition=AccountModel.refresh_lease_owner == self.owner,
            )
        except UpdateError as exc:
            if not is_condition_failure(exc):
                raise

    def _refresh(self, account: AccountModel, version: int, lease_until: float) -> str:
        """Holding the lease on `version`: refresh, store the new tokens guarded by the version."""
        log = {"account_id": self.account_id, "token_version": version}
        refresh_token = kms.decrypt(
            str(account.kommo_refresh_token_ciphertext), token_context(self.account_id, "refresh")
        )
        try:
            grant = kommo.request_token(
                account.subdomain,
                oauth_payload("refresh_token", refresh_token=refresh_token),
                domain=account.kommo_domain or "kommo.com",
                clock=self.clock,
                gate=self.gate,
                deadline=lease_until - 5,
            )
        except kommo_errors.KommoInvalidGrant as exc:
            return self._refused(version, exc)
        except Exception as exc:  # the refresh token is kept: it may still work once this passes
            self._release_lease()
            expires_at = account.token_expires_at
            if expires_at is not None and float(expires_at) > self.clock.timestamp() + 60:
                logger.warning(
                    "Kommo token refresh failed; the current token is used until it expires",
                    extra={**log, "error": str(exc)},
                )
                self._keep_until = min(self.clock.timestamp() + 60, float(expires_at) - 60)
                return self._use(account)
            raise
        now = self.clock.timestamp()
        try:
            AccountModel(self.account_id).update(
                actions=[
                    AccountModel.kommo_token_ciphertext.set(
                        kms.encrypt(grant.access_token, token_context(self.account_id, "access"))
                    ),
                    AccountModel.kommo_refresh_token_ciphertext.set(
                        kms.encrypt(grant.refresh_token, token_context(self.account_id, "refresh"))
                    ),
                    AccountModel.token_expires_at.set(grant.expires_at(now)),
                    AccountModel.token_version.set(version + 1),
                    AccountModel.refresh_lease_owner.remove(),
                    AccountModel.refresh_lease_until.remove(),
                ],
                condition=AccountModel.token_version == version,
            )
        except UpdateError as exc:
            if not is_condition_failure(exc):
                raise
            # Newer tokens were stored meanwhile (a reinstall): they win over ours.
            logger.warning("Kommo tokens changed during a refresh; using the stored ones", extra=log)
            return self._obtain(force_version=None)
        self.refreshes += 1
        self._token, self._version, self._expires_at = grant.access_token, version + 1, grant.expires_at(now)
        logger.info("Kommo access token refreshed", extra={**log, "token_version": version + 1})
        return grant.access_token

    def _refused(self, version: int, error: kommo_errors.KommoInvalidGrant) -> str:
        """Kommo refused the refresh token of `version`: disconnect the account unless tokens moved on."""
        account = self._read()
        if int(account.token_version or 0) != version:
            return self._obtain(force_version=None)
        now = self.clock.timestamp()
        reason = error.hint or error.detail or error.title or error.kommo_status
        detail = f"Kommo refused the refresh token: {reason}"
        try:
            AccountModel(self.account_id).update(
                actions=[
                    AccountModel.status.set(DISCONNECTED),
                    AccountModel.status_changed_at.set(datetime.fromtimestamp(now, UTC)),
                    AccountModel.status_detail.set(detail),
                    AccountModel.refresh_lease_owner.remove(),
                    AccountModel.refresh_lease_until.remove(),
                ],
                condition=AccountModel.token_version == version,
            )
        except UpdateError as exc:
            if not is_condition_failure(exc):
                raise
            return self._obtain(force_version=None)
        logger.error(
            "Kommo refused the refresh token: the account is disconnected until the widget is reinstalled",
            extra={
                "account_id": self.account_id,
                "kommo_status": error.kommo_status,
                "kommo_hint": error.hint,
            },
        )
        raise kommo_errors.KommoDisconnected(
            f"the Kommo account {self.account_id} is disconnected: {detail}",
            kommo_status=error.kommo_status,
            detail=detail,
        )
