"""The host page's HTTP server on 127.0.0.1 (see the package docstring and docs/widget.md).

    host = WidgetHost()                       # binds a free port at once: its origin is known
    stack = DevStack(extra_env={"MAILER_EXTRA_CORS_ORIGINS": host.origin, ...}).start()
    host.attach(api_url=stack.api_url, kommo=standin, mint_token=lambda user_id: ...)
    host.start()
    print(host.url)

Pages (one per Kommo area, paths shaped like Kommo's own where they are known):
`/leads/detail/<id>`, `/contacts/detail/<id>`, `/companies/detail/<id>` (cards),
`/leads/list/`, `/contacts/list/` (lists), `/settings/widgets/` (the widget's settings modal),
`/settings/widgets/<code>/` (advanced settings), `/settings/pipeline/leads/<pipeline>/` (the
digital pipeline), `/salesbot/designer/` (the Salesbot designer); `?lang=ru` chooses the
language, `?user=admin|manager` the user (the settings areas default to the administrator).

Files: `/upl/<code>/widget/<file>` the widget's files, read from the built archive itself;
`/vendor/<name>.js` the vendored libraries; `/host/<file>` the page's own script and style.

Local-only endpoints (the page calls them; nothing like them exists in Kommo):
`POST /_host/token {user_id}` a fresh widget token (HS256, as Kommo's `$authorizedAjax` sends);
`POST /_host/settings` the settings modal's saved fields; `POST /_host/dp` a pipeline action's
saved settings; `POST /_host/dp/run {lead_id, status_id}` Kommo's post to the pipeline hook
with them; `POST /_host/salesbot` the bot's saved steps; `POST /_host/crm_post` the
`crm_post` proxy (to 127.0.0.1 only); `GET /_host/state` what the host keeps, as JSON.
"""

from __future__ import annotations

import html
import json
import logging
import mimetypes
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from devstack.kommo_standin import seed as kommo_seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.pipeline_post import dp_form_body, post_form

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parent
REPOSITORY = PACKAGE.parents[1]
DEFAULT_ARCHIVE = REPOSITORY / "build" / "widget" / "widget.zip"
STATIC = PACKAGE / "static"
NODE_MODULES = PACKAGE / "node_modules"
# The code Kommo gives a widget on upload; the archive's manifest may name its own.
DEFAULT_WIDGET_CODE = "mailer_local"
# /vendor/<name>.js → the file in node_modules (package.json pins the versions Kommo's page
# provides, per the reference notes: jQuery 2.1.3, underscore 1.9.1, moment 2.24.0).
VENDOR_FILES = {
    "require": "requirejs/require.js",
    "jquery": "jquery/dist/jquery.js",
    "underscore": "underscore/underscore.js",
    "moment": "moment/moment.js",
    "text": "requirejs-text/text.js",
    "twig": "twig/twig.js",
}
ADMIN_AREAS = frozenset({"settings", "advanced_settings", "digital_pipeline", "salesbot_designer"})
CARD_ENTITIES = {"leads": "lcard", "contacts": "ccard", "companies": "comcard"}
LIST_ENTITIES = {"leads": "llist", "contacts": "clist"}
MintToken = Callable[[int], str]


def _emails_and_phones(entity: dict[str, Any]) -> tuple[list[str], list[str]]:
    emails: list[str] = []
    phones: list[str] = []
    for field in entity.get("custom_fields_values") or []:
        target = {"EMAIL": emails, "PHONE": phones}.get(str(field.get("field_code")))
        if target is not None:
            target.extend(str(v["value"]) for v in field.get("values") or [] if v.get("value"))
    return emails, phones


def _person(contact: dict[str, Any]) -> dict[str, Any]:
    """A contact as `get_current_card_contacts_data()` gives it (reference §3)."""
    emails, phones = _emails_and_phones(contact)
    return {
        "id": contact["id"],
        "name": contact.get("name", ""),
        "first_name": contact.get("first_name", ""),
        "last_name": contact.get("last_name", ""),
        "emails": emails,
        "phones": phones,
    }


class WidgetArchive:
    """The built widget, read from its zip on every request (a rebuild shows at the next reload)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing(self) -> str | None:
        if not self.path.is_file():
            return f"{self.path} does not exist: run `make widget`"
        try:
            with zipfile.ZipFile(self.path) as archive:
                if "manifest.json" not in archive.namelist():
                    return f"{self.path} has no manifest.json at its root"
        except zipfile.BadZipFile as error:
            return f"{self.path} is not a zip archive ({error})"
        return None

    def read(self, name: str) -> bytes | None:
        if self.missing() is not None:
            return None
        with zipfile.ZipFile(self.path) as archive:
            try:
                return archive.read(name)
            except KeyError:
                return None

    def manifest(self) -> dict[str, Any] | None:
        raw = self.read("manifest.json")
        return json.loads(raw.decode("utf-8")) if raw is not None else None


class WidgetHost:
    """The host page's server; binds on construction, serves after `attach` and `start`."""

    def __init__(
        self,
        *,
        archive: Path = DEFAULT_ARCHIVE,
        node_modules: Path = NODE_MODULES,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.archive = WidgetArchive(archive)
        self.node_modules = node_modules
        handler = type("_BoundHandler", (_Handler,), {"host": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.api_url = ""
        self.sink_url = ""
        self.kommo: KommoStandIn | None = None
        self._mint: MintToken | None = None
        # What Kommo would keep for the account: the settings modal's fields, the pipeline
        # actions' settings per stage, the Salesbot's saved steps, and every pipeline post made.
        self.widget_settings: dict[str, Any] = {}
        self.dp_actions: dict[int, dict[str, Any]] = {}
        self.dp_posts: list[dict[str, Any]] = []
        self.salesbot: dict[str, Any] = {}
        self.tokens_minted = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        return self.origin + "/"

    def attach(self, *, api_url: str, kommo: KommoStandIn, mint_token: MintToken, sink_url: str = "") -> None:
        self.api_url = api_url.rstrip("/")
        self.kommo = kommo
        self._mint = mint_token
        self.sink_url = sink_url
        self.widget_settings.setdefault("api_url", self.api_url)

    def start(self) -> WidgetHost:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="widget-host", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def vendor_missing(self) -> str | None:
        for relative in VENDOR_FILES.values():
            if not (self.node_modules / relative).is_file():
                return f"{self.node_modules / relative} is missing: run `make host-vendor`"
        return None

    # -- what the page shows -------------------------------------------------------------------

    def widget_code(self, manifest: dict[str, Any] | None) -> str:
        code = ((manifest or {}).get("widget") or {}).get("code")
        return str(code) if code else DEFAULT_WIDGET_CODE

    def context(
        self, area: str, *, entity: str = "", entity_id: int = 0, lang: str = "en", user: str = ""
    ) -> dict[str, Any]:
        """Everything the page's script needs for one area, embedded in the page as JSON."""
        if self.kommo is None:
            raise RuntimeError("the host is not attached to a stack")
        state = self.kommo.state()
        manifest = self.archive.manifest()
        code = self.widget_code(manifest)
        version = str(((manifest or {}).get("widget") or {}).get("version", "0"))
        if user not in ("admin", "manager"):
            user = "admin" if area in ADMIN_AREAS else "manager"
        user_id = kommo_seed.ADMIN_USER_ID if user == "admin" else kommo_seed.MANAGER_USER_ID
        users = [
            {"id": u["id"], "name": u["name"], "login": u["email"], "is_admin": u["rights"]["is_admin"]}
            for u in state["users"]
        ]
        pipeline = state["pipelines"][0]
        statuses = [
            {"id": s["id"], "name": s["name"], "color": s["color"]} for s in pipeline["_embedded"]["statuses"]
        ]
        with self._lock:
            context: dict[str, Any] = {
                "area": area,
                "lang": lang,
                "user": next(u for u in users if u["id"] == user_id),
                "user_key": user,
                "users": users,
                "account": {
                    "id": state["account"]["id"],
                    "name": state["account"]["name"],
                    "subdomain": state["account"]["subdomain"],
                    "currency": state["account"].get("currency"),
                },
                "api_url": self.api_url,
                "sink_url": self.sink_url,
                "standin_url": self.kommo.base_url,
                "widget": {
                    "code": code,
                    "version": version,
                    "path": f"/upl/{code}/widget",
                    "manifest": manifest,
                    "missing": self.archive.missing(),
                    "settings": dict(self.widget_settings),
                },
                "vendor_missing": self.vendor_missing(),
                "pipeline": {
                    "id": pipeline["id"],
                    "name": pipeline["name"],
                    "statuses": statuses,
                    "actions": {str(k): v for k, v in self.dp_actions.items()},
                    "posts": list(self.dp_posts),
                },
                "salesbot": dict(self.salesbot),
                "custom_fields": {},
            }
        leads = {lead["id"]: lead for lead in state["leads"]}
        contacts = {c["id"]: c for c in state["contacts"]}
        companies = {c["id"]: c for c in state["companies"]}
        context["leads_brief"] = [{"id": lead["id"], "name": lead["name"]} for lead in state["leads"]]
        if entity and entity_id:
            context["card"] = self._card(entity, entity_id, leads, contacts, companies, statuses)
        if area in ("llist", "clist"):
            context["list"] = self._list(entity, leads, contacts, statuses)
        return context

    @staticmethod
    def _card(
        entity: str,
        entity_id: int,
        leads: dict[int, Any],
        contacts: dict[int, Any],
        companies: dict[int, Any],
        statuses: list[dict[str, Any]],
    ) -> dict[str, Any] | None:
        source = {"leads": leads, "contacts": contacts, "companies": companies}[entity]
        found = source.get(entity_id)
        if found is None:
            return None
        embedded = found.get("_embedded") or {}
        if entity == "leads":
            people = [contacts[c["id"]] for c in embedded.get("contacts") or [] if c["id"] in contacts]
        elif entity == "contacts":
            people = [found]
        else:
            people = [
                c
                for c in contacts.values()
                if entity_id in {x["id"] for x in (c.get("_embedded") or {}).get("companies") or []}
            ]
        emails, phones = _emails_and_phones(found)
        status = next((s["name"] for s in statuses if s["id"] == found.get("status_id")), "")
        fields = [
            {
                "id": f["field_id"],
                "name": f["field_name"],
                "code": f.get("field_code"),
                "values": [v.get("value") for v in f.get("values") or []],
            }
            for f in found.get("custom_fields_values") or []
        ]
        return {
            "entity": entity,
            "id": entity_id,
            "name": found.get("name", ""),
            "price": found.get("price"),
            "status": status,
            "fields": fields,
            "emails": emails,
            "phones": phones,
            "contacts": [_person(c) for c in people],
            "companies": [
                {"id": c["id"], "name": companies[c["id"]]["name"]}
                for c in embedded.get("companies") or []
                if c["id"] in companies
            ],
        }

    @staticmethod
    def _list(
        entity: str, leads: dict[int, Any], contacts: dict[int, Any], statuses: list[dict[str, Any]]
    ) -> dict[str, Any]:
        names = {s["id"]: s["name"] for s in statuses}
        rows: list[dict[str, Any]] = []
        if entity == "leads":
            for lead in leads.values():
                linked = [
                    contacts[c["id"]]
                    for c in (lead.get("_embedded") or {}).get("contacts") or []
                    if c["id"] in contacts
                ]
                emails = [e for c in linked for e in _emails_and_phones(c)[0]]
                phones = [p for c in linked for p in _emails_and_phones(c)[1]]
                rows.append(
                    {
                        "id": lead["id"],
                        "type": "lead",
                        "name": lead["name"],
                        "status": names.get(lead.get("status_id"), ""),
                        "price": lead.get("price"),
                        "contact": linked[0]["name"] if linked else "",
                        "emails": emails,
                        "phones": phones,
                    }
                )
        else:
            for contact in contacts.values():
                emails, phones = _emails_and_phones(contact)
                rows.append(
                    {
                        "id": contact["id"],
                        "type": "contact",
                        "name": contact["name"],
                        "status": "",
                        "price": None,
                        "contact": "",
                        "emails": emails,
                        "phones": phones,
                    }
                )
        return {"entity": entity, "rows": rows}

    # -- local-only actions ----------------------------------------------------------------------

    def mint(self, user_id: int) -> str:
        if self._mint is None:
            raise RuntimeError("the host is not attached to a stack")
        if user_id not in (kommo_seed.ADMIN_USER_ID, kommo_seed.MANAGER_USER_ID):
            raise ValueError(f"no demo user {user_id}")
        with self._lock:
            self.tokens_minted += 1
        return self._mint(user_id)

    def save_settings(self, fields: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.widget_settings.update({str(k): v for k, v in fields.items()})
            return dict(self.widget_settings)

    def save_dp_action(self, status_id: int, settings: dict[str, Any]) -> None:
        with self._lock:
            self.dp_actions[status_id] = {str(k): "" if v is None else str(v) for k, v in settings.items()}

    def run_dp(self, lead_id: int, status_id: int) -> dict[str, Any]:
        """Kommo's post when a lead reaches the stage: the form to the webhook (here the stack's)."""
        with self._lock:
            settings = dict(self.dp_actions.get(status_id) or {})
        if not settings:
            return {"status": 0, "body": {"error": "no widget action on this stage"}, "settings": {}}
        template_id = settings.pop("template_id", "")
        secret = settings.pop("secret", "")
        body = dp_form_body(
            account_id=kommo_seed.ACCOUNT_ID,
            subdomain=kommo_seed.SUBDOMAIN,
            secret=secret,
            lead_id=lead_id,
            pipeline_id=kommo_seed.PIPELINE_ID,
            status_id=status_id,
            template_id=template_id,
            settings=settings,
        )
        status, answer = post_form(f"{self.api_url}/hooks/kommo/dp", body)
        record = {
            "lead_id": lead_id,
            "status_id": status_id,
            "settings": {"template_id": template_id, **settings},
            "status": status,
            "body": answer,
        }
        with self._lock:
            self.dp_posts.append(record)
        return record

    def save_salesbot(self, saved: dict[str, Any]) -> None:
        with self._lock:
            self.salesbot = dict(saved)

    @staticmethod
    def crm_post(url: str, data: dict[str, Any]) -> tuple[int, str, bytes]:
        """Kommo's proxy for `crm_post`: a form POST made by the server, here to 127.0.0.1 only."""
        host = urlsplit(url).hostname or ""
        if host not in ("127.0.0.1", "localhost"):
            return 403, "application/json", b'{"error":"the local host proxies to 127.0.0.1 only"}'
        request = urllib.request.Request(url, data=urlencode(data).encode(), method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, response.headers.get("Content-Type", ""), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers.get("Content-Type", ""), error.read()

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "widget_settings": dict(self.widget_settings),
                "dp_actions": {str(k): v for k, v in self.dp_actions.items()},
                "dp_posts": list(self.dp_posts),
                "salesbot": dict(self.salesbot),
                "tokens_minted": self.tokens_minted,
            }


def _route(path: str) -> tuple[str, str, int] | None:
    """(area, entity, id) of a page path; None when it is no page."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return ("index", "", 0)
    if len(parts) == 3 and parts[0] in CARD_ENTITIES and parts[1] == "detail" and parts[2].isdigit():
        return (CARD_ENTITIES[parts[0]], parts[0], int(parts[2]))
    if len(parts) == 2 and parts[0] in LIST_ENTITIES and parts[1] == "list":
        return (LIST_ENTITIES[parts[0]], parts[0], 0)
    if parts == ["settings", "widgets"]:
        return ("settings", "", 0)
    if len(parts) == 3 and parts[:2] == ["settings", "widgets"]:
        return ("advanced_settings", "", 0)
    if len(parts) == 4 and parts[:3] == ["settings", "pipeline", "leads"] and parts[3].isdigit():
        return ("digital_pipeline", "leads", 0)
    if parts == ["salesbot", "designer"]:
        return ("salesbot_designer", "", 0)
    return None


def page_html(context: dict[str, Any], notes: str) -> str:
    data = json.dumps(context, ensure_ascii=False).replace("</", "<\\/")
    lang = html.escape(str(context["lang"]))
    return f"""<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<title>Mailer · Kommo host (local)</title>
<link rel="stylesheet" href="/host/host.css">
</head>
<body class="host host-area-{html.escape(context["area"])}">
<div id="host-root"></div>
<details id="host-notes" class="host-notes">
<summary>Host notes: what this page imitates, what is unknown</summary>{notes}</details>
<script>window.HOST_CONTEXT = {data};</script>
<script src="/vendor/require.js"></script>
<script src="/host/host.js"></script>
</body>
</html>
"""


class _Handler(BaseHTTPRequestHandler):
    host: WidgetHost
    server_version = "MailerKommoHost/1.0"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        target = urlsplit(self.path)
        path = target.path
        query = {k: v[-1] for k, v in parse_qs(target.query).items()}
        if path.startswith("/upl/"):
            self._widget_file(path)
        elif path.startswith("/vendor/"):
            self._vendor_file(path)
        elif path.startswith("/host/"):
            self._static_file(path.removeprefix("/host/"))
        elif path == "/_host/state":
            self._json(200, self.host.state())
        elif path == "/favicon.ico":
            self._send(204, "image/x-icon", b"")
        else:
            page = _route(path)
            if page is None:
                self._send(404, "text/plain; charset=utf-8", b"no such page on the local Kommo host")
                return
            area, entity, entity_id = page
            lang = query.get("lang", "")
            context = self.host.context(
                area, entity=entity, entity_id=entity_id, lang=lang, user=query.get("user", "")
            )
            notes = (STATIC / "notes.html").read_text(encoding="utf-8")
            self._send(200, "text/html; charset=utf-8", page_html(context, notes).encode("utf-8"))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        except ValueError:
            self._json(400, {"error": "the body is not JSON"})
            return
        if not isinstance(body, dict):
            self._json(400, {"error": "the body is not a JSON object"})
            return
        try:
            if path == "/_host/token":
                self._json(
                    200, {"token": self.host.mint(int(body.get("user_id") or kommo_seed.MANAGER_USER_ID))}
                )
            elif path == "/_host/settings":
                self._json(200, {"settings": self.host.save_settings(dict(body.get("fields") or {}))})
            elif path == "/_host/dp":
                self.host.save_dp_action(int(body["status_id"]), dict(body.get("settings") or {}))
                self._json(200, {"saved": True})
            elif path == "/_host/dp/run":
                self._json(200, self.host.run_dp(int(body["lead_id"]), int(body["status_id"])))
            elif path == "/_host/salesbot":
                self.host.save_salesbot(body)
                self._json(200, {"saved": True})
            elif path == "/_host/crm_post":
                status, content_type, raw = self.host.crm_post(
                    str(body.get("url", "")), dict(body.get("data") or {})
                )
                self._send(status, content_type or "application/octet-stream", raw)
            else:
                self._json(404, {"error": "no such endpoint"})
        except (KeyError, TypeError, ValueError) as error:
            self._json(400, {"error": str(error)})

    def _widget_file(self, path: str) -> None:
        parts = path.split("/", 4)  # "", "upl", code, "widget", file
        if len(parts) != 5 or parts[3] != "widget" or not parts[4] or ".." in parts[4].split("/"):
            self._send(404, "text/plain; charset=utf-8", b"not found")
            return
        data = self.host.archive.read(parts[4])
        if data is None:
            self._send(404, "text/plain; charset=utf-8", f"{parts[4]} is not in the archive".encode())
            return
        self._send(200, _content_type(parts[4]), data)

    def _vendor_file(self, path: str) -> None:
        name = path.removeprefix("/vendor/").removesuffix(".js")
        relative = VENDOR_FILES.get(name)
        file = self.host.node_modules / relative if relative else None
        if file is None or not file.is_file():
            self._send(404, "text/plain; charset=utf-8", b"not vendored: run `make host-vendor`")
            return
        self._send(200, "text/javascript; charset=utf-8", file.read_bytes())

    def _static_file(self, name: str) -> None:
        file = STATIC / name
        if "/" in name or not file.is_file():
            self._send(404, "text/plain; charset=utf-8", b"not found")
            return
        self._send(200, _content_type(name), file.read_bytes())

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, "application/json", json.dumps(payload, ensure_ascii=False).encode("utf-8"))

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


def _content_type(name: str) -> str:
    if name.endswith((".twig", ".html")):
        return "text/html; charset=utf-8" if name.endswith(".html") else "text/plain; charset=utf-8"
    if name.endswith(".js"):
        return "text/javascript; charset=utf-8"
    if name.endswith(".json"):
        return "application/json; charset=utf-8"
    if name.endswith(".css"):
        return "text/css; charset=utf-8"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"
