"""A campaign as the API gives it: the JSON body checked field by field.

Every refusal names its field (`audience.ids`, `mailbox_ids[1]`, `options.per_hour` …). The
audience is checked by `audiences.spec`; templates and mailboxes must exist and be the
caller's to use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailer_core.accounts.auth import Caller
from mailer_core.base import validation
from mailer_core.base.errors import InvalidInput
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.rendering.source_checks import validate_source
from mailer_core.templates import api as templates

MAX_MAILBOXES = 50
MAX_NAME_CHARS = 200
FIELDS = {"name", "template_id", "subject", "html", "mailbox_ids", "audience", "send_at", "options", "chain"}
CHAIN_FIELDS = {"after", "condition", "delay_seconds"}
CHAIN_CONDITIONS = ("not_opened", "not_clicked")
MIN_CHAIN_DELAY, MAX_CHAIN_DELAY = 60, 90 * 86400
OPTION_FIELDS = {"track_opens", "track_clicks", "per_hour", "per_day", "utm"}


@dataclass(frozen=True)
class CampaignFields:
    """The fields a create or an update gives, checked; `given` names those present."""

    given: frozenset[str]
    name: str = ""
    template_id: str | None = None
    subject: str | None = None
    html: str | None = None
    mailbox_ids: list[str] = field(default_factory=list)
    audience: dict[str, Any] = field(default_factory=dict)
    send_at: datetime | None = None
    options: dict[str, Any] = field(default_factory=dict)
    chain: dict[str, Any] | None = None


def parse(caller: Caller, payload: Any, *, creating: bool) -> CampaignFields:
    body = validation.require_object(payload)
    validation.reject_unknown(body, FIELDS)
    if creating:
        chained = body.get("chain") is not None  # a chain's step takes the step before's audience
        for name in ("name", "mailbox_ids") if chained else ("name", "mailbox_ids", "audience"):
            if name not in body:
                raise InvalidInput("is required", field=name)
    checks: dict[str, Any] = {
        "name": lambda raw: validation.text(
            body, "name", required=True, max_length=MAX_NAME_CHARS, allow_empty=False
        ).strip(),
        "template_id": lambda raw: _template(caller, raw),
        "subject": lambda raw: validate_source(
            validation.text(body, "subject", max_length=998), field="subject", html=False
        ),
        "html": lambda raw: validate_source(
            validation.text(body, "html", max_length=2_000_000), field="html", html=True
        ),
        "mailbox_ids": lambda raw: _mailboxes(caller, raw),
        "audience": lambda raw: _audience(caller, raw),
        "send_at": lambda raw: validation.timestamp(body, "send_at"),
        "options": _options,
        "chain": _chain,
    }
    values = {name: check(body[name]) for name, check in checks.items() if body.get(name) is not None}
    return CampaignFields(given=frozenset(body), **values)


def _template(caller: Caller, raw: Any) -> str:
    template_id = validation.identifier(raw, "template_id")
    templates.for_use(caller, template_id)  # 404 naming template_id when unknown or not the caller's
    return template_id


def _mailboxes(caller: Caller, raw: Any) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("must be a list of one or more mailbox ids", field="mailbox_ids")
    if len(raw) > MAX_MAILBOXES:
        raise InvalidInput(f"has more than {MAX_MAILBOXES} mailboxes", field="mailbox_ids")
    chosen: list[str] = []
    for n, item in enumerate(raw):
        name = f"mailbox_ids[{n}]"
        mailbox_id = validation.identifier(item, name)
        mailbox = mailbox_connection.find(caller.account_id, mailbox_id)
        if mailbox is None or (not caller.is_admin and int(mailbox.user_id) != caller.user_id):
            raise InvalidInput("no such mailbox", field=name)
        if mailbox_id not in chosen:
            chosen.append(mailbox_id)
    return chosen


def _audience(caller: Caller, raw: Any) -> dict[str, Any]:
    from mailer_core.audiences import spec  # cold start: the audience's checks (target lists)

    return spec.parse(caller.account_id, raw, who=caller).to_json()


def _options(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidInput("must be an object", field="options")
    unknown = sorted(set(raw) - OPTION_FIELDS)
    if unknown:
        raise InvalidInput(
            f"unknown option; allowed are {', '.join(sorted(OPTION_FIELDS))}", field=f"options.{unknown[0]}"
        )
    options: dict[str, Any] = {}
    for name in ("track_opens", "track_clicks"):
        if raw.get(name) is not None:
            if not isinstance(raw[name], bool):
                raise InvalidInput("must be true or false", field=f"options.{name}")
            options[name] = raw[name]
    for name, maximum in (("per_hour", 1_000_000), ("per_day", 10_000_000)):
        value = raw.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
                raise InvalidInput(f"must be a whole number from 1 to {maximum}", field=f"options.{name}")
            options[name] = value
    if raw.get("utm") is not None:
        options["utm"] = _utm(raw["utm"])
    return options


UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")


def _utm(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise InvalidInput("must be an object of utm_source, utm_medium, utm_campaign …", field="options.utm")
    utm: dict[str, str] = {}
    for name, value in raw.items():
        where = f"options.utm.{name}"
        if name not in UTM_FIELDS:
            raise InvalidInput(f"unknown UTM parameter; allowed are {', '.join(UTM_FIELDS)}", field=where)
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise InvalidInput("must be text of 1 to 200 characters", field=where)
        utm[name] = value.strip()
    return utm


def _chain(raw: Any) -> dict[str, Any]:
    """A follow-up step: after the campaign `after` finished, to its recipients who did not
    open (or click) by `delay_seconds` after it; its audience is theirs."""
    if not isinstance(raw, dict):
        raise InvalidInput("must be an object", field="chain")
    unknown = sorted(set(raw) - CHAIN_FIELDS)
    if unknown:
        allowed = ", ".join(sorted(CHAIN_FIELDS))
        raise InvalidInput(f"unknown field; allowed are {allowed}", field=f"chain.{unknown[0]}")
    after = validation.identifier(raw.get("after"), "chain.after")
    condition = raw.get("condition", "not_opened")
    if condition not in CHAIN_CONDITIONS:
        raise InvalidInput(f"must be one of {', '.join(CHAIN_CONDITIONS)}", field="chain.condition")
    delay = raw.get("delay_seconds", 86400)
    if (
        isinstance(delay, bool)
        or not isinstance(delay, int)
        or not MIN_CHAIN_DELAY <= delay <= MAX_CHAIN_DELAY
    ):
        raise InvalidInput(
            f"must be whole seconds from {MIN_CHAIN_DELAY} to {MAX_CHAIN_DELAY}", field="chain.delay_seconds"
        )
    return {"after": after, "condition": condition, "delay_seconds": delay}
