"""A Salesbot step that sends a template: Kommo's `widget_request` hook (`POST /hooks/kommo/salesbot`).

A bot's widget step makes Kommo post `{"token": <JWT>, "data": {...}, "return_url": ...}`
and wait for our 200 at most 2 s; the bot stands still until someone posts to `return_url`.
The token is signed HS512 with the integration's client secret (the official SDK's
`parseBotDisposableToken`) and names the account and the entity the bot works on
(`entity_type` 1 contact, 2 lead, 3 company, 12 customer). `data` is the step's settings,
as for the pipeline action minus the secret: `template_id`, `mailbox_id`, `to`, `delay`.

- a token missing, not HS512, forged, expired or without the claims: 401;
- an account not installed, or a subdomain not its own: 404;
- a `return_url` that is not the bot's continue method on the account's own Kommo host: 400;
- a bad setting in `data`: 400 naming `data.<setting>`;
- the same `return_url` again: 200 `duplicate`, nothing queued;
- the same token with another `return_url` (a replay with a new continue id): 409 naming
  `token`, nothing queued. Each token is used once (`use_token`: a conditional put on its id,
  kept until it expires); Kommo's own redelivery of a step carries its `return_url` and stays
  a `duplicate`;
- accepted: 200 `accepted` (Kommo wants a 200); the email is composed from the pipeline queue.

The job composes like the pipeline's (`automatic_compose`), then continues the bot with
`{"status": "queued" | "scheduled" | "failed" | "skipped", "message_id", "error"}`, which the
bot's next steps read as `{{json.status}}` …; a skipped email continues the bot too, so it
never hangs on us. The continue is done once (the event's fact says so).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
from pynamodb.exceptions import DoesNotExist, PutError

from mailer_core.accounts.auth import AuthNotConfigured
from mailer_core.adapters import secrets
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Conflict, InvalidInput, MalformedRequest, NotFound, Unauthorized
from mailer_core.base.logs import logger
from mailer_core.kommo import accounts as kommo_accounts
from mailer_core.kommo import client as kommo
from mailer_core.kommo import errors as kommo_errors
from mailer_core.kommo.hosts import is_subdomain
from mailer_core.kommo_hooks import bracket_form, jobs
from mailer_core.kommo_hooks.jobs import Answer, AutoSendJob
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import AccountModel, AutomationFactModel

if TYPE_CHECKING:
    from jwt.types import Options

ALGORITHM = "HS512"
LEEWAY_SECONDS = 30
MAX_TOKEN_LENGTH = 8192
MAX_JTI_LENGTH = 128
ENTITY_TYPES = {**jobs.ENTITY_CODES, 12: "customers"}
_DIGITS = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class BotClaims:
    account_id: int
    subdomain: str
    entity_id: int
    entity_type: int
    issued_at: int | None
    expires_at: int
    token_id: str  # "jti:<jti>" when Kommo gives one, else "sha256:<digest of the token>"


def verify_bot_token(token: str | None, *, secret: str, now: float) -> BotClaims:
    """Verify a `widget_request` token (HS512, the client secret); `Unauthorized` with a short reason."""
    if not secret.strip():
        raise AuthNotConfigured("bot token verification is not configured: the Kommo client secret is empty")
    token = (token or "").strip()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise Unauthorized("token missing or too long")
    try:
        algorithm = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError:
        raise Unauthorized("token is malformed") from None
    if algorithm != ALGORITHM:
        raise Unauthorized(f"token algorithm not allowed (only {ALGORITHM})")
    options: Options = {
        "verify_signature": True,
        "verify_aud": False,
        "verify_exp": False,  # checked below, against the injected clock
        "verify_nbf": False,
        "verify_iat": False,
        "verify_iss": False,
    }
    try:
        with warnings.catch_warnings():
            # PyJWT warns when an HS512 key is shorter than 64 bytes; the key is Kommo's secret.
            warnings.simplefilter("ignore")
            claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options=options)
    except jwt.InvalidSignatureError:
        raise Unauthorized("signature does not match") from None
    except jwt.PyJWTError:
        raise Unauthorized("token is malformed") from None
    expires_at = _claim_int(claims, "exp")
    if expires_at <= now - LEEWAY_SECONDS:
        raise Unauthorized("token expired")
    subdomain = claims.get("subdomain")
    if not isinstance(subdomain, str) or not is_subdomain(subdomain.strip()):
        raise Unauthorized("claim subdomain missing or not a subdomain")
    return BotClaims(
        account_id=_claim_int(claims, "account_id"),
        subdomain=subdomain.strip().lower(),
        entity_id=_claim_int(claims, "entity_id"),
        entity_type=_claim_int(claims, "entity_type"),
        issued_at=_claim_int(claims, "iat") if claims.get("iat") is not None else None,
        expires_at=expires_at,
        token_id=_token_id(token, claims),
    )


def _token_id(token: str, claims: dict[str, Any]) -> str:
    """What names the token for its single use: its `jti`, or (Kommo's bot tokens carry none)
    the digest of the token itself, which only the secret's holder can vary."""
    jti = claims.get("jti")
    if isinstance(jti, str) and 0 < len(jti.strip()) <= MAX_JTI_LENGTH:
        return f"jti:{jti.strip()}"
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def _claim_int(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Unauthorized(f"claim {name} missing or not a positive integer")
    return value


def receive(raw: bytes, content_type: str | None, *, clock: Clock = SYSTEM_CLOCK) -> Answer:
    """Check one `widget_request` hook and queue its job; `MailerError`s are the 4xx answers."""
    data = bracket_form.parse_body(raw, content_type)
    token = data.get("token")
    claims = verify_bot_token(
        token if isinstance(token, str) else None,
        secret=secrets.kommo_client_secret(),
        now=clock.timestamp(),
    )
    account = jobs.installed_account(claims.account_id, claims.subdomain)
    if account is None:
        logger.info("Salesbot hook for an account not installed", extra={"account_id": claims.account_id})
        raise NotFound("no Mailer installation matches this bot")
    return_url = data.get("return_url")
    if not isinstance(return_url, str):
        raise MalformedRequest("is missing", field="return_url")
    try:
        host = kommo.account_base_url(str(account.subdomain), account.kommo_domain or "kommo.com")
        kommo.salesbot_continue_path(host, return_url)
    except InvalidInput as exc:
        raise MalformedRequest(exc.message, field="return_url") from None
    settings = jobs.parse_settings(data.get("data") or {}, prefix="data")
    key = jobs.event_fact_key("bot", [claims.account_id, return_url])
    use_token(claims, key, clock=clock)
    job = AutoSendJob(
        kind="salesbot",
        account_id=claims.account_id,
        entity_type=ENTITY_TYPES.get(claims.entity_type, f"entity type {claims.entity_type}"),
        entity_id=claims.entity_id,
        settings=settings,
        message_id=jobs.derived_message_id(key, (claims.issued_at or claims.expires_at) * 1000),
        fact_key=key,
        received_at=clock.now().isoformat(),
        return_url=return_url,
        event={"entity_type": claims.entity_type},
    )
    log = {"account_id": claims.account_id, "entity_id": claims.entity_id, "message_id": job.message_id}
    if not jobs.accept(job, clock=clock):
        logger.info("Salesbot step repeated", extra=log)
        return Answer(200, {"status": "duplicate", "message_id": job.message_id})
    logger.info("Salesbot step accepted", extra=log)
    return Answer(200, {"status": "accepted", "message_id": job.message_id})


def use_token(claims: BotClaims, step_key: str, *, clock: Clock) -> None:
    """Spend the token on this step (one conditional put, kept until the token expires):
    `Conflict` (409 naming `token`) when it was spent on another step. The same step again
    (Kommo redelivering it, or a retry after a 429/502 of ours) may use it again: the step's
    own fact answers that one `duplicate`. Two posts racing with one token: one put wins."""
    now = clock.now()
    until = datetime.fromtimestamp(claims.expires_at, tz=UTC) + timedelta(seconds=LEEWAY_SECONDS)
    used = AutomationFactModel(
        claims.account_id,
        jobs.event_fact_key("bottoken", [claims.account_id, claims.token_id]),
        created_at=now,
        state="used",
        detail=step_key,
        expires_at=max(until, now + timedelta(seconds=LEEWAY_SECONDS)),
    )
    try:
        used.save(
            condition=AutomationFactModel.fact_key.does_not_exist() | (AutomationFactModel.detail == step_key)
        )
    except PutError as exc:
        if not is_condition_failure(exc):
            raise
        logger.warning("Salesbot token replayed for another step", extra={"account_id": claims.account_id})
        raise Conflict(
            "this Salesbot token was used for another step already: each token is good for one step",
            field="token",
            reason="token_used",
        ) from None


def process(job: AutoSendJob, *, clock: Clock = SYSTEM_CLOCK) -> str:
    """Compose the step's email (or say why not), then continue the bot, once. Raises to retry."""
    from mailer_core.kommo_hooks import compose as automatic_compose  # cold start: the Kommo client

    log = {"account_id": job.account_id, "entity_id": job.entity_id, "message_id": job.message_id}
    if _fact_state(job) == "continued":
        return "duplicate"
    answer: dict[str, Any]
    try:
        outcome = automatic_compose.compose_for(job, clock=clock)
        answer = {"status": outcome.status or "queued", "message_id": outcome.message_id}
        automatic_compose.record(job, outcome.state, outcome.message_id)
    except automatic_compose.Skip as skip:
        answer = {"status": "skipped", "error": skip.reason[:200]}
        automatic_compose.record(job, "skipped", skip.reason)
        logger.warning("Salesbot email not sent", extra={**log, "reason": skip.reason})
    try:
        account = AccountModel.get(job.account_id, consistent_read=True)
        kommo_accounts.client_for_account(account, clock=clock).continue_salesbot(str(job.return_url), answer)
    except (DoesNotExist, kommo_errors.KommoDisconnected, Conflict) as exc:
        logger.warning("the Salesbot cannot be continued", extra={**log, "reason": str(exc)})
        return "stuck"
    except kommo_errors.KommoError as exc:
        if kommo_errors.is_retryable(exc):
            raise
        logger.warning("Kommo refused to continue the Salesbot", extra={**log, "reason": exc.message})
    automatic_compose.record(job, "continued", str(answer.get("message_id") or answer.get("error")))
    logger.info("Salesbot continued", extra={**log, "status": answer["status"]})
    return str(answer["status"])


def _fact_state(job: AutoSendJob) -> str | None:
    try:
        return AutomationFactModel.get(job.account_id, job.fact_key, consistent_read=True).state
    except DoesNotExist:
        return None
