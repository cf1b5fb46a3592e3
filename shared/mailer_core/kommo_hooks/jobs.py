"""Emails Kommo's own automation asks for: the digital pipeline's Mailer action and a Salesbot step.

Both hooks (`digital_pipeline`, `salesbot`) check who is asking, then `accept` the event:
one conditional put remembers it in the Automation table (a replay within `FACT_DAYS` is
answered "duplicate" and queues nothing), a new event takes one of the account's
`AUTO_SENDS_PER_DAY` (a daily cap for pipeline and Salesbot emails together: the hooks carry
no signature Kommo makes, so a leaked secret can cost an account at most a day's cap; past it,
429 and nothing queued), and one SQS message queues an `AutoSendJob` for the pipeline
function, so Kommo gets its answer in milliseconds. The job is done there by
`automatic_compose.compose_for`. This module stays light: the hooks import it on a cold start.

The action's settings (`parse_settings`) are checked at the hook, so a mistake in them is a
400 naming the setting, in Kommo's request log, instead of a silent failure later.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError

from mailer_core.adapters import sqs
from mailer_core.base import validation
from mailer_core.base.clock import Clock
from mailer_core.base.errors import MailerError, MalformedRequest, TooManyRequests, UpstreamError
from mailer_core.base.logs import logger
from mailer_core.rendering.source_checks import MAX_ADDRESS_CHARS, has_variables, validate_source
from mailer_core.store import rate_buckets
from mailer_core.store.message_state import is_condition_failure
from mailer_core.store.models import AccountModel, AutomationFactModel

FACT_DAYS = 30  # a hook's event is remembered this long: a replay within it sends nothing
AUTO_SENDS_PER_DAY = 5000  # pipeline and Salesbot emails of one account, per UTC day
MAX_DELAY_SECONDS = 366 * 86400  # as far ahead as compose schedules (messages.MAX_SCHEDULE_AHEAD)
INSTALLED = ("active", "blocked")  # a blocked account is still installed: its jobs wait out the block
ENTITY_CODES = {1: "contacts", 2: "leads", 3: "companies"}  # Kommo's numeric entity types
_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


@dataclass(frozen=True)
class Answer:
    """A hook's answer to Kommo: the status and a small JSON body."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class ActionSettings:
    """What the Mailer action (or Salesbot step) asks for."""

    template_id: str
    mailbox_id: str | None = None
    to: str | None = None  # an address, addresses separated by commas, or text with variables
    delay: int = 0  # seconds after the hook came


def parse_settings(raw: Any, *, prefix: str) -> ActionSettings:
    """The action's settings; `MalformedRequest` (400) naming `{prefix}.{name}` for a bad one.

    Kommo sends every value as a string (a form), tooling may send JSON numbers. Unknown
    settings are ignored: the widget's settings form may carry more than Mailer reads.
    """
    if not isinstance(raw, dict):
        raise MalformedRequest("the action's settings must be an object", field=prefix)

    def where(name: str) -> str:
        return f"{prefix}.{name}"

    def text(name: str) -> str | None:
        value = raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise MalformedRequest("must be a string", field=where(name))
        return value.strip()

    template_id = text("template_id")
    if template_id is None:
        raise MalformedRequest("choose the template to send", field=where("template_id"))
    for name, value in (("template_id", template_id), ("mailbox_id", text("mailbox_id"))):
        if value is not None and not _ID.fullmatch(value):
            raise MalformedRequest("is not an id Mailer gave out", field=where(name))
    return ActionSettings(
        template_id=template_id,
        mailbox_id=text("mailbox_id"),
        to=_recipient_setting(text("to"), where("to")),
        delay=_delay(raw.get("delay"), where("delay")),
    )


def _recipient_setting(value: str | None, field_name: str) -> str | None:
    if value is None:
        return None
    if len(value) > MAX_ADDRESS_CHARS:
        raise MalformedRequest(f"is longer than {MAX_ADDRESS_CHARS} characters", field=field_name)
    try:
        if has_variables(value):
            validate_source(value, field=field_name, html=False)
        else:
            for part in re.split(r"[,;]", value):
                if part.strip():
                    validation.email_address(part, field_name)
    except MailerError as exc:
        raise MalformedRequest(exc.message, field=field_name) from None
    return value


def _delay(value: Any, field_name: str) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedRequest("must be a whole number of seconds (0 or empty: at once)", field=field_name)
    if value > MAX_DELAY_SECONDS:
        raise MalformedRequest(f"must be at most {MAX_DELAY_SECONDS} seconds (366 days)", field=field_name)
    return value


# -- the job ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoSendJob:
    """One email to compose for an entity (a pipeline event or a Salesbot step)."""

    kind: str  # "dp" or "salesbot"
    account_id: int
    entity_type: str  # leads, contacts, companies (anything else is skipped)
    entity_id: int
    settings: ActionSettings
    message_id: str
    fact_key: str
    received_at: str  # ISO 8601, when the hook came: the delay counts from here
    return_url: str | None = None  # Salesbot: where the bot continues
    event: dict[str, Any] = field(default_factory=dict)  # the hook's ids, for the logs

    @property
    def origin(self) -> str:
        return "pipeline" if self.kind == "dp" else "salesbot"

    def to_body(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_body(cls, body: str) -> AutoSendJob:
        try:
            data = json.loads(body)
            return cls(
                kind=str(data["kind"]),
                account_id=int(data["account_id"]),
                entity_type=str(data["entity_type"]),
                entity_id=int(data["entity_id"]),
                settings=ActionSettings(**data["settings"]),
                message_id=str(data["message_id"]),
                fact_key=str(data["fact_key"]),
                received_at=str(data["received_at"]),
                return_url=data.get("return_url"),
                event=dict(data.get("event") or {}),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedRequest(f"not a pipeline job: {exc}") from exc


def derived_message_id(fact_key: str, at_ms: int) -> str:
    """A ULID for the email an event asks for: time `at_ms`, the rest from the event's key."""
    from ulid import ULID

    seed = hashlib.sha256(f"message#{fact_key}".encode()).digest()[:10]
    return str(ULID.from_bytes(max(0, min(at_ms, 2**48 - 1)).to_bytes(6, "big") + seed))


def event_fact_key(prefix: str, parts: list[Any]) -> str:
    """`{prefix}#<sha256 of the parts>`: the Automation table key of one hook's event."""
    joined = "|".join(str(p) for p in parts)
    return f"{prefix}#{hashlib.sha256(joined.encode('utf-8')).hexdigest()}"


# -- at the hook -----------------------------------------------------------------------------


def installed_account(account_id: int, subdomain: str) -> AccountModel | None:
    """The account if it is installed and `subdomain` is its own; None otherwise."""
    try:
        account = AccountModel.get(account_id)
    except DoesNotExist:
        return None
    if account.status not in INSTALLED or not account.kommo_token_ciphertext:
        return None
    if str(account.subdomain or "").lower() != subdomain.lower():
        return None
    return account


def accept(job: AutoSendJob, *, clock: Clock) -> bool:
    """Remember the event (conditional put) and queue its job; False for an event seen before.

    When the queue refuses, the fact is taken back (so Kommo's next attempt goes through)
    and `UpstreamError` (a 502 to Kommo) is raised. Two deliveries racing here queue at most
    one job: the loser's put fails its condition.
    """
    now = clock.now()
    fact = AutomationFactModel(
        job.account_id,
        job.fact_key,
        created_at=now,
        state="queued",
        detail=job.message_id,
        expires_at=now + timedelta(days=FACT_DAYS),
    )
    try:
        fact.save(condition=AutomationFactModel.fact_key.does_not_exist())
    except PutError as exc:
        if is_condition_failure(exc):
            return False
        raise
    cap = rate_buckets.take(
        f"auto#{job.account_id}",
        rate_per_second=1000,
        burst=10**6,  # only the daily cap binds: a late thread's clock never counts as a burst
        daily_cap=AUTO_SENDS_PER_DAY,
        now=now.timestamp(),
    )
    if not cap.allowed:
        fact.delete()  # a later delivery, on a day with room, may still go
        logger.warning("automatic emails over the daily cap", extra={"account_id": job.account_id})
        raise TooManyRequests(
            f"the account's {AUTO_SENDS_PER_DAY} automatic emails a day are used up; more after midnight UTC",
            reason="daily_cap",
        )
    try:
        sqs.enqueue_pipeline(job.to_body())
    except Exception as exc:
        fact.delete()
        logger.exception("the pipeline queue refused a job", extra={"account_id": job.account_id})
        raise UpstreamError("the event could not be queued; try again") from exc
    return True
