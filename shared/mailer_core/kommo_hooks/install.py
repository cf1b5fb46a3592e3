"""Kommo's OAuth 2.0 install: the redirect, the code exchange, the account stored.

Install. When an administrator installs the widget, Kommo calls our redirect URI
(`{ApiUrl}/hooks/kommo/install`) with `code`, `referer` (the account's host) and
`from_widget`, gives us 3 s to answer, and never calls again. `receive_install` answers at
once: it checks the referer is a Kommo or amoCRM account host, writes a pending install keyed
by the SHA-256 of the code (a conditional put, so a repeated redirect queues nothing twice),
queues the exchange on the KommoAuth queue (the code travels only there, encrypted at rest) and
returns a small HTML page. `complete_install` (the kommo_auth function) claims the install,
exchanges the code (`grant_type=authorization_code`), keeps the tokens on the install item,
KMS-encrypted, reads `GET /api/v4/account` to learn the account id, stores the account, and
marks the install done. A failure after the exchange resumes from the kept tokens (the code is
single-use); a refused or expired code marks the install failed, loudly.

The redirect is public: anyone can call it with made-up codes and any account host. So that a
flood cannot bury real installs under queued exchanges, each redirect takes a token from two
buckets before anything is written (store.rate_buckets): one per account host (a few per
minute, `HOST_INSTALLS_PER_DAY` a day) and one for all hosts (`INSTALLS_PER_SECOND`, a burst
of `INSTALL_BURST`). A refused redirect answers 429 with a page that says to try again in a
minute; Kommo's codes live 20 minutes.

The stored tokens are refreshed by `mailer_core.kommo.client.tokens`.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError
from pynamodb.expressions.update import Action

from mailer_core.accounts.access import DISABLED
from mailer_core.accounts.access import forget as forget_account_access
from mailer_core.adapters import kms, secrets, sqs
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import MalformedRequest, UpstreamError
from mailer_core.base.logs import logger
from mailer_core.kommo import client as kommo
from mailer_core.kommo import errors as kommo_errors
from mailer_core.kommo import hosts
from mailer_core.kommo import limits as kommo_limits
from mailer_core.kommo import tokens as kommo_tokens
from mailer_core.kommo.limits import ACTIVE
from mailer_core.kommo.tokens import token_context
from mailer_core.store import rate_buckets
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import AccountModel, KommoInstallModel

INSTALLS_PER_SECOND, INSTALL_BURST, INSTALLS_PER_DAY = 2.0, 30, 5000  # every account host together
HOST_INSTALLS_PER_MINUTE, HOST_INSTALL_BURST, HOST_INSTALLS_PER_DAY = 1.0, 5, 30  # one account host

INSTALL_PATH = "/hooks/kommo/install"
CODE_LIFETIME_SECONDS = 20 * 60  # Kommo's authorization codes expire after 20 minutes
INSTALL_RECORD_DAYS = 2  # install items expire (TTL) after this
EXCHANGE_CLAIM_SECONDS = 120.0  # one consumer at a time works on an install
STATE_LIFETIME_SECONDS = 3600
PENDING, EXCHANGING, EXCHANGED, DONE, FAILED = "pending", "exchanging", "exchanged", "done", "failed"

_CODE = re.compile(r"[A-Za-z0-9._~+/=-]{8,4096}")
Outcome = Literal["connected", "failed", "duplicate", "unknown"]


def _install_context(code_hash: str, purpose: Literal["access", "refresh"]) -> dict[str, str]:
    return {"kommo_install": code_hash, "purpose": f"kommo_{purpose}_token"}


def parse_referer(referer: str | None) -> tuple[str, str] | None:
    """(subdomain, domain) of a Kommo or amoCRM account host, e.g. `acme.kommo.com`; None otherwise."""
    return hosts.parse_account_host((referer or "").strip())


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


# -- install state (for an install started from our own page) ----------------------------------


def _state_signature(issued: int) -> str:
    key = secrets.kommo_client_secret().encode("utf-8")
    return hmac.new(key, f"mailer-install-state:{issued}".encode(), hashlib.sha256).hexdigest()[:32]


def install_state(now: float) -> str:
    """A `state` for an install link we make ourselves: signed with the client secret, valid 1 h."""
    issued = int(now)
    return f"{issued}.{_state_signature(issued)}"


def verify_state(state: str, now: float) -> bool:
    issued_text, _, signature = state.partition(".")
    if not issued_text.isdigit():
        return False
    issued = int(issued_text)
    fresh = 0 <= now - issued <= STATE_LIFETIME_SECONDS
    return fresh and hmac.compare_digest(signature, _state_signature(issued))


# -- the redirect ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallPage:
    """What the redirect answers: a small HTML page for the administrator's browser."""

    status: int
    title: str
    message: str

    @property
    def html(self) -> str:
        title, message = html.escape(self.title), html.escape(self.message)
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{title}</title>"
            '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
            '<body style="font-family: system-ui, sans-serif; margin: 3em auto; max-width: 32em">'
            f"<h1>{title}</h1><p>{message}</p></body></html>"
        )


@dataclass(frozen=True)
class InstallJob:
    """The exchange to do; the SQS message body. The code is a secret: never logged, never in repr."""

    code_hash: str
    subdomain: str
    domain: str
    code: str = field(repr=False)

    def to_body(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_body(cls, body: str) -> InstallJob:
        try:
            data = json.loads(body)
            job = cls(
                code_hash=str(data["code_hash"]),
                subdomain=str(data["subdomain"]),
                domain=str(data["domain"]),
                code=str(data["code"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedRequest(f"not a Kommo install job: {type(exc).__name__}") from exc
        if code_hash(job.code) != job.code_hash:
            raise MalformedRequest("not a Kommo install job: the code does not match its hash")
        return job


def receive_install(params: Mapping[str, str], *, clock: Clock = SYSTEM_CLOCK) -> InstallPage:
    """Answer Kommo's install redirect (within its 3 s): record the install and queue the exchange once."""
    not_connected = "Mailer was not connected"
    error = (params.get("error") or "").strip()
    if error:
        logger.info("Kommo install redirect with an error", extra={"kommo_error": error[:64]})
        if error == "access_denied":
            return InstallPage(
                200,
                not_connected,
                "Access to your Kommo account was declined, so Mailer was not connected. "
                "You can install it again at any time.",
            )
        return InstallPage(400, not_connected, f"Kommo reported an error: {error[:64]}.")
    code = (params.get("code") or "").strip()
    if not _CODE.fullmatch(code):
        return InstallPage(400, not_connected, "The link lacks a valid authorization code.")
    host = parse_referer(params.get("referer"))
    if host is None:
        return InstallPage(400, not_connected, "The link does not come from a Kommo account.")
    subdomain, domain = host
    now = clock.timestamp()
    state = params.get("state")
    if state and not params.get("from_widget") and not verify_state(state, now):
        return InstallPage(400, not_connected, "This connection link has expired or was not made by Mailer.")

    if not _install_allowed(subdomain, domain, now):
        logger.warning("Kommo install redirect throttled", extra={"subdomain": subdomain, "domain": domain})
        return InstallPage(
            429, not_connected, "Too many connection attempts right now. Please try again in a minute."
        )
    digest = code_hash(code)
    connecting = InstallPage(
        200,
        "Mailer is being connected…",
        f"Mailer is being connected to {subdomain}.{domain}. You can close this window and return to Kommo.",
    )
    install = KommoInstallModel(
        digest,
        subdomain=subdomain,
        domain=domain,
        state=PENDING,
        created_at=int(now),
        expires_at=datetime.fromtimestamp(now, UTC) + timedelta(days=INSTALL_RECORD_DAYS),
    )
    try:
        install.save(condition=KommoInstallModel.code_hash.does_not_exist())
    except PutError as exc:
        if not is_condition_failure(exc):
            raise
        logger.info("repeated Kommo install redirect: already queued", extra={"subdomain": subdomain})
        return connecting
    try:
        sqs.enqueue_kommo_auth(InstallJob(digest, subdomain, domain, code).to_body())
    except Exception:
        # Without a queued job the install would never happen: forget it, so a retry can queue it.
        install.delete()
        raise
    logger.info("Kommo install queued", extra={"subdomain": subdomain, "domain": domain})
    return connecting


def _install_allowed(subdomain: str, domain: str, now: float) -> bool:
    """A token from the account host's bucket, then from everyone's (a flood of made-up hosts)."""
    host = rate_buckets.take(
        f"install#{subdomain}.{domain}",
        rate_per_second=HOST_INSTALLS_PER_MINUTE / 60,
        daily_cap=HOST_INSTALLS_PER_DAY,
        burst=HOST_INSTALL_BURST,
        now=now,
    )
    if not host.allowed:
        return False
    everyone = rate_buckets.take(
        "install#all",
        rate_per_second=INSTALLS_PER_SECOND,
        daily_cap=INSTALLS_PER_DAY,
        burst=INSTALL_BURST,
        now=now,
    )
    return everyone.allowed


# -- the exchange ------------------------------------------------------------------------------


class InstallInProgress(UpstreamError):
    """Another consumer works on this install right now; SQS delivers the job again later."""


def _claim_install(install: KommoInstallModel, now: float) -> bool:
    free = KommoInstallModel.claim_until.does_not_exist() | (KommoInstallModel.claim_until < now)
    actions: list[Action] = [KommoInstallModel.claim_until.set(now + EXCHANGE_CLAIM_SECONDS)]
    if install.state == EXCHANGED:
        condition = (KommoInstallModel.state == EXCHANGED) & free
    else:
        condition = KommoInstallModel.state.is_in(PENDING, EXCHANGING) & free
        actions.append(KommoInstallModel.state.set(EXCHANGING))
    try:
        install.update(actions=actions, condition=condition)
    except UpdateError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def _release_install(install: KommoInstallModel) -> None:
    actions: list[Action] = [KommoInstallModel.claim_until.remove()]
    if install.state == EXCHANGING:
        actions.append(KommoInstallModel.state.set(PENDING))
    install.update(actions=actions)


def _finish_install(
    install: KommoInstallModel, state: str, *, error: str | None = None, account_id: int | None = None
) -> None:
    actions: list[Action] = [
        KommoInstallModel.state.set(state),
        KommoInstallModel.claim_until.remove(),
        KommoInstallModel.access_token_ciphertext.remove(),
        KommoInstallModel.refresh_token_ciphertext.remove(),
    ]
    if error is not None:
        actions.append(KommoInstallModel.error.set(error))
    if account_id is not None:
        actions.append(KommoInstallModel.account_id.set(account_id))
    install.update(actions=actions)


def complete_install(job: InstallJob, *, clock: Clock = SYSTEM_CLOCK) -> Outcome:
    """Exchange an install's code and store the account (the kommo_auth function's work)."""
    try:
        install = KommoInstallModel.get(job.code_hash, consistent_read=True)
    except DoesNotExist:
        logger.warning("Kommo install job for an unknown install", extra={"subdomain": job.subdomain})
        return "unknown"
    if install.state in (DONE, FAILED):
        return "duplicate"
    now = clock.timestamp()
    if not _claim_install(install, now):
        raise InstallInProgress("another worker is exchanging this Kommo install")
    log = {"subdomain": install.subdomain, "domain": install.domain}
    gate = kommo_limits.egress_gate(clock=clock)  # the address's budget: no account's yet
    if install.state != EXCHANGED:
        if now - float(install.created_at) > CODE_LIFETIME_SECONDS:
            _finish_install(install, FAILED, error="the authorization code expired before it was exchanged")
            logger.error("Kommo install failed: the code expired before the exchange", extra=log)
            return "failed"
        try:
            grant = kommo.request_token(
                install.subdomain,
                kommo_tokens.oauth_payload("authorization_code", code=job.code),
                domain=install.domain,
                clock=clock,
                gate=gate,
                deadline=now + EXCHANGE_CLAIM_SECONDS - 10,
            )
        except kommo_errors.KommoInvalidGrant as exc:
            _finish_install(install, FAILED, error=exc.message)
            logger.error(
                "Kommo refused the install's authorization code", extra={**log, "kommo_hint": exc.hint}
            )
            return "failed"
        except Exception:
            _release_install(install)
            raise
        access, refresh, expires_at = grant.access_token, grant.refresh_token, grant.expires_at(now)
        install.update(
            actions=[
                KommoInstallModel.state.set(EXCHANGED),
                KommoInstallModel.access_token_ciphertext.set(
                    kms.encrypt(access, _install_context(job.code_hash, "access"))
                ),
                KommoInstallModel.refresh_token_ciphertext.set(
                    kms.encrypt(refresh, _install_context(job.code_hash, "refresh"))
                ),
                KommoInstallModel.token_expires_at.set(expires_at),
            ]
        )
    else:
        access = kms.decrypt(str(install.access_token_ciphertext), _install_context(job.code_hash, "access"))
        refresh = kms.decrypt(
            str(install.refresh_token_ciphertext), _install_context(job.code_hash, "refresh")
        )
        expires_at = int(install.token_expires_at or 0)
    try:
        client = kommo.KommoClient(install.subdomain, access, domain=install.domain, clock=clock, gate=gate)
        info = client.account()
        account_id = int(info["id"])
        subdomain = str(info.get("subdomain") or install.subdomain).lower()
    except Exception:
        _release_install(install)  # the tokens stay on the install: the next delivery resumes here
        raise
    if subdomain != install.subdomain:
        logger.warning(
            "the install's referer and the account disagree", extra={**log, "account_subdomain": subdomain}
        )
    store_account_tokens(
        account_id,
        subdomain=subdomain,
        domain=install.domain,
        access=access,
        refresh=refresh,
        expires_at=expires_at,
        now=now,
    )
    _finish_install(install, DONE, account_id=account_id)
    logger.info("Kommo account connected", extra={**log, "account_id": account_id})
    return "connected"


def store_account_tokens(
    account_id: int,
    *,
    subdomain: str,
    domain: str,
    access: str,
    refresh: str,
    expires_at: int,
    now: float,
) -> None:
    """Store a freshly installed account's tokens; a reinstall keeps everything else the account has.

    One UpdateItem (an upsert): new tokens, `token_version + 1` (so a refresh still running
    with the previous grant cannot store over them), status active, any lease or block gone;
    `installed_at` keeps the first install's time. An account that was uninstalled is active
    again; its settings, mailboxes, templates and messages were never touched, and
    `disabled_at` stays (mailer_core.kommo_hooks.uninstall: what was composed before it never
    goes out). An account an operator disabled stays disabled: a reinstall stores its new
    tokens (ready for when the operator switches it on) and changes nothing else; only the
    operator undoes their own switch.
    """
    when = datetime.fromtimestamp(now, UTC)
    connection: list[Action] = [
        AccountModel.subdomain.set(subdomain),
        AccountModel.kommo_domain.set(domain),
        AccountModel.kommo_token_ciphertext.set(kms.encrypt(access, token_context(account_id, "access"))),
        AccountModel.kommo_refresh_token_ciphertext.set(
            kms.encrypt(refresh, token_context(account_id, "refresh"))
        ),
        AccountModel.token_expires_at.set(int(expires_at)),
        AccountModel.token_version.add(1),
        AccountModel.installed_at.set(AccountModel.installed_at | when),
        # The digital pipeline action's secret is not made here: only its hash is kept, so it is
        # made where it can be shown once (accounts.pipeline_secret); a reinstall keeps it.
        AccountModel.connected_at.set(when),
        AccountModel.refresh_lease_owner.remove(),
        AccountModel.refresh_lease_until.remove(),
        AccountModel.blocked_until.remove(),
    ]
    switched_on: list[Action] = [
        AccountModel.status.set(ACTIVE),
        AccountModel.status_changed_at.set(when),
        AccountModel.status_detail.remove(),
    ]
    not_disabled = AccountModel.status.does_not_exist() | (AccountModel.status != DISABLED)
    try:
        AccountModel(account_id).update(actions=[*connection, *switched_on], condition=not_disabled)
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
        AccountModel(account_id).update(actions=connection)
        logger.warning(
            "reinstalled while an operator has it disabled: the tokens are stored, it stays disabled",
            extra={"account_id": account_id},
        )
    forget_account_access(account_id)  # this container serves the account at once; others within 30 s
