"""A stand-in for Kommo's API v4, for the local stack and the tests.

It answers the calls Mailer makes (and will make next) the way Kommo's documentation says
(../shared/reference/kommo-api.md §3): `Authorization: Bearer <token>`, HAL JSON
(`application/hal+json`, `_links.self.href`, `_embedded.<entities>`, `_page`, `_links.next`),
errors as `application/problem+json` ({"title", "type", "status", "detail"}, plus
`validation-errors` for a 400 on a write), at most 7 requests per second per token (429 over it),
at most 250 entities per page and per write, custom-field definitions 50 per page.

Choices where the documentation is silent, taken from the official PHP SDK's behaviour:
- A GET of a missing entity by id, and a list with nothing to show, answer **204 No Content**
  (the SDK turns both into "no content"). Unknown paths answer 404 problem+json.
- The 429 body carries `retry_after` (seconds until the one-second window frees up); no
  `Retry-After` header is sent, as none is documented.
- A lead always embeds `tags` and `companies`; `with=contacts` adds `contacts[{id, is_main}]`.
- A PATCH of a missing id answers 404 problem+json (by id) or a 400 validation error (batch).
- A write is all or nothing: one bad element of a batch leaves every entity unchanged.
- A filter, ordering or write field the stand-in does not implement answers 400 with a detail
  that says so, rather than being silently ignored.

Everything lives in memory. Every accepted write is appended to `changes`; every API request
(with its status) to `requests`. `GET /_standin/state` and `GET /_standin/changes` show them
as JSON without a token. Time (rate window, `updated_at`, change times) comes from an
injected `Clock`, so tests drive the rate limit with a `FakeClock`.
"""

from __future__ import annotations

import copy
import json
import math
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from mailer_core.clock import SYSTEM_CLOCK, Clock

from devstack.kommo_seed import Seed, demo_seed

ENTITY_TYPES = ("leads", "contacts", "companies")
MAX_PAGE_LIMIT = 250
MAX_WRITE_BATCH = 250
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


class KommoStandIn:
    """An in-memory Kommo account behind an HTTP server on 127.0.0.1."""

    def __init__(
        self,
        seed: Seed | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: int = RATE_LIMIT_PER_SECOND,
    ) -> None:
        data = copy.deepcopy(seed) if seed is not None else demo_seed()
        self.clock = clock
        self.rate_limit = rate_limit
        self._host, self._port = host, port
        self._lock = threading.RLock()
        self._account = data.account
        self._users = {u["id"]: u for u in data.users}
        self._task_types = data.task_types
        self._pipelines = {p["id"]: p for p in data.pipelines}
        self._custom_fields = {etype: list(data.custom_fields.get(etype, [])) for etype in ENTITY_TYPES}
        self._entities: dict[str, dict[int, dict[str, Any]]] = {
            "leads": {e["id"]: e for e in data.leads},
            "contacts": {e["id"]: e for e in data.contacts},
            "companies": {e["id"]: e for e in data.companies},
        }
        self._tags: dict[str, dict[int, dict[str, Any]]] = {etype: {} for etype in ENTITY_TYPES}
        for etype, entities in self._entities.items():
            for entity in entities.values():
                entity.setdefault("_embedded", {}).setdefault("tags", [])
                for tag in entity["_embedded"]["tags"]:
                    self._tags[etype][tag["id"]] = dict(tag)
        self._tasks: list[dict[str, Any]] = []
        self._notes: dict[str, list[dict[str, Any]]] = {etype: [] for etype in ENTITY_TYPES}
        # New ids continue each kind's own sequence, as Kommo's ids do.
        self._last_ids = {
            etype: max(self._entities[etype], default=_ID_BASES[etype]) for etype in ENTITY_TYPES
        }
        self._last_ids.update(
            tasks=_ID_BASES["tasks"],
            notes=_ID_BASES["notes"],
            tags=max([t for tags in self._tags.values() for t in tags], default=_ID_BASES["tags"]),
        )
        self._changes: list[Change] = []
        self._requests: list[RequestRecord] = []
        self._tokens: dict[str, int] = {}
        self._windows: dict[str, deque[float]] = {}
        self._failures: deque[Response] = deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> KommoStandIn:
        handler = type("_BoundHandler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer((self._host, self._port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="kommo-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> KommoStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- test controls ---------------------------------------------------------------------

    def add_token(self, account_id: int, token: str, user_id: int | None = None) -> None:
        """Accept `token` for the account, acting as `user_id` (the first admin by default)."""
        if account_id != self._account["id"]:
            raise ValueError(f"the stand-in serves account {self._account['id']}, not {account_id}")
        if user_id is None:
            user_id = next(u["id"] for u in self._users.values() if u["rights"]["is_admin"])
        if user_id not in self._users:
            raise ValueError(f"no user {user_id}")
        with self._lock:
            self._tokens[token] = user_id

    def fail_next(
        self, status: int, *, count: int = 1, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next `count` authenticated API requests with `status` (e.g. 500 or 504)."""
        if body is None:
            body = Problem(status, "Injected failure", f"the stand-in was told to answer {status}").body
        with self._lock:
            self._failures.extend(Response(status, body, dict(headers or {})) for _ in range(count))

    @property
    def changes(self) -> list[Change]:
        with self._lock:
            return list(self._changes)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    @property
    def tasks(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._tasks)

    def notes(self, entity_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._notes[entity_type])

    def entity(self, entity_type: str, entity_id: int) -> dict[str, Any] | None:
        """The entity as a GET with every `with` would show it; None when missing."""
        with self._lock:
            entity = self._entities[entity_type].get(entity_id)
            return self._render(entity_type, entity, {"contacts", "leads"}) if entity else None

    def lead(self, lead_id: int) -> dict[str, Any] | None:
        return self.entity("leads", lead_id)

    def contact(self, contact_id: int) -> dict[str, Any] | None:
        return self.entity("contacts", contact_id)

    def company(self, company_id: int) -> dict[str, Any] | None:
        return self.entity("companies", company_id)

    def state(self) -> dict[str, Any]:
        with self._lock:
            full = {"contacts", "leads"}
            return {
                "account": self._render_account(set()),
                "users": [self._render_user(u) for u in self._users.values()],
                "pipelines": [self._render_pipeline(p) for p in self._pipelines.values()],
                **{
                    etype: [self._render(etype, e, full) for e in self._sorted(etype)]
                    for etype in ENTITY_TYPES
                },
                "tasks": copy.deepcopy(self._tasks),
                "notes": copy.deepcopy(self._notes),
            }

    # -- request handling ------------------------------------------------------------------

    def dispatch(self, method: str, target: str, authorization: str | None, raw_body: bytes) -> Response:
        """Answer one HTTP request; the server calls this, and tests may call it directly."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        if path.startswith("/_standin/"):
            return self._standin_view(method, path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        with self._lock:
            now = self.clock.timestamp()
            try:
                token, user_id = self._authenticate(authorization)
                self._take_rate_slot(token, now)
                if self._failures:
                    response = self._failures.popleft()
                else:
                    body = self._parse_body(method, raw_body)
                    response = self._route(_Request(method, path, query, body, user_id))
                    if method != "GET" and 200 <= response.status < 300:
                        self._changes.append(Change(method, path, copy.deepcopy(body), now))
            except Problem as problem:
                response = Response(problem.status, problem.body)
            self._requests.append(RequestRecord(method, path, parts.query, response.status, now))
            return response

    def _standin_view(self, method: str, path: str) -> Response:
        if method != "GET":
            return Response(405, Problem(405, "Method Not Allowed", "the stand-in views are read-only").body)
        if path == "/_standin/state":
            return Response(200, self.state())
        if path == "/_standin/changes":
            return Response(200, [c.to_json() for c in self.changes])
        return Response(404, Problem(404, "Not Found", f"no stand-in view at {path}").body)

    def _authenticate(self, authorization: str | None) -> tuple[str, int]:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or token not in self._tokens:
            raise Problem(401, "Unauthorized", "Unauthorized")
        return token, self._tokens[token]

    def _take_rate_slot(self, token: str, now: float) -> None:
        """A sliding one-second window: the 8th request within a second is refused."""
        window = self._windows.setdefault(token, deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= self.rate_limit:
            retry_after = max(1, math.ceil(window[0] + 1.0 - now))
            raise Problem(
                429,
                "Too Many Requests",
                f"more than {self.rate_limit} requests per second",
                retry_after=retry_after,
            )
        window.append(now)

    @staticmethod
    def _parse_body(method: str, raw: bytes) -> Any:
        if method not in ("POST", "PATCH"):
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Problem(400, "Bad Request", "the request body is not valid JSON") from exc

    def _route(self, req: _Request) -> Response:
        path_known = False
        for method, pattern, name in _ROUTES:
            match = pattern.fullmatch(req.path)
            if not match:
                continue
            path_known = True
            if method == req.method:
                handler: Callable[..., Response] = getattr(self, name)
                return handler(req, **match.groupdict())
        if path_known:
            raise Problem(405, "Method Not Allowed", f"{req.method} is not allowed on {req.path}")
        raise Problem(404, "Not Found", f"{req.path} was not found")

    # -- rendering -------------------------------------------------------------------------

    def _href(self, path: str, query: Iterable[tuple[str, str]] = ()) -> str:
        q = urlencode(list(query))
        return f"{self.base_url if self._server else ''}{path}{'?' + q if q else ''}"

    def _links(self, path: str) -> dict[str, Any]:
        return {"self": {"href": self._href(path)}}

    def _ref(self, etype: str, entity_id: int, **extra: Any) -> dict[str, Any]:
        return {"id": entity_id, **extra, "_links": self._links(f"/api/v4/{etype}/{entity_id}")}

    def _sorted(self, etype: str) -> list[dict[str, Any]]:
        return [self._entities[etype][i] for i in sorted(self._entities[etype])]

    def _leads_linking(self, etype: str, entity_id: int) -> list[int]:
        return [
            lead["id"]
            for lead in self._sorted("leads")
            if any(link["id"] == entity_id for link in lead["_embedded"].get(etype, []))
        ]

    def _render(self, etype: str, entity: dict[str, Any], with_: set[str]) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in entity.items() if k != "_embedded"}
        out["_links"] = self._links(f"/api/v4/{etype}/{entity['id']}")
        links = entity["_embedded"]
        embedded: dict[str, Any] = {"tags": copy.deepcopy(links.get("tags", []))}
        if etype in ("leads", "contacts"):
            embedded["companies"] = [self._ref("companies", c["id"]) for c in links.get("companies", [])]
        if etype == "leads" and "contacts" in with_:
            embedded["contacts"] = [
                self._ref("contacts", c["id"], is_main=bool(c.get("is_main")))
                for c in links.get("contacts", [])
            ]
        if etype == "companies" and "contacts" in with_:
            embedded["contacts"] = [
                self._ref("contacts", c["id"])
                for c in self._sorted("contacts")
                if any(link["id"] == entity["id"] for link in c["_embedded"].get("companies", []))
            ]
        if etype != "leads" and "leads" in with_:
            embedded["leads"] = [self._ref("leads", i) for i in self._leads_linking(etype, entity["id"])]
        out["_embedded"] = embedded
        return out

    def _render_user(self, user: dict[str, Any]) -> dict[str, Any]:
        return {**copy.deepcopy(user), "_links": self._links(f"/api/v4/users/{user['id']}")}

    def _render_pipeline(self, pipeline: dict[str, Any]) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in pipeline.items() if k != "_embedded"}
        out["_links"] = self._links(f"/api/v4/leads/pipelines/{pipeline['id']}")
        statuses = [
            {**s, "_links": self._links(f"/api/v4/leads/pipelines/{pipeline['id']}/statuses/{s['id']}")}
            for s in pipeline["_embedded"]["statuses"]
        ]
        out["_embedded"] = {"statuses": copy.deepcopy(statuses)}
        return out

    def _render_account(self, with_: set[str], user_id: int | None = None) -> dict[str, Any]:
        out = copy.deepcopy(self._account)
        out["current_user_id"] = user_id
        out["_links"] = self._links("/api/v4/account")
        embedded: dict[str, Any] = {}
        if "task_types" in with_:
            embedded["task_types"] = copy.deepcopy(self._task_types)
        if "users_groups" in with_:
            embedded["users_groups"] = [{"id": 0, "name": "Sales department", "uuid": None}]
        if embedded:
            out["_embedded"] = embedded
        return out

    def _page(
        self,
        req: _Request,
        key: str,
        items: list[dict[str, Any]],
        *,
        max_limit: int = MAX_PAGE_LIMIT,
        default_limit: int = DEFAULT_PAGE_LIMIT,
        totals: bool = False,
    ) -> Response:
        page = _int_param(req, "page", 1)
        limit = _int_param(req, "limit", default_limit)
        if limit > max_limit:
            raise Problem(400, "Bad Request", f"limit must not exceed {max_limit}")
        start = (page - 1) * limit
        chunk = items[start : start + limit]
        if not chunk:
            return Response(204)
        page_count = max(1, math.ceil(len(items) / limit))

        def at(n: int) -> dict[str, str]:
            query = [(k, v) for k, v in req.query if k not in ("page", "limit")]
            return {"href": self._href(req.path, [*query, ("page", str(n)), ("limit", str(limit))])}

        links: dict[str, Any] = {"self": at(page)}
        if start + limit < len(items):
            links["next"] = at(page + 1)
        if page > 1:
            links["first"] = at(1)
            links["prev"] = at(page - 1)
        body: dict[str, Any] = {"_page": page, "_links": links, "_embedded": {key: chunk}}
        if totals:
            links["last"] = at(page_count)
            body = {"_total_items": len(items), "_page_count": page_count, **body}
        return Response(200, body)

    # -- reads -----------------------------------------------------------------------------

    def _get_account(self, req: _Request) -> Response:
        return Response(200, self._render_account(req.with_(), req.user_id))

    def _require_admin(self, req: _Request) -> None:
        if not self._users[req.user_id]["rights"]["is_admin"]:
            raise Problem(403, "Forbidden", "Access denied: the user is not an administrator")

    def _list_users(self, req: _Request) -> Response:
        self._require_admin(req)
        users = [self._render_user(self._users[i]) for i in sorted(self._users)]
        return self._page(req, "users", users, totals=True)

    def _get_user(self, req: _Request, id: str) -> Response:
        self._require_admin(req)
        user = self._users.get(int(id))
        return Response(200, self._render_user(user)) if user else Response(204)

    def _list_pipelines(self, req: _Request) -> Response:
        pipelines = [self._render_pipeline(p) for p in self._pipelines.values()]
        return Response(
            200,
            {
                "_total_items": len(pipelines),
                "_links": self._links(req.path),
                "_embedded": {"pipelines": pipelines},
            },
        )

    def _get_pipeline(self, req: _Request, id: str) -> Response:
        pipeline = self._pipelines.get(int(id))
        return Response(200, self._render_pipeline(pipeline)) if pipeline else Response(204)

    def _render_field(self, etype: str, definition: dict[str, Any]) -> dict[str, Any]:
        link = self._links(f"/api/v4/{etype}/custom_fields/{definition['id']}")
        return {**copy.deepcopy(definition), "_links": link}

    def _list_custom_fields(self, req: _Request, etype: str) -> Response:
        types = req.filter_values("type")
        self._reject_other_filters(req, {"type"})
        fields = [f for f in self._custom_fields[etype] if types is None or f["type"] in types]
        rendered = [self._render_field(etype, f) for f in fields]
        return self._page(
            req,
            "custom_fields",
            rendered,
            max_limit=CUSTOM_FIELDS_PAGE,
            default_limit=CUSTOM_FIELDS_PAGE,
            totals=True,
        )

    def _get_custom_field(self, req: _Request, etype: str, id: str) -> Response:
        found = next((f for f in self._custom_fields[etype] if f["id"] == int(id)), None)
        return Response(200, self._render_field(etype, found)) if found else Response(204)

    @staticmethod
    def _reject_other_filters(req: _Request, allowed: set[str]) -> None:
        for key, _ in req.query:
            m = re.match(r"(filter|order)\[([^\]]*)\]", key)
            if m and not (m.group(1) == "filter" and m.group(2) in allowed):
                raise _not_implemented(f"the query parameter {key}")

    def _list_entities(self, req: _Request, etype: str) -> Response:
        raw_ids = req.filter_values("id")
        self._reject_other_filters(req, {"id"})
        items = self._sorted(etype)
        if raw_ids is not None:
            try:
                wanted = {int(v) for v in raw_ids}
            except ValueError as exc:
                raise Problem(400, "Bad Request", "filter[id] takes entity ids") from exc
            items = [e for e in items if e["id"] in wanted]
        search = (req.param("query") or "").strip().lower()
        if search:
            items = [e for e in items if search in json.dumps(_searchable(e), ensure_ascii=False).lower()]
        with_ = req.with_()
        return self._page(req, etype, [self._render(etype, e, with_) for e in items])

    def _get_entity(self, req: _Request, etype: str, id: str) -> Response:
        entity = self._entities[etype].get(int(id))
        if entity is None:
            return Response(204)
        return Response(200, self._render(etype, entity, req.with_()))

    def _get_task(self, req: _Request, id: str) -> Response:
        task = next((t for t in self._tasks if t["id"] == int(id)), None)
        if task is None:
            return Response(204)
        return Response(200, {**copy.deepcopy(task), "_links": self._links(f"/api/v4/tasks/{task['id']}")})

    # -- writes ----------------------------------------------------------------------------

    def _new_id(self, kind: str) -> int:
        self._last_ids[kind] += 1
        return self._last_ids[kind]

    def _now(self) -> int:
        return int(self.clock.timestamp())

    @staticmethod
    def _batch(body: Any) -> list[dict[str, Any]]:
        if not isinstance(body, list) or not body:
            raise Problem(400, "Bad Request", "the body must be a non-empty JSON array")
        if len(body) > MAX_WRITE_BATCH:
            raise Problem(400, "Bad Request", f"at most {MAX_WRITE_BATCH} entities per request")
        for item in body:
            if not isinstance(item, dict):
                raise Problem(400, "Bad Request", "every element of the array must be an object")
        return body

    def _patch_entity(self, req: _Request, etype: str, id: str) -> Response:
        if not isinstance(req.body, dict):
            raise Problem(400, "Bad Request", "the body must be a JSON object")
        entity = self._entities[etype].get(int(id))
        if entity is None:
            raise Problem(404, "Not Found", f"no {etype} entity with id {id}")
        updated = self._apply(etype, copy.deepcopy(entity), req.body, req.user_id, "0", "")
        self._entities[etype][updated["id"]] = updated
        return Response(
            200,
            {
                "id": updated["id"],
                "updated_at": updated["updated_at"],
                "_links": self._links(f"/api/v4/{etype}/{updated['id']}"),
            },
        )

    def _patch_entities(self, req: _Request, etype: str) -> Response:
        items = self._batch(req.body)
        working: dict[int, dict[str, Any]] = {}
        answers = []
        for index, item in enumerate(items):
            request_id = str(item.get("request_id", index))
            entity_id = _int(item.get("id"), f"{index}.id", request_id=request_id)
            current = working.get(entity_id) or self._entities[etype].get(entity_id)
            if current is None:
                raise validation_problem(
                    f"{index}.id", "NotFound", f"no entity with id {entity_id}", request_id
                )
            working[entity_id] = self._apply(
                etype, copy.deepcopy(current), item, req.user_id, request_id, f"{index}."
            )
            answers.append(
                {
                    "id": entity_id,
                    "updated_at": working[entity_id]["updated_at"],
                    "request_id": request_id,
                    "_links": self._links(f"/api/v4/{etype}/{entity_id}"),
                }
            )
        self._entities[etype].update(working)
        return Response(200, {"_links": self._links(req.path), "_embedded": {etype: answers}})

    def _add_entities(self, req: _Request, etype: str) -> Response:
        items = self._batch(req.body)
        created: list[dict[str, Any]] = []
        answers = []
        for index, item in enumerate(items):
            request_id = str(item.get("request_id", index))
            entity_id = self._new_id(etype)
            entity: dict[str, Any] = {
                "id": entity_id,
                "name": "",
                "responsible_user_id": req.user_id,
                "group_id": 0,
                "created_by": req.user_id,
                "updated_by": req.user_id,
                "created_at": self._now(),
                "updated_at": self._now(),
                "closest_task_at": None,
                "is_deleted": False,
                "custom_fields_values": None,
                "account_id": self._account["id"],
                "_embedded": {"tags": [], "contacts": [], "companies": []},
            }
            if etype == "leads":
                main = next(p for p in self._pipelines.values() if p.get("is_main"))
                first = next(s for s in main["_embedded"]["statuses"] if s["type"] == 0)
                entity.update(
                    {
                        "price": 0,
                        "status_id": first["id"],
                        "pipeline_id": main["id"],
                        "loss_reason_id": None,
                        "closed_at": None,
                    }
                )
            if etype == "contacts":
                entity.update({"first_name": "", "last_name": "", "is_unsorted": False})
            entity = self._apply(etype, entity, item, req.user_id, request_id, f"{index}.", creating=True)
            if not entity["name"]:
                entity["name"] = f"{etype[:-1].capitalize()} #{entity_id}"
            created.append(entity)
            answers.append(
                {
                    "id": entity_id,
                    "request_id": request_id,
                    "_links": self._links(f"/api/v4/{etype}/{entity_id}"),
                }
            )
        for entity in created:
            self._entities[etype][entity["id"]] = entity
        return Response(200, {"_links": self._links(req.path), "_embedded": {etype: answers}})

    def _apply(
        self,
        etype: str,
        entity: dict[str, Any],
        patch: dict[str, Any],
        user_id: int,
        request_id: str,
        prefix: str,
        *,
        creating: bool = False,
    ) -> dict[str, Any]:
        """Apply one write body to a working copy of an entity; raise a 400 on any bad field."""

        def bad(path: str, detail: str, code: str = "InvalidType") -> Problem:
            return validation_problem(prefix + path, code, detail, request_id)

        allowed = _WRITE_FIELDS[etype] | _COMMON_WRITE_FIELDS | {"id"}
        for key in patch:
            if key not in allowed:
                raise _not_implemented(f"writing the field {key!r} of {etype}")
        if "name" in patch:
            if not isinstance(patch["name"], str):
                raise bad("name", "This value should be of type string.")
            entity["name"] = patch["name"]
        if etype == "contacts" and ("first_name" in patch or "last_name" in patch):
            for part in ("first_name", "last_name"):
                if part in patch:
                    if not isinstance(patch[part], str):
                        raise bad(part, "This value should be of type string.")
                    entity[part] = patch[part]
            if "name" not in patch:
                entity["name"] = f"{entity.get('first_name', '')} {entity.get('last_name', '')}".strip()
        if "price" in patch:
            entity["price"] = _int(patch["price"], prefix + "price", minimum=0, request_id=request_id)
        if "responsible_user_id" in patch:
            uid = _int(patch["responsible_user_id"], prefix + "responsible_user_id", request_id=request_id)
            if uid not in self._users:
                raise bad("responsible_user_id", "The user was not found", "NotFound")
            entity["responsible_user_id"] = uid
        if "loss_reason_id" in patch:
            entity["loss_reason_id"] = patch["loss_reason_id"]
        if etype == "leads" and ("status_id" in patch or "pipeline_id" in patch):
            self._move(entity, patch, bad)
        if "custom_fields_values" in patch:
            self._write_fields(etype, entity, patch["custom_fields_values"], bad)
        self._write_links_and_tags(etype, entity, patch, bad, creating)
        entity["updated_at"] = self._now()
        entity["updated_by"] = user_id
        return entity

    def _move(self, lead: dict[str, Any], patch: dict[str, Any], bad: Callable[..., Problem]) -> None:
        pipeline_id = patch.get("pipeline_id", lead["pipeline_id"])
        pipeline = self._pipelines.get(pipeline_id) if isinstance(pipeline_id, int) else None
        if pipeline is None:
            raise bad("pipeline_id", "The pipeline was not found", "NotFound")
        statuses = pipeline["_embedded"]["statuses"]
        if "status_id" in patch:
            status_id = patch["status_id"]
        elif pipeline_id != lead["pipeline_id"]:
            status_id = next(s["id"] for s in statuses if s["type"] == 0)
        else:
            status_id = lead["status_id"]
        status = next((s for s in statuses if s["id"] == status_id), None)
        if status is None:
            raise bad("status_id", "The status is not part of the pipeline", "NotSupportedChoice")
        if status["type"] == 1 and status_id != lead["status_id"]:
            raise bad("status_id", "A lead cannot be moved to the unsorted stage", "NotSupportedChoice")
        lead["pipeline_id"], lead["status_id"] = pipeline_id, status_id
        lead["closed_at"] = self._now() if status_id in CLOSED_STATUSES else None

    def _write_fields(
        self, etype: str, entity: dict[str, Any], raw: Any, bad: Callable[..., Problem]
    ) -> None:
        if not isinstance(raw, list):
            raise bad("custom_fields_values", "This value should be of type array.")
        current: list[dict[str, Any]] = list(entity.get("custom_fields_values") or [])
        for i, item in enumerate(raw):
            path = f"custom_fields_values.{i}"
            if not isinstance(item, dict):
                raise bad(path, "This value should be of type object.")
            definition = next(
                (
                    f
                    for f in self._custom_fields[etype]
                    if ("field_id" in item and f["id"] == item["field_id"])
                    or ("field_id" not in item and item.get("field_code") and f["code"] == item["field_code"])
                ),
                None,
            )
            if definition is None:
                raise bad(
                    f"{path}.field_id",
                    "The value you have provided is not part of the possible values",
                    "NotSupportedChoice",
                )
            values = item.get("values")
            position = next((n for n, v in enumerate(current) if v["field_id"] == definition["id"]), None)
            if position is not None:
                current.pop(position)
            if values in (None, []):
                continue
            if not isinstance(values, list):
                raise bad(f"{path}.values", "This value should be of type array.")
            if definition["type"] in _SINGLE_VALUE_TYPES and len(values) > 1:
                raise bad(f"{path}.values", "This field takes one value", "NotSupportedChoice")
            normalized = [
                _field_value(definition, v, f"{path}.values.{j}", bad) for j, v in enumerate(values)
            ]
            entry = {
                "field_id": definition["id"],
                "field_name": definition["name"],
                "field_code": definition["code"],
                "field_type": definition["type"],
                "values": normalized,
            }
            current.insert(len(current) if position is None else position, entry)
        entity["custom_fields_values"] = current or None

    def _write_links_and_tags(
        self,
        etype: str,
        entity: dict[str, Any],
        patch: dict[str, Any],
        bad: Callable[..., Problem],
        creating: bool,
    ) -> None:
        embedded = patch.get("_embedded")
        links = entity["_embedded"]
        if embedded is not None:
            if not isinstance(embedded, dict):
                raise bad("_embedded", "This value should be of type object.")
            linkable = {"leads": {"contacts", "companies"}, "contacts": {"companies"}}.get(etype, set())
            for key in embedded:
                if key != "tags" and not (creating and key in linkable):
                    raise _not_implemented(f"_embedded.{key} on this write")
            if "tags" in embedded:
                tags = embedded["tags"]
                if tags is not None and not isinstance(tags, list):
                    raise bad("_embedded.tags", "This value should be of type array.")
                links["tags"] = [
                    self._tag(etype, t, f"_embedded.tags.{n}", bad) for n, t in enumerate(tags or [])
                ]
            for key in ("contacts", "companies"):
                if key in embedded and creating and key in linkable:
                    refs = embedded[key] or []
                    if not isinstance(refs, list):
                        raise bad(f"_embedded.{key}", "This value should be of type array.")
                    found = []
                    for n, ref in enumerate(refs):
                        ref_id = ref.get("id") if isinstance(ref, dict) else None
                        if ref_id not in self._entities[key]:
                            raise bad(f"_embedded.{key}.{n}.id", "The entity was not found", "NotFound")
                        is_main = bool(ref.get("is_main", n == 0))
                        found.append(
                            {"id": ref_id, "is_main": is_main} if key == "contacts" else {"id": ref_id}
                        )
                    links[key] = found
        for key, adding in (("tags_to_add", True), ("tags_to_delete", False)):
            if key not in patch:
                continue
            refs = patch[key]
            if not isinstance(refs, list):
                raise bad(key, "This value should be of type array.")
            for n, ref in enumerate(refs):
                if adding:
                    tag = self._tag(etype, ref, f"{key}.{n}", bad)
                    if all(t["id"] != tag["id"] for t in links["tags"]):
                        links["tags"].append(tag)
                elif isinstance(ref, dict):
                    links["tags"] = [
                        t
                        for t in links["tags"]
                        if not (
                            ("id" in ref and t["id"] == ref["id"])
                            or ("name" in ref and str(t["name"]).lower() == str(ref["name"]).lower())
                        )
                    ]
                else:
                    raise bad(f"{key}.{n}", "This value should be of type object.")

    def _tag(self, etype: str, ref: Any, path: str, bad: Callable[..., Problem]) -> dict[str, Any]:
        """Resolve `{"id": …}` or `{"name": …}` to a tag of the directory, creating a new name."""
        directory = self._tags[etype]
        if isinstance(ref, dict) and "id" in ref:
            if ref["id"] not in directory:
                raise bad(f"{path}.id", "The tag was not found", "NotFound")
            return dict(directory[ref["id"]])
        if isinstance(ref, dict) and isinstance(ref.get("name"), str) and ref["name"].strip():
            name = ref["name"].strip()
            for tag in directory.values():
                if tag["name"].lower() == name.lower():
                    return dict(tag)
            tag = {"id": self._new_id("tags"), "name": name, "color": ref.get("color")}
            directory[tag["id"]] = tag
            return dict(tag)
        raise bad(path, "A tag needs an id or a name")

    def _add_tasks(self, req: _Request) -> Response:
        items = self._batch(req.body)
        created, answers = [], []
        task_type_ids = {t["id"] for t in self._task_types}
        for index, item in enumerate(items):
            request_id = str(item.get("request_id", index))

            def bad(path: str, detail: str, code: str = "InvalidType", _rid: str = request_id) -> Problem:
                return validation_problem(path, code, detail, _rid)

            text = item.get("text")
            if not isinstance(text, str) or not text.strip():
                raise bad(f"{index}.text", "This value should not be blank.", "NotBlank")
            complete_till = _int(item.get("complete_till"), f"{index}.complete_till", request_id=request_id)
            entity_type, entity_id = item.get("entity_type"), item.get("entity_id")
            if entity_type is not None or entity_id is not None:
                if entity_type not in ENTITY_TYPES:
                    raise bad(f"{index}.entity_type", "Unsupported entity type", "NotSupportedChoice")
                if entity_id not in self._entities[entity_type]:
                    raise bad(f"{index}.entity_id", "The entity was not found", "NotFound")
            task_type_id = item.get("task_type_id", 1)
            if task_type_id not in task_type_ids:
                raise bad(f"{index}.task_type_id", "Unknown task type", "NotSupportedChoice")
            responsible = item.get("responsible_user_id", req.user_id)
            if responsible not in self._users:
                raise bad(f"{index}.responsible_user_id", "The user was not found", "NotFound")
            task = {
                "id": self._new_id("tasks"),
                "created_by": req.user_id,
                "updated_by": req.user_id,
                "created_at": self._now(),
                "updated_at": self._now(),
                "responsible_user_id": responsible,
                "group_id": 0,
                "entity_id": entity_id,
                "entity_type": entity_type,
                "duration": item.get("duration", 0),
                "is_completed": bool(item.get("is_completed", False)),
                "task_type_id": task_type_id,
                "text": text,
                "result": item.get("result") or [],
                "complete_till": complete_till,
                "account_id": self._account["id"],
            }
            created.append(task)
            answers.append(
                {
                    "id": task["id"],
                    "request_id": request_id,
                    "_links": self._links(f"/api/v4/tasks/{task['id']}"),
                }
            )
        self._tasks.extend(created)
        return Response(200, {"_links": self._links(req.path), "_embedded": {"tasks": answers}})

    def _add_notes(self, req: _Request, etype: str, id: str | None = None) -> Response:
        items = self._batch(req.body)
        created, answers = [], []
        for index, item in enumerate(items):
            request_id = str(item.get("request_id", index))

            def bad(path: str, detail: str, code: str = "InvalidType", _rid: str = request_id) -> Problem:
                return validation_problem(path, code, detail, _rid)

            entity_id = int(id) if id is not None else item.get("entity_id")
            if entity_id not in self._entities[etype]:
                raise bad(f"{index}.entity_id", "The entity was not found", "NotFound")
            note_type = item.get("note_type")
            if note_type not in NOTE_TYPES:
                raise bad(f"{index}.note_type", "Unsupported note type", "NotSupportedChoice")
            params = item.get("params")
            if not isinstance(params, dict):
                raise bad(f"{index}.params", "This value should be of type object.")
            needs = {"common": ("text",), "service_message": ("service", "text")}
            needs["extended_service_message"] = needs["service_message"]
            for key in needs.get(note_type, ()):
                if not isinstance(params.get(key), str) or not params[key]:
                    raise bad(f"{index}.params.{key}", "This value should not be blank.", "NotBlank")
            note = {
                "id": self._new_id("notes"),
                "entity_id": entity_id,
                "created_by": item.get("created_by", req.user_id),
                "updated_by": req.user_id,
                "created_at": self._now(),
                "updated_at": self._now(),
                "responsible_user_id": item.get("responsible_user_id", req.user_id),
                "group_id": 0,
                "note_type": note_type,
                "params": copy.deepcopy(params),
                "account_id": self._account["id"],
            }
            created.append(note)
            answers.append(
                {
                    "id": note["id"],
                    "entity_id": entity_id,
                    "request_id": request_id,
                    "_links": self._links(f"/api/v4/{etype}/notes/{note['id']}"),
                }
            )
        self._notes[etype].extend(created)
        return Response(200, {"_links": self._links(req.path), "_embedded": {"notes": answers}})


def _searchable(entity: dict[str, Any]) -> list[Any]:
    return [entity.get("name"), [v.get("values") for v in entity.get("custom_fields_values") or []]]


def _field_value(
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


class _Handler(BaseHTTPRequestHandler):
    standin: KommoStandIn
    server_version = "KommoStandIn/1.0"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        response = self.standin.dispatch(self.command, self.path, self.headers.get("Authorization"), raw)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status == 204 or response.body is None:
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps(response.body, ensure_ascii=False).encode("utf-8")
        kind = "application/problem+json" if response.status >= 400 else "application/hal+json"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log lives in `KommoStandIn.requests`."""
