"""A stand-in for Kommo's API v4, for the local stack and the tests.

It answers the calls Mailer makes (and will make next) the way Kommo's documentation says
(../shared/reference/kommo-api.md §3): `Authorization: Bearer <token>`, HAL JSON
(`application/hal+json`, `_links.self.href`, `_embedded.<entities>`, `_page`, `_links.next`),
errors as `application/problem+json` ({"title", "type", "status", "detail"}, plus
`validation-errors` for a 400 on a write), at most 7 requests per second per IP address, then
429 with Kommo's `retry_after` (300 s by default), and a ban (nginx's HTML "403 Forbidden")
for an address that does not wait (kommo_standin/limits.py), at most 250 entities per page and
per write, custom-field definitions 50 per page. Administrators' endpoints (`/api/v4/users`,
the Salesbot continue) refuse other users with a 403 problem+json ("Forbidden"): a refusal of
one call, not a ban.

Choices where the documentation is silent, taken from the official PHP SDK's behaviour:
- A GET of a missing entity by id, and a list with nothing to show, answer **204 No Content**
  (the SDK turns both into "no content"). Unknown paths answer 404 problem+json.
- A lead always embeds `tags` and `companies`; `with=contacts` adds `contacts[{id, is_main}]`.
- A PATCH of a missing id answers 404 problem+json (by id) or a 400 validation error (batch).
- A write is all or nothing: one bad element of a batch leaves every entity unchanged.
- A filter, ordering or write field the stand-in does not implement answers 400 with a detail
  that says so, rather than being silently ignored. Lists take the filters amoCRM's
  filters-api page documents that Mailer uses: `filter[id]`, `filter[responsible_user_id]`,
  for leads `filter[statuses][n][pipeline_id]` + `[status_id]` and `filter[pipeline_id]`, and
  `order[id]` (Kommo documents no filter by tag, so there is none here).

Writes: POST and PATCH of leads, contacts and companies (fields, custom field values of every
type, `_embedded.tags`, `tags_to_add`/`tags_to_delete`, a lead's stage), `POST /leads/complex`
(a lead with a new or existing contact and company), `POST /leads/{id}/link` and
`GET /leads/{id}/links`, tasks and notes (kommo_standin_writes.py). A Salesbot waiting at a
`widget_request` step is continued with `POST /api/v4/salesbot/{bot}/continue/{id}`
(administrators, 202; kept in `salesbot_continues`). `remove_entity` deletes an entity as a
user would in Kommo's interface.

OAuth: `POST /oauth2/access_token` with rotating refresh tokens and Kommo's error answers
(kommo_standin/oauth.py); the access tokens it issues expire after 24 h by the stand-in's
clock, while tokens given with `add_token` never expire. Every request from one address
shares its rate window, whatever its token.

Failures for tests: `fail_next` answers the next matching requests (optionally of one token,
or of another path such as the token endpoint) with any status and body (a `str` body goes
out as it is, e.g. an HTML page); `ban` bans this machine's address now;
`gateway_timeout_over` makes batches bigger than a size answer 504, as Kommo's gateway does.

Everything lives in memory. Every accepted write is appended to `changes`; every request
(with its status) to `requests`. `GET /_standin/state` and `GET /_standin/changes` show them
as JSON without a token. Time (rate window, `updated_at`, change times, code and token
lifetimes) comes from an injected `Clock`, so tests drive it with a `FakeClock`.
"""

from __future__ import annotations

import copy
import json
import math
import re
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from mailer_core.base.clock import SYSTEM_CLOCK, Clock

from devstack.kommo_standin.limits import DEFAULT_WAIT, AddressLimits, ban_page
from devstack.kommo_standin.oauth import StandInOAuth, TokenCall
from devstack.kommo_standin.seed import Seed, demo_seed
from devstack.kommo_standin.shapes import (
    _ID_BASES,
    _ROUTES,
    CUSTOM_FIELDS_PAGE,
    DEFAULT_PAGE_LIMIT,
    ENTITY_TYPES,
    MAX_PAGE_LIMIT,
    RATE_LIMIT_PER_SECOND,
    Change,
    Problem,
    RequestRecord,
    Response,
    _Failure,
    _int_param,
    _not_implemented,
    _Request,
    _searchable,
)
from devstack.kommo_standin.writes import StandInWrites


class KommoStandIn(StandInWrites):
    """An in-memory Kommo account behind an HTTP server on 127.0.0.1."""

    def __init__(
        self,
        seed: Seed | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: int = RATE_LIMIT_PER_SECOND,
        rate_limit_wait: int = DEFAULT_WAIT,
    ) -> None:
        data = copy.deepcopy(seed) if seed is not None else demo_seed()
        self.clock = clock
        # The limits per address: `limits.wait` is the 429's `retry_after`, `limits.ban_after`
        # and `limits.ban_seconds` when an address is banned.
        self.limits = AddressLimits(rate_limit, wait=rate_limit_wait)
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
        # Salesbots continued through their return_url: {bot_id, continue_id, user_id, body}.
        self._salesbot_continues: list[dict[str, Any]] = []
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
        self._failures: list[_Failure] = []
        admin = next(u["id"] for u in self._users.values() if u["rights"]["is_admin"])
        self.oauth = StandInOAuth(default_user_id=admin)
        # Answer 504 (as Kommo's gateway does) to a read of more ids, or a write of more
        # entities, than this; None: never.
        self.gateway_timeout_over: int | None = None
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

    def switch_off_integration(self, client_id: str) -> None:
        """An administrator switches the integration off: its tokens stop working (then Kommo calls
        the uninstall hook). Long-lived tokens added with `add_token` end too."""
        with self._lock:
            self.oauth.revoke_client(client_id)
            self._tokens.clear()

    def fail_next(
        self,
        status: int,
        *,
        count: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next `count` matching requests with `status` (e.g. 403, 429, 500 or 504).

        By default the next authenticated API requests match; `token` narrows it to one
        caller, `path` (a prefix, e.g. "/oauth2/access_token") to other paths.
        """
        if body is None:
            body = Problem(status, "Injected failure", f"the stand-in was told to answer {status}").body
        with self._lock:
            self._failures.extend(
                _Failure(Response(status, body, dict(headers or {})), token, path) for _ in range(count)
            )

    @property
    def pending_failures(self) -> int:
        """How many answers told by `fail_next` no request has taken yet."""
        with self._lock:
            return len(self._failures)

    def ban(self, seconds: float | None = None, address: str = "127.0.0.1") -> None:
        """Ban an address now, as Kommo does after repeated 429s (`limits.ban_seconds` by default)."""
        with self._lock:
            self.limits.ban(address, self.clock.timestamp(), seconds)

    def register_integration(self, client_id: str, client_secret: str, redirect_uri: str) -> None:
        """Let an integration (our client id and secret) use the token endpoint."""
        with self._lock:
            self.oauth.register(client_id, client_secret, redirect_uri)

    def issue_code(self, client_id: str, user_id: int | None = None) -> str:
        """The authorization code Kommo puts in the install redirect (valid 20 minutes, once)."""
        with self._lock:
            return self.oauth.issue_code(client_id, self.clock.timestamp(), user_id)

    @property
    def token_calls(self) -> list[TokenCall]:
        """Every call of `POST /oauth2/access_token`, in order."""
        with self._lock:
            return list(self.oauth.calls)

    @property
    def refresh_token(self) -> str | None:
        """The one refresh token the token endpoint accepts now."""
        with self._lock:
            return self.oauth.newest_refresh_token()

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

    @property
    def salesbot_continues(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._salesbot_continues)

    def remove_entity(self, entity_type: str, entity_id: int) -> None:
        """Delete an entity as a user does in Kommo's interface (the API then answers 204 for it)."""
        with self._lock:
            self._entities[entity_type].pop(entity_id, None)

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

    def dispatch(
        self,
        method: str,
        target: str,
        authorization: str | None,
        raw_body: bytes,
        content_type: str = "application/json",
        address: str = "127.0.0.1",
    ) -> Response:
        """Answer one HTTP request from `address`; the server calls this, and tests may call it directly."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        if path.startswith("/_standin/"):
            return self._standin_view(method, path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        with self._lock:
            now = self.clock.timestamp()
            if self.limits.banned(address, now):
                response = ban_page()
            elif path == "/oauth2/access_token":
                response = self._token_endpoint(method, path, raw_body, content_type, now)
            else:
                response = self._api(method, path, query, authorization, raw_body, now, address)
            self._requests.append(RequestRecord(method, path, parts.query, response.status, now))
            return response

    def _injected(self, path: str, token: str | None) -> Response | None:
        for n, failure in enumerate(self._failures):
            if failure.matches(path, token):
                del self._failures[n]
                return failure.response
        return None

    def _token_endpoint(self, method: str, path: str, raw: bytes, content_type: str, now: float) -> Response:
        if method != "POST":
            return Response(
                405, Problem(405, "Method Not Allowed", f"{method} is not allowed on {path}").body
            )
        injected = self._injected(path, None)
        if injected is not None:
            return injected
        status, body = self.oauth.token_endpoint(raw, content_type, now)
        return Response(status, body)

    def _api(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        authorization: str | None,
        raw_body: bytes,
        now: float,
        address: str,
    ) -> Response:
        try:
            token, user_id = self._authenticate(authorization, now)
            limited = self.limits.take(address, now)
            if limited is not None:
                return limited
            injected = self._injected(path, token)
            if injected is not None:
                return injected
            body = self._parse_body(method, raw_body)
            req = _Request(method, path, query, body, user_id)
            self._gateway_timeout(req)
            response = self._route(req)
            if method != "GET" and 200 <= response.status < 300:
                self._changes.append(Change(method, path, copy.deepcopy(body), now))
            return response
        except Problem as problem:
            return Response(problem.status, problem.body)

    def _gateway_timeout(self, req: _Request) -> None:
        """Kommo's gateway gives up (504) on batches that are too big for it."""
        limit = self.gateway_timeout_over
        if limit is None:
            return
        size = len(req.filter_values("id") or []) if req.method == "GET" else 0
        if isinstance(req.body, list):
            size = len(req.body)
        if size > limit:
            raise Problem(504, "Gateway Timeout", f"{size} entities in one request took too long")

    def _standin_view(self, method: str, path: str) -> Response:
        if method != "GET":
            return Response(405, Problem(405, "Method Not Allowed", "the stand-in views are read-only").body)
        if path == "/_standin/state":
            return Response(200, self.state())
        if path == "/_standin/changes":
            return Response(200, [c.to_json() for c in self.changes])
        return Response(404, Problem(404, "Not Found", f"no stand-in view at {path}").body)

    def _authenticate(self, authorization: str | None, now: float) -> tuple[str, int]:
        """(token, user id) of the request's bearer token; 401 when it is unknown or expired."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token in self._tokens:
            return token, self._tokens[token]
        issued = self.oauth.access_tokens.get(token) if scheme.lower() == "bearer" else None
        if issued is None or now >= issued.expires_at:
            raise Problem(401, "Unauthorized", "Unauthorized")
        return token, issued.user_id

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
    def _reject_other_filters(req: _Request, allowed: set[str], orders: frozenset[str] = frozenset()) -> None:
        for key, value in req.query:
            m = re.match(r"(filter|order)\[([^\]]*)\]", key)
            if not m:
                continue
            if m.group(1) == "order" and m.group(2) in orders:
                if value not in ("asc", "desc") or key != f"order[{m.group(2)}]":
                    raise Problem(400, "Bad Request", f"{key} takes asc or desc")
                continue
            if not (m.group(1) == "filter" and m.group(2) in allowed):
                raise _not_implemented(f"the query parameter {key}")

    @staticmethod
    def _ints(values: list[str] | None, name: str) -> set[int] | None:
        if values is None:
            return None
        try:
            return {int(v) for v in values}
        except ValueError as exc:
            raise Problem(400, "Bad Request", f"filter[{name}] takes ids") from exc

    @staticmethod
    def _statuses(req: _Request) -> set[tuple[int, int]] | None:
        """`filter[statuses][n][pipeline_id]` and `filter[statuses][n][status_id]`, both required
        for each n (amoCRM's filters-api page)."""
        pairs: dict[str, dict[str, str]] = {}
        for key, value in req.query:
            m = re.fullmatch(r"filter\[statuses\]\[(\d+)\]\[(pipeline_id|status_id)\]", key)
            if m:
                pairs.setdefault(m.group(1), {})[m.group(2)] = value
            elif key.startswith("filter[statuses]"):
                raise Problem(
                    400, "Bad Request", f"{key}: statuses are filter[statuses][n][pipeline_id|status_id]"
                )
        if not pairs:
            return None
        out: set[tuple[int, int]] = set()
        for n, pair in pairs.items():
            if set(pair) != {"pipeline_id", "status_id"}:
                raise Problem(
                    400, "Bad Request", f"filter[statuses][{n}] needs both pipeline_id and status_id"
                )
            try:
                out.add((int(pair["pipeline_id"]), int(pair["status_id"])))
            except ValueError as exc:
                raise Problem(400, "Bad Request", "filter[statuses] takes ids") from exc
        return out

    def _list_entities(self, req: _Request, etype: str) -> Response:
        """A list of leads, contacts or companies, with the filters Kommo documents for it
        (amoCRM's filters-api page): `filter[id]` for all; `filter[responsible_user_id]` for all;
        `filter[statuses][n][pipeline_id|status_id]` and `filter[pipeline_id]` for leads only
        (Kommo documents no filter by tag); `order[id]=asc|desc` (ascending ids by default)."""
        allowed = {"id", "responsible_user_id"} | ({"statuses", "pipeline_id"} if etype == "leads" else set())
        self._reject_other_filters(req, allowed, orders=frozenset({"id"}))
        wanted = self._ints(req.filter_values("id"), "id")
        users = self._ints(req.filter_values("responsible_user_id"), "responsible_user_id")
        pipelines = self._ints(req.filter_values("pipeline_id"), "pipeline_id")
        statuses = self._statuses(req) if etype == "leads" else None
        items = self._sorted(etype)
        if wanted is not None:
            items = [e for e in items if e["id"] in wanted]
        if users is not None:
            items = [e for e in items if e.get("responsible_user_id") in users]
        if pipelines is not None:
            items = [e for e in items if e.get("pipeline_id") in pipelines]
        if statuses is not None:
            items = [e for e in items if (e.get("pipeline_id"), e.get("status_id")) in statuses]
        if req.param("order[id]") == "desc":
            items.reverse()
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

    def _continue_salesbot(self, req: _Request, bot_id: str, continue_id: str) -> Response:
        """`POST /api/v4/salesbot/{bot}/continue/{id}`: administrators only; 202, no body.

        The body is `{"data": {...}, "execute_handlers": [...]}` (at most 10 handlers). A
        continue id is used once; a second call answers 404, as the bot no longer waits there.
        """
        self._require_admin(req)
        body = req.body
        if not isinstance(body, dict) or not isinstance(body.get("data", {}), dict):
            raise Problem(400, "Bad Request", "the body must be an object whose data is an object")
        handlers = body.get("execute_handlers", [])
        if not isinstance(handlers, list) or len(handlers) > 10:
            raise Problem(400, "Bad Request", "execute_handlers must be a list of at most 10 handlers")
        if any(c["continue_id"] == continue_id for c in self._salesbot_continues):
            raise Problem(404, "Not Found", f"the bot does not wait at {continue_id}")
        self._salesbot_continues.append(
            {"bot_id": int(bot_id), "continue_id": continue_id, "user_id": req.user_id, "body": body}
        )
        return Response(202)

    def _get_task(self, req: _Request, id: str) -> Response:
        task = next((t for t in self._tasks if t["id"] == int(id)), None)
        if task is None:
            return Response(204)
        return Response(200, {**copy.deepcopy(task), "_links": self._links(f"/api/v4/tasks/{task['id']}")})


class _Handler(BaseHTTPRequestHandler):
    standin: KommoStandIn
    server_version = "KommoStandIn/1.0"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        response = self.standin.dispatch(
            self.command,
            self.path,
            self.headers.get("Authorization"),
            raw,
            self.headers.get("Content-Type") or "",
            address=str(self.client_address[0]),
        )
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() != "content-type":
                self.send_header(name, value)
        if response.status == 204 or response.body is None:
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if isinstance(response.body, str):  # a page as it is (nginx's ban), not JSON
            data = response.body.encode("utf-8")
            kind = response.headers.get("Content-Type", "text/html")
        else:
            data = json.dumps(response.body, ensure_ascii=False).encode("utf-8")
            kind = "application/problem+json" if response.status >= 400 else "application/hal+json"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log lives in `KommoStandIn.requests`."""
