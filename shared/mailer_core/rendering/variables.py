"""The variables a template sees, built from Kommo data in as few requests as possible.

The context (what `{{ … }}` can name):

- `lead`: `id`, `name`, `price`, `stage` (alias `status`; prints its name, has `id`),
  `pipeline`, `responsible` (alias `responsible_user`: `name`, `email`), `tags`,
  `created_at`, `updated_at`, `closed_at`, `url`, `cf`;
- `contact`: the main contact: `id`, `name`, `first_name`, `last_name`, `middle_name`,
  `email`, `emails`, `phone`, `phones`, `position`, `gender` ("masc", "femn" or missing),
  `responsible`, `cf`; `contacts`: every contact of the entity, main first;
- `company`: `id`, `name`, `email`, `emails`, `phone`, `phones`, `web`, `responsible`, `cf`;
- `manager` (alias `user`): the sending manager: `id`, `name`, `email`, `phone`, `signature`;
- `message`: `id`, `subject` (the rendered subject), `sent_at` (alias `send_time`);
- `today`, `now`: the date and time of sending, in the render's time zone;
- `account`: `id`, `subdomain`, `name`, `currency`.

`cf` holds every custom field set on the entity, by id (`lead.cf[560003]`), by name
(`lead.cf["Delivery"]`, also case-insensitive) and by code (`contact.cf["PHONE"]`); a
multi-select or multitext field is a list (prints joined with ", "; see `join_values`),
numbers are numbers, dates are dates, a checkbox is yes/no. Kommo sends each value with
its field's name and type, so no field definitions need fetching. Anything not there is a
`rendering.Missing` with its full name, so the preview can list it.

Requests: `KommoData` keeps what it has read. One email from a lead costs the lead (with
its contact links), one batch of its contacts and its company: three requests. Users,
pipelines and the account are read once per `ACCOUNT_CACHE_SECONDS` and shared by every
render in the process. Users are read only when something needs them: a template that names
a responsible user (`lead.responsible` …), the manager's name when the mailbox has none, or
the manager's language when the message names no locale. Only administrators may list users
(`GET /api/v4/users`); with another user's token Kommo refuses (403, insufficient rights), and
rendering goes on without users' data: a responsible user is then only its `id` (its name
prints empty), and that answer is kept as long as a list would be.

`prefetch` reads many entities at once (250 per request), so the send worker reads a whole
SQS batch in three requests and a mailing of N leads costs about 3 * N / 250 requests.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from mailer_core.base.ttl_cache import TtlCache
from mailer_core.kommo import entities as kommo_entities
from mailer_core.kommo import errors as kommo_errors
from mailer_core.kommo.client import EntityType, KommoClient
from mailer_core.kommo.errors import KommoInsufficientRights
from mailer_core.rendering import modifiers
from mailer_core.rendering import sandbox as rendering

ACCOUNT_CACHE_SECONDS = 300.0
_SHARED: TtlCache[tuple[str, str], Any] = TtlCache(ACCOUNT_CACHE_SECONDS)  # by time.monotonic()
_MULTI_TYPES = {"multiselect", "multitext"}
_NUMBER_TYPES = {"numeric", "price", "monetary"}
_DATE_TYPES = {"date", "birthday"}


class Values(list[Any]):
    """Several values of one field; prints them joined with ", "."""

    def __str__(self) -> str:
        return ", ".join(str(v) for v in self if v is not None and str(v) != "")

    def __html__(self) -> str:
        from markupsafe import escape

        return str(escape(str(self)))


class _Lazy:
    __slots__ = ("compute",)

    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute = compute


class Record(dict[Any, Any]):
    """A CRM object in a template: fields by attribute or key; prints as its display text."""

    __slots__ = ("_path", "_text")

    def __init__(self, path: str, text: Any = "", fields: dict[Any, Any] | None = None) -> None:
        super().__init__(fields or {})
        self._path = path
        self._text = text

    def __missing__(self, key: Any) -> Any:
        return rendering.missing(f"{self._path}.{key}" if _identifier(key) else f"{self._path}[{key!r}]")

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        if isinstance(value, _Lazy):
            value = value.compute()
            if value is None:
                value = self.__missing__(key)
            self[key] = value
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self:
            return self[key]
        return default

    def __str__(self) -> str:
        if isinstance(self._text, _Lazy):
            self._text = self._text.compute()
        return "" if self._text is None else str(self._text)


class CustomFields(Record):
    """Custom field values by id, name (any case) and code."""

    __slots__ = ("_by_lower",)

    def __init__(self, path: str, fields: Iterable[dict[str, Any]] | None) -> None:
        super().__init__(path)
        self._by_lower: dict[str, Any] = {}
        for fv in fields or []:
            value = field_value(fv)
            if value is None:
                continue
            keys: list[Any] = []
            if fv.get("field_id") is not None:
                keys += [int(fv["field_id"]), str(fv["field_id"])]
            for name in (fv.get("field_name"), fv.get("field_code")):
                if name:
                    keys.append(str(name))
                    self._by_lower.setdefault(str(name).lower(), value)
            for key in keys:
                self.setdefault(key, value)

    def __missing__(self, key: Any) -> Any:
        if isinstance(key, str) and key.lower() in self._by_lower:
            return self._by_lower[key.lower()]
        if isinstance(key, str) and key.isdigit() and int(key) in self:
            return self[int(key)]
        return rendering.missing(f"{self._path}[{key!r}]")


def _identifier(key: Any) -> bool:
    return isinstance(key, str) and key.isidentifier()


# -- values ----------------------------------------------------------------------------------


def _number(raw: Any) -> Any:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float | Decimal):
        return raw
    text = re.sub(r"[\s\u00a0]", "", str(raw)).replace(",", ".")
    try:
        number = Decimal(text)
    except InvalidOperation:
        return str(raw)
    return int(number) if number == number.to_integral_value() and "." not in text else number


def kommo_date(raw: Any) -> date | None:
    """A Kommo date field (unix time of a midnight in the account's time zone) as a date.

    Kommo stores the start of the day in the account's zone; adding 12 hours before taking
    the UTC date gives the right day for every zone from UTC-12 to UTC+12.
    """
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        return None
    return (datetime.fromtimestamp(seconds, UTC) + timedelta(hours=12)).date()


def _moment(raw: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(raw), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def field_value(fv: dict[str, Any]) -> Any:
    """One custom field's value as a template sees it; None when it has none."""
    kind = str(fv.get("field_type") or "")
    raw = [v.get("value") for v in fv.get("values") or [] if isinstance(v, dict)]
    raw = [v for v in raw if v is not None and v != ""]
    if not raw:
        return None
    if kind in _MULTI_TYPES:
        return Values(str(v) for v in raw)
    first = raw[0]
    if kind in _NUMBER_TYPES:
        return _number(first)
    if kind in _DATE_TYPES:
        return kommo_date(first)
    if kind == "date_time":
        return _moment(first)
    if kind == "checkbox":
        return first if isinstance(first, bool) else str(first).lower() in ("1", "true", "y", "yes")
    if isinstance(first, dict):
        return ", ".join(str(v) for v in first.values() if v not in (None, ""))
    if len(raw) > 1:
        return Values(str(v) for v in raw)
    return str(first)


def _multitext(entity: dict[str, Any], code: str) -> Values:
    found = Values()
    for fv in entity.get("custom_fields_values") or []:
        if fv.get("field_code") == code:
            for value in fv.get("values") or []:
                text = str(value.get("value") or "").strip()
                if text and text not in found:
                    found.append(text)
    return found


def _code_value(entity: dict[str, Any], code: str) -> Any:
    for fv in entity.get("custom_fields_values") or []:
        if fv.get("field_code") == code:
            return field_value(fv)
    return None


# -- Kommo reads -----------------------------------------------------------------------------


def _shared(client: KommoClient, kind: str, load: Callable[[], Any]) -> Any:
    return _SHARED.get_or_load((client.base_url, kind), time.monotonic(), load)


def forget_account_data() -> None:
    """Drop the users, pipelines and account kept between renders (tests use this)."""
    _SHARED.clear()


@dataclass
class KommoData:
    """What rendering has read from one Kommo account; reads what it lacks in batches."""

    client: KommoClient
    entities: dict[str, dict[int, dict[str, Any]]] = field(
        default_factory=lambda: {"leads": {}, "contacts": {}, "companies": {}}
    )

    # -- account-wide lists, shared across renders --

    def users(self) -> dict[int, dict[str, Any]]:
        def load() -> dict[int, dict[str, Any]]:
            try:
                return {int(u["id"]): u for u in self.client.iter_pages("/api/v4/users", "users")}
            except KommoInsufficientRights:  # only administrators may list users
                return {}

        return dict(_shared(self.client, "users", load))

    def user(self, user_id: int) -> dict[str, Any] | None:
        """One user with their rights (kept a while, as the lists are); None when Kommo has none.

        KommoInsufficientRights when the account's token may not read users."""
        found = _shared(
            self.client, f"user{int(user_id)}", lambda: self.client.get(f"/api/v4/users/{int(user_id)}") or {}
        )
        return dict(found) if found else None

    def statuses(self) -> dict[str, tuple[Any, Any]]:
        """(pipeline, status) by pipeline id and by status id ("pipeline:status")."""

        def load() -> dict[str, Any]:
            answer = self.client.get("/api/v4/leads/pipelines") or {}
            found: dict[str, Any] = {}
            for pipeline in answer.get("_embedded", {}).get("pipelines", []):
                found[f"p{pipeline['id']}"] = (pipeline, None)
                for status in pipeline.get("_embedded", {}).get("statuses", []):
                    found[f"{pipeline['id']}:{status['id']}"] = (pipeline, status)
            return found

        return _shared(self.client, "pipelines", load)  # type: ignore[no-any-return]

    def account(self) -> dict[str, Any]:
        return _shared(self.client, "account", lambda: self.client.get("/api/v4/account") or {})  # type: ignore[no-any-return]

    # -- entities --

    def prefetch(self, entity_type: EntityType, ids: Sequence[int]) -> None:
        """Read these entities, their contacts and their companies, 250 per request."""
        kommo_entities.read_linked(self.client, entity_type, ids, into=self.entities)

    def entity(self, entity_type: EntityType, entity_id: int) -> dict[str, Any]:
        """One entity (read with its contacts and company if not prefetched); KommoNotFound if none."""
        if int(entity_id) not in self.entities[entity_type]:
            self.prefetch(entity_type, [int(entity_id)])
        found = self.entities[entity_type].get(int(entity_id))
        if found is None:
            raise kommo_errors.KommoNotFound(
                f"Kommo has no {entity_type} with id {entity_id}", kommo_status=204, entity_id=entity_id
            )
        return found


# -- building the context -------------------------------------------------------------------


@dataclass(frozen=True)
class Manager:
    """The sending manager, from the mailbox and its owner."""

    user_id: int
    name: str
    email: str
    phone: str = ""
    signature_html: str = ""


@dataclass(frozen=True)
class MessageFacts:
    id: str
    subject: str
    sent_at: datetime


Users = Callable[[], dict[int, dict[str, Any]]]


def _no_users() -> dict[int, dict[str, Any]]:
    return {}


def _once(load: Users) -> Users:
    """`load`, called at most once (the first time a template names a user)."""
    kept: list[dict[int, dict[str, Any]]] = []

    def users() -> dict[int, dict[str, Any]]:
        if not kept:
            kept.append(load())
        return kept[0]

    return users


def _user(users: Users, user_id: Any, path: str) -> Any:
    """A user the template may name; Kommo's users are read only if it does."""
    if not user_id:
        return rendering.missing(path)
    uid = int(user_id)

    def record() -> Record:
        user = users().get(uid)
        if user is None:
            return Record(path, "", {"id": uid})
        return Record(
            path, user.get("name") or "", {"id": uid, "name": user.get("name"), "email": user.get("email")}
        )

    return _Lazy(record)


def _person(entity: dict[str, Any], path: str, users: Users) -> Record:
    name = str(entity.get("name") or "").strip()
    first = str(entity.get("first_name") or "").strip()
    last = str(entity.get("last_name") or "").strip()
    if not name:
        name = " ".join(p for p in (first, last) if p)
    emails = _multitext(entity, "EMAIL")
    phones = _multitext(entity, "PHONE")
    record = Record(
        path,
        name,
        {
            "id": int(entity["id"]),
            "name": name or None,
            "first_name": first or _Lazy(lambda: modifiers.first_name(name) or None),
            "last_name": last or _Lazy(lambda: modifiers.last_name(name) or None),
            "middle_name": _Lazy(lambda: modifiers.middle_name(name) or None),
            "email": emails[0] if emails else None,
            "emails": emails,
            "phone": phones[0] if phones else None,
            "phones": phones,
            "position": _code_value(entity, "POSITION"),
            "gender": _Lazy(lambda: modifiers.detect_gender(name)),
            "responsible": _user(users, entity.get("responsible_user_id"), f"{path}.responsible"),
            "cf": CustomFields(f"{path}.cf", entity.get("custom_fields_values")),
        },
    )
    return _without_none(record)


def _company(entity: dict[str, Any], users: Users) -> Record:
    emails = _multitext(entity, "EMAIL")
    phones = _multitext(entity, "PHONE")
    name = str(entity.get("name") or "")
    return _without_none(
        Record(
            "company",
            name,
            {
                "id": int(entity["id"]),
                "name": name or None,
                "email": emails[0] if emails else None,
                "emails": emails,
                "phone": phones[0] if phones else None,
                "phones": phones,
                "web": _code_value(entity, "WEB"),
                "responsible": _user(users, entity.get("responsible_user_id"), "company.responsible"),
                "cf": CustomFields("company.cf", entity.get("custom_fields_values")),
            },
        )
    )


def _without_none(record: Record) -> Record:
    for key in [k for k, v in dict.items(record) if v is None]:
        dict.__delitem__(record, key)
    return record


def _lead(lead: dict[str, Any], data: KommoData, users: Users, subdomain: str) -> Record:
    statuses = data.statuses()
    pipeline_id, status_id = lead.get("pipeline_id"), lead.get("status_id")
    pipeline, status = statuses.get(f"{pipeline_id}:{status_id}", (None, None))
    if pipeline is None:
        pipeline, _ = statuses.get(f"p{pipeline_id}", (None, None))
    stage = (
        Record("lead.stage", status.get("name", ""), {"id": status_id, "name": status.get("name")})
        if status
        else rendering.missing("lead.stage")
    )
    pipe = (
        Record("lead.pipeline", pipeline.get("name", ""), {"id": pipeline_id, "name": pipeline.get("name")})
        if pipeline
        else rendering.missing("lead.pipeline")
    )
    responsible = _user(users, lead.get("responsible_user_id"), "lead.responsible")
    tags = Values(t.get("name") for t in (lead.get("_embedded") or {}).get("tags") or [] if t.get("name"))
    price = lead.get("price")
    fields = {
        "id": int(lead["id"]),
        "name": lead.get("name") or None,
        "price": _number(price) if price is not None else None,
        "stage": stage,
        "status": stage,
        "pipeline": pipe,
        "responsible": responsible,
        "responsible_user": responsible,
        "tags": tags,
        "created_at": _moment(lead.get("created_at")),
        "updated_at": _moment(lead.get("updated_at")),
        "closed_at": _moment(lead.get("closed_at")) if lead.get("closed_at") else None,
        "url": f"https://{subdomain}.kommo.com/leads/detail/{int(lead['id'])}" if subdomain else None,
        "cf": CustomFields("lead.cf", lead.get("custom_fields_values")),
    }
    return _without_none(Record("lead", lead.get("name") or "", fields))


def _zone_now(now: datetime, timezone: str) -> datetime:
    from babel.dates import get_timezone

    try:
        return now.astimezone(get_timezone(timezone))
    except LookupError:
        return now


def build_context(
    *,
    data: KommoData | None,
    entity: tuple[str, int] | None,
    manager: Manager,
    message: MessageFacts,
    timezone: str = "UTC",
    signature: Any = "",
) -> dict[str, Any]:
    """The template context for one email; reads Kommo through `data` (None: no CRM data)."""
    from markupsafe import Markup

    users = _once(data.users) if data is not None else _no_users
    account = data.account() if data is not None else {}
    subdomain = str(account.get("subdomain") or (data.client.subdomain if data else ""))

    def from_kommo(key: str) -> _Lazy:
        return _Lazy(lambda: (users().get(manager.user_id) or {}).get(key) or None)

    manager_record = _without_none(
        Record(
            "manager",
            manager.name or from_kommo("name"),
            {
                "id": manager.user_id,
                "name": manager.name or from_kommo("name"),
                "email": manager.email or from_kommo("email"),
                "phone": manager.phone or None,
                "signature": Markup(signature) if signature else None,
            },
        )
    )
    local_now = _zone_now(message.sent_at, timezone)
    context: dict[str, Any] = {
        "manager": manager_record,
        "user": manager_record,
        "message": Record(
            "message",
            message.id,
            {"id": message.id, "subject": message.subject, "sent_at": local_now, "send_time": local_now},
        ),
        "today": local_now.date(),
        "now": local_now,
        "account": _without_none(
            Record(
                "account",
                account.get("name") or subdomain,
                {
                    "id": account.get("id"),
                    "subdomain": subdomain or None,
                    "name": account.get("name"),
                    "currency": account.get("currency"),
                },
            )
        ),
        "contacts": [],
    }
    if data is None or entity is None:
        return context
    kind, entity_id = entity
    found = data.entity(kind, entity_id)  # type: ignore[arg-type]
    embedded = found.get("_embedded") or {}
    if kind == "contacts":
        contacts = [found]
    else:
        links = embedded.get("contacts") or []
        ordered = sorted(links, key=lambda link: not link.get("is_main"))
        contacts = [
            data.entities["contacts"][int(c["id"])]
            for c in ordered
            if int(c["id"]) in data.entities["contacts"]
        ]
    people = [_person(c, "contact", users) for c in contacts]
    context["contacts"] = people
    if people:
        context["contact"] = people[0]
    if kind == "companies":
        context["company"] = _company(found, users)
    else:
        companies = embedded.get("companies") or []
        if companies and int(companies[0]["id"]) in data.entities["companies"]:
            context["company"] = _company(data.entities["companies"][int(companies[0]["id"])], users)
    if kind == "leads":
        context["lead"] = _lead(found, data, users, subdomain)
    return context


def manager_locale(data: KommoData | None, user_id: int) -> str | None:
    """The Kommo interface language of the sending manager, when Kommo says it."""
    if data is None:
        return None
    lang = (data.users().get(user_id) or {}).get("lang")
    return str(lang) if lang else None


def account_currency(data: KommoData | None) -> str | None:
    if data is None:
        return None
    currency = data.account().get("currency")
    return str(currency) if currency else None
