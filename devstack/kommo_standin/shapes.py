"""The stand-in's wire shapes: problem+json errors, request and response records, field values.

Part of the Kommo stand-in (devstack/kommo_standin.py); see its docstring for the behaviour.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ENTITY_TYPES = ("leads", "contacts", "companies")
MAX_PAGE_LIMIT = 250
MAX_WRITE_BATCH = 250
MAX_COMPLEX_LEADS = 50
CUSTOM_FIELDS_PAGE = 50
DEFAULT_PAGE_LIMIT = 50
RATE_LIMIT_PER_SECOND = 7
CLOSED_STATUSES = (142, 143)
NOTE_TYPES = {
    "common",
    "call_in",
    "call_out",
    "service_message",
    "extended_service_message",
    "message_cashier",
    "geolocation",
    "sms_in",
    "sms_out",
    "attachment",
}
_ID_BASES = {
    "leads": 24000000,
    "contacts": 25000000,
    "companies": 26000000,
    "tasks": 27000000,
    "notes": 28000000,
    "tags": 41000,
}
_ENUM_TYPES = {"select", "radiobutton", "category", "multiselect"}
_SINGLE_VALUE_TYPES = {"select", "radiobutton", "category"}
_NUMBER_TYPES = {"numeric", "price", "monetary"}
_DATE_TYPES = {"date", "date_time", "birthday"}
_TEXT_TYPES = {"text", "textarea", "url", "streetaddress"}
_WRITE_FIELDS = {
    "leads": {"name", "price", "status_id", "pipeline_id", "responsible_user_id", "loss_reason_id"},
    "contacts": {"name", "first_name", "last_name", "responsible_user_id"},
    "companies": {"name", "responsible_user_id"},
}
_COMMON_WRITE_FIELDS = {"custom_fields_values", "_embedded", "tags_to_add", "tags_to_delete", "request_id"}


class Problem(Exception):
    """An error answer in Kommo's problem+json shape."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.body: dict[str, Any] = {
            **extra,
            "title": title,
            "type": f"https://httpstatus.es/{status}",
            "status": status,
            "detail": detail,
        }


def validation_problem(path: str, code: str, detail: str, request_id: str = "0") -> Problem:
    """A 400 with Kommo's `validation-errors` list, as the SDK parses it."""
    errors = [{"request_id": request_id, "errors": [{"code": code, "path": path, "detail": detail}]}]
    return Problem(400, "Bad Request", "Request validation failed", **{"validation-errors": errors})


def _not_implemented(what: str) -> Problem:
    return Problem(400, "Bad Request", f"{what} is not implemented by the Kommo stand-in")


@dataclass(frozen=True)
class Change:
    """One accepted write: what a trigger or a send did to the CRM."""

    method: str
    path: str
    body: Any
    time: float

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "body": self.body, "time": self.time}


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str
    status: int
    time: float


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Failure:
    """An injected answer for the next request that matches (`fail_next`)."""

    response: Response
    token: str | None = None
    path: str | None = None

    def matches(self, path: str, token: str | None) -> bool:
        if self.path is None:
            return path.startswith("/api/v4/") and (self.token is None or self.token == token)
        return path.startswith(self.path) and (self.token is None or self.token == token)


@dataclass
class _Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    body: Any
    user_id: int

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)

    def with_(self) -> set[str]:
        return {w.strip() for w in (self.param("with") or "").split(",") if w.strip()}

    def filter_values(self, name: str) -> list[str] | None:
        """`filter[name]=v`, `filter[name][]=v` and `filter[name][0]=v` alike; None when absent."""
        pattern = re.compile(rf"filter\[{re.escape(name)}\](\[\d*\])?")
        found = [v for k, v in self.query if pattern.fullmatch(k)]
        return found if found else None


_E = "(?P<etype>leads|contacts|companies)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern), handler)
    for method, pattern, handler in [
        ("GET", r"/api/v4/account", "_get_account"),
        ("GET", r"/api/v4/users", "_list_users"),
        ("GET", r"/api/v4/users/(?P<id>\d+)", "_get_user"),
        ("GET", r"/api/v4/leads/pipelines", "_list_pipelines"),
        ("GET", r"/api/v4/leads/pipelines/(?P<id>\d+)", "_get_pipeline"),
        ("GET", rf"/api/v4/{_E}/custom_fields", "_list_custom_fields"),
        ("GET", rf"/api/v4/{_E}/custom_fields/(?P<id>\d+)", "_get_custom_field"),
        ("POST", r"/api/v4/tasks", "_add_tasks"),
        ("POST", r"/api/v4/salesbot/(?P<bot_id>\d+)/continue/(?P<continue_id>[\w-]+)", "_continue_salesbot"),
        ("POST", r"/api/v4/leads/complex", "_add_complex"),
        ("POST", r"/api/v4/leads/(?P<id>\d+)/link", "_link_lead"),
        ("GET", r"/api/v4/leads/(?P<id>\d+)/links", "_lead_links"),
        ("GET", r"/api/v4/tasks/(?P<id>\d+)", "_get_task"),
        ("POST", rf"/api/v4/{_E}/notes", "_add_notes"),
        ("POST", rf"/api/v4/{_E}/(?P<id>\d+)/notes", "_add_notes"),
        ("GET", rf"/api/v4/{_E}", "_list_entities"),
        ("POST", rf"/api/v4/{_E}", "_add_entities"),
        ("PATCH", rf"/api/v4/{_E}", "_patch_entities"),
        ("GET", rf"/api/v4/{_E}/(?P<id>\d+)", "_get_entity"),
        ("PATCH", rf"/api/v4/{_E}/(?P<id>\d+)", "_patch_entity"),
    ]
]


def _int(value: Any, path: str, *, minimum: int | None = None, request_id: str = "0") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        raise validation_problem(path, "InvalidType", "This value should be of type int.", request_id)
    return value


def _int_param(req: _Request, name: str, default: int) -> int:
    raw = req.param(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise Problem(400, "Bad Request", f"{name} must be a positive integer")
    return int(raw)


def _searchable(entity: dict[str, Any]) -> list[Any]:
    return [entity.get("name"), [v.get("values") for v in entity.get("custom_fields_values") or []]]


# Many branches on purpose: one branch per Kommo field type, as Kommo's documentation lists them.
def _field_value(  # noqa: C901
    definition: dict[str, Any], raw: Any, path: str, bad: Callable[..., Problem]
) -> dict[str, Any]:
    """One value written to a field, in the shape a GET shows it."""
    if not isinstance(raw, dict):
        raise bad(path, "This value should be of type object.")
    type_ = definition["type"]
    enums = definition.get("enums") or []
    if type_ == "multitext":
        value = raw.get("value")
        if not isinstance(value, str) or not value.strip():
            raise bad(f"{path}.value", "This value should not be blank.", "NotBlank")
        if "enum_id" in raw:
            enum = next((e for e in enums if e["id"] == raw["enum_id"]), None)
        else:
            enum = next((e for e in enums if e["value"] == raw.get("enum_code", "WORK")), None)
        if enum is None:
            raise bad(
                f"{path}.enum_code",
                "The value you have provided is not part of the possible values",
                "NotSupportedChoice",
            )
        return {"value": value.strip(), "enum_id": enum["id"], "enum_code": enum["value"]}
    if type_ in _ENUM_TYPES:
        if "enum_id" in raw:
            enum = next((e for e in enums if e["id"] == raw["enum_id"]), None)
        elif "value" in raw:
            enum = next((e for e in enums if e["value"] == raw["value"]), None)
        else:
            enum = next(
                (e for e in enums if raw.get("enum_code") and e.get("code") == raw["enum_code"]), None
            )
        if enum is None:
            raise bad(
                path, "The value you have provided is not part of the possible values", "NotSupportedChoice"
            )
        return {"value": enum["value"], "enum_id": enum["id"], "enum_code": enum.get("code")}
    value = raw.get("value")
    if type_ == "checkbox":
        if not isinstance(value, bool):
            raise bad(f"{path}.value", "This value should be of type bool.")
    elif type_ in _NUMBER_TYPES:
        try:
            float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise bad(f"{path}.value", "This value should be of type numeric.") from exc
        if isinstance(value, bool):
            raise bad(f"{path}.value", "This value should be of type numeric.")
    elif type_ in _DATE_TYPES:
        if isinstance(value, str):
            try:
                value = int(datetime.fromisoformat(value).timestamp())
            except ValueError as exc:
                raise bad(f"{path}.value", "This value should be a date.") from exc
        elif isinstance(value, bool) or not isinstance(value, int):
            raise bad(f"{path}.value", "This value should be a date.")
    elif type_ in _TEXT_TYPES and not isinstance(value, str):
        raise bad(f"{path}.value", "This value should be of type string.")
    return {"value": value}
