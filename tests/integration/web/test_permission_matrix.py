"""Every /v1 route, asked by each kind of caller, answers as the access rules say.

The routes come from infra/template.yaml, so a new route is checked at once: the generic rules
(a user the settings do not allow, an account switched off) run on it without more ado, and
the matrix test fails until the route's expected answers are written into `EXPECTED` below.

The callers, in account A whose settings allow USER and name ADMIN a Mailer administrator:
- admin: a Mailer administrator (in admin_user_ids; Kommo does not call them an admin);
- user: an allowed user who owns the resources the id routes name;
- other: an administrator of another Kommo account, asking for A's ids.
Each (route, caller) pair gets fresh resources, so a DELETE by one caller leaves the next one
something to find.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from mailer_core.kommo_hooks import uninstall as account_lifecycle
from mailer_core.messages import suppressions
from mailer_core.store import message_state as state
from mailer_core.store.models import MessageModel

from devstack.resources import StackResources
from tests.support.api_client import ApiClient, Reply
from tests.support.constants import TEST_AUDIENCE, TEST_SECRET
from tests.support.routes import template_routes

ACCOUNT, OTHER_ACCOUNT = 31000001, 42000002
OWNER, ADMIN, USER, NOT_ALLOWED, OTHER = 500, 501, 502, 503, 900

Route = tuple[str, str]
V1_ROUTES = sorted(r for r in template_routes() if r[1].startswith("/v1/") and r[0] != "OPTIONS")

# method, path -> what each caller gets: "<status>", "<status> <reason or field>" (403: the
# reason; 422: the field), or "<status> sees <resource>" (the body shows that resource of A's).
EXPECTED: dict[Route, dict[str, str]] = {
    ("GET", "/v1/me"): {"admin": "200", "user": "200", "other": "200"},
    ("GET", "/v1/settings"): {"admin": "200", "user": "200", "other": "200"},
    ("PATCH", "/v1/settings"): {"admin": "200", "user": "403 admin_only", "other": "200"},
    ("GET", "/v1/mailboxes"): {"admin": "200 sees mailbox", "user": "200 sees mailbox", "other": "200"},
    ("POST", "/v1/mailboxes"): {"admin": "201", "user": "201", "other": "201"},
    ("GET", "/v1/mailboxes/presets"): {"admin": "200", "user": "200", "other": "200"},
    ("GET", "/v1/mailboxes/{mailbox_id}"): {
        "admin": "200 sees mailbox",
        "user": "200 sees mailbox",
        "other": "404",
    },
    ("PATCH", "/v1/mailboxes/{mailbox_id}"): {"admin": "200", "user": "200", "other": "404"},
    ("DELETE", "/v1/mailboxes/{mailbox_id}"): {"admin": "204", "user": "204", "other": "404"},
    ("POST", "/v1/mailboxes/{mailbox_id}/check"): {"admin": "200", "user": "200", "other": "404"},
    ("GET", "/v1/suppressions"): {"admin": "200 sees address", "user": "200 sees address", "other": "200"},
    ("GET", "/v1/suppressions/{address}"): {
        "admin": "200 sees address",
        "user": "200 sees address",
        "other": "404",
    },
    ("DELETE", "/v1/suppressions/{address}"): {"admin": "204", "user": "403 admin_only", "other": "404"},
    ("GET", "/v1/messages"): {"admin": "200 sees message", "user": "200 sees message", "other": "200"},
    ("POST", "/v1/messages"): {"admin": "202", "user": "202", "other": "422 mailbox_id"},
    ("GET", "/v1/messages/{message_id}"): {
        "admin": "200 sees message",
        "user": "200 sees message",
        "other": "404",
    },
    # a queued message: only a scheduled one is changed or deleted (docs/letters.md)
    ("PATCH", "/v1/messages/{message_id}"): {"admin": "409", "user": "409", "other": "404"},
    ("DELETE", "/v1/messages/{message_id}"): {"admin": "409", "user": "409", "other": "404"},
    ("GET", "/v1/messages/{message_id}/body"): {
        "admin": "200 sees message",
        "user": "200 sees message",
        "other": "404",
    },
    ("GET", "/v1/drafts"): {"admin": "200 sees draft", "user": "200 sees draft", "other": "200"},
    ("POST", "/v1/drafts"): {"admin": "201", "user": "201", "other": "201"},
    ("GET", "/v1/drafts/{draft_id}"): {"admin": "200 sees draft", "user": "200 sees draft", "other": "404"},
    ("PUT", "/v1/drafts/{draft_id}"): {"admin": "200", "user": "200", "other": "404"},
    ("DELETE", "/v1/drafts/{draft_id}"): {"admin": "204", "user": "204", "other": "404"},
    ("POST", "/v1/drafts/{draft_id}/send"): {"admin": "202", "user": "202", "other": "404"},
    ("GET", "/v1/preferences"): {"admin": "200", "user": "200", "other": "200"},
    ("PATCH", "/v1/preferences"): {"admin": "200", "user": "200", "other": "200"},
    ("GET", "/v1/variables"): {"admin": "200", "user": "200", "other": "200"},
    ("POST", "/v1/messages/{message_id}/cancel"): {"admin": "200", "user": "200", "other": "404"},
    ("POST", "/v1/messages/{message_id}/retry"): {"admin": "202", "user": "202", "other": "404"},
    ("POST", "/v1/messages/preview"): {"admin": "200", "user": "200", "other": "422 mailbox_id"},
    ("GET", "/v1/templates"): {"admin": "200 sees template", "user": "200 sees template", "other": "200"},
    ("POST", "/v1/templates"): {"admin": "201", "user": "201", "other": "201"},
    ("GET", "/v1/templates/{template_id}"): {
        "admin": "200 sees template",
        "user": "200 sees template",
        "other": "404",
    },
    ("GET", "/v1/templates/{template_id}/stats"): {
        "admin": "200 sees template",
        "user": "200 sees template",
        "other": "404",
    },
    ("PATCH", "/v1/templates/{template_id}"): {"admin": "200", "user": "200", "other": "404"},
    ("DELETE", "/v1/templates/{template_id}"): {"admin": "204", "user": "204", "other": "404"},
    ("POST", "/v1/uploads"): {"admin": "201", "user": "201", "other": "201"},
    # Triggers: every user reads them, administrators set them up.
    ("GET", "/v1/triggers"): {"admin": "200 sees trigger", "user": "200 sees trigger", "other": "200"},
    ("POST", "/v1/triggers"): {"admin": "201", "user": "403 admin_only", "other": "201"},
    ("GET", "/v1/triggers/{trigger_id}"): {
        "admin": "200 sees trigger",
        "user": "200 sees trigger",
        "other": "404",
    },
    ("PATCH", "/v1/triggers/{trigger_id}"): {"admin": "200", "user": "403 admin_only", "other": "404"},
    ("DELETE", "/v1/triggers/{trigger_id}"): {"admin": "204", "user": "403 admin_only", "other": "404"},
    # The digital pipeline's settings hold the account's secret: administrators only. The other
    # account was never installed, so it has no secret to show.
    ("GET", "/v1/pipeline/settings"): {"admin": "200", "user": "403", "other": "409"},
    # Trigger links: the same rules as triggers.
    ("GET", "/v1/links"): {"admin": "200 sees link_name", "user": "200 sees link_name", "other": "200"},
    ("POST", "/v1/links"): {"admin": "201", "user": "403 admin_only", "other": "201"},
    ("GET", "/v1/links/{link_id}"): {
        "admin": "200 sees link_name",
        "user": "200 sees link_name",
        "other": "404",
    },
    ("PATCH", "/v1/links/{link_id}"): {"admin": "200", "user": "403 admin_only", "other": "404"},
    ("DELETE", "/v1/links/{link_id}"): {"admin": "204", "user": "403 admin_only", "other": "404"},
    # Target lists: the templates' rules (the owner and administrators; USER owns this one).
    ("GET", "/v1/target-lists"): {
        "admin": "200 sees list_name",
        "user": "200 sees list_name",
        "other": "200",
    },
    ("POST", "/v1/target-lists"): {"admin": "201", "user": "201", "other": "201"},
    ("GET", "/v1/target-lists/{list_id}"): {
        "admin": "200 sees list_name",
        "user": "200 sees list_name",
        "other": "404",
    },
    ("PATCH", "/v1/target-lists/{list_id}"): {"admin": "200", "user": "200", "other": "404"},
    ("DELETE", "/v1/target-lists/{list_id}"): {"admin": "204", "user": "204", "other": "404"},
    ("GET", "/v1/target-lists/{list_id}/members"): {
        "admin": "200 sees list_member",
        "user": "200 sees list_member",
        "other": "404",
    },
    ("POST", "/v1/target-lists/{list_id}/members"): {"admin": "200", "user": "200", "other": "404"},
    ("DELETE", "/v1/target-lists/{list_id}/members/{member}"): {
        "admin": "204",
        "user": "204",
        "other": "404",
    },
    ("POST", "/v1/target-lists/{list_id}/import"): {"admin": "200", "user": "200", "other": "404"},
    ("GET", "/v1/campaigns"): {
        "admin": "200 sees campaign_name",
        "user": "200 sees campaign_name",
        "other": "200",
    },
    ("POST", "/v1/campaigns"): {"admin": "201", "user": "201", "other": "422 mailbox_ids[0]"},
    ("GET", "/v1/campaigns/{campaign_id}"): {
        "admin": "200 sees campaign_name",
        "user": "200 sees campaign_name",
        "other": "404",
    },
    ("PATCH", "/v1/campaigns/{campaign_id}"): {"admin": "200", "user": "200", "other": "404"},
    ("DELETE", "/v1/campaigns/{campaign_id}"): {"admin": "204", "user": "204", "other": "404"},
    ("POST", "/v1/campaigns/{campaign_id}/copy"): {"admin": "201", "user": "201", "other": "404"},
    # Tracking is not configured here: a campaign cannot carry its unsubscribe link.
    ("POST", "/v1/campaigns/{campaign_id}/start"): {"admin": "409", "user": "409", "other": "404"},
    ("POST", "/v1/campaigns/{campaign_id}/pause"): {"admin": "409", "user": "409", "other": "404"},
    ("POST", "/v1/campaigns/{campaign_id}/resume"): {"admin": "409", "user": "409", "other": "404"},
    ("POST", "/v1/campaigns/{campaign_id}/cancel"): {"admin": "200", "user": "200", "other": "404"},
    ("POST", "/v1/campaigns/{campaign_id}/test"): {"admin": "202", "user": "202", "other": "404"},
    ("GET", "/v1/campaigns/{campaign_id}/log"): {"admin": "200", "user": "200", "other": "404"},
    ("GET", "/v1/campaigns/{campaign_id}/log.csv"): {"admin": "200", "user": "200", "other": "404"},
    ("GET", "/v1/campaigns/{campaign_id}/report"): {"admin": "200", "user": "200", "other": "404"},
    ("POST", "/v1/campaigns/{campaign_id}/target-list"): {"admin": "201", "user": "201", "other": "404"},
}
TRIGGER = {"name": "Note", "type": "note", "params": {"text": "Opened"}}
LINK = {"name": "Offer", "target": "https://example.com/offer"}

MAILBOX = {
    "sender_name": "Owner",
    "sender_email": "owner.mailbox@example.com",
    "smtp_host": "127.0.0.1",
    "smtp_port": 9,  # nothing listens: the check fails at once, the mailbox is stored anyway
    "smtp_security": "none",
    "smtp_password": "matrix-password",
}


@dataclass(frozen=True)
class World:
    """Account A's resources, owned by USER."""

    mailbox: str
    message: str  # queued
    failed: str
    template: str
    address: str  # suppressed
    trigger: str = ""  # made only for the routes of triggers
    link: str = ""  # … and of trigger links (numbered per account: its name tells it apart)
    link_name: str = ""
    target_list: str = ""  # made only for the routes of target lists, with one member
    list_name: str = ""
    list_member: str = ""
    campaign: str = ""  # made only for the routes of campaigns: a Draft to the target list
    campaign_name: str = ""
    draft: str = ""  # made only for the routes of drafts: one with recipients, ready to send

    def markers(self) -> list[str]:
        found = (
            self.mailbox,
            self.message,
            self.failed,
            self.template,
            self.address,
            self.trigger,
            self.link_name,
            self.list_name,
            self.list_member,
            self.campaign_name,
            self.draft,
        )
        return [m for m in found if m]


def client(account_id: int, user_id: int, *, kommo_admin: bool = False) -> ApiClient:
    return ApiClient(
        secret=TEST_SECRET,
        audience=TEST_AUDIENCE,
        account_id=account_id,
        user_id=user_id,
        is_admin=kommo_admin,
    )


CALLERS = {
    "admin": lambda: client(ACCOUNT, ADMIN),
    "user": lambda: client(ACCOUNT, USER),
    "other": lambda: client(OTHER_ACCOUNT, OTHER, kommo_admin=True),
}


def configure_account() -> None:
    """A's Kommo administrator allows USER and makes ADMIN a Mailer administrator."""
    reply = client(ACCOUNT, OWNER, kommo_admin=True).patch(
        "/v1/settings", {"allowed_user_ids": [USER], "admin_user_ids": [ADMIN]}
    )
    assert reply.status == 200, reply.body


def build_world(route: Route | None = None) -> World:
    """A's resources owned by USER: all of them (route None), or those the route's family uses."""
    family = route[1].split("/")[2] if route is not None else None
    needs = {
        name: family is None or family in wanted
        for name, wanted in {
            "messages": ("messages",),
            "templates": ("templates",),
            "suppressions": ("suppressions",),
            "triggers": ("triggers",),
            "links": ("links",),
            "target_lists": ("target-lists", "campaigns"),
            "campaigns": ("campaigns",),
            "drafts": ("drafts",),
        }.items()
    }
    owner = client(ACCOUNT, USER)
    created = owner.post("/v1/mailboxes", MAILBOX)
    assert created.status == 201, created.body
    mailbox = created.json()["id"]
    message = failed = template = address = trigger = link = link_name = ""
    target_list = list_name = list_member = campaign = campaign_name = ""
    if needs["messages"]:
        email = {"mailbox_id": mailbox, "to": ["client@example.com"], "subject": "Hi", "html": "<p>Hi</p>"}
        message = owner.post("/v1/messages", email).json()["id"]
        failed = owner.post("/v1/messages", email).json()["id"]
        assert state.transition(
            MessageModel.get(ACCOUNT, failed),
            to=state.FAILED,
            when=datetime.now(UTC),
            event="failed",
            detail="550 no such user",
            allowed_from=(state.QUEUED,),
        )
    if needs["templates"]:
        made = owner.post("/v1/templates", {"name": "Private", "subject": "s", "html": "<p>x</p>"})
        template = made.json()["id"]
    if needs["suppressions"]:
        address = f"bounced-{uuid.uuid4().hex[:8]}@example.com"
        gone = suppressions.Report("matrix", "user_unknown", "suppress", datetime.now(UTC), "5.1.1")
        assert suppressions.record(ACCOUNT, address, gone)
    if needs["triggers"]:
        made = client(ACCOUNT, OWNER, kommo_admin=True).post("/v1/triggers", TRIGGER)
        assert made.status == 201, made.body
        trigger = made.json()["id"]
    if needs["links"]:
        link_name = f"Matrix link {uuid.uuid4().hex[:8]}"
        made = client(ACCOUNT, OWNER, kommo_admin=True).post("/v1/links", {**LINK, "name": link_name})
        assert made.status == 201, made.body
        link = str(made.json()["id"])
    if needs["target_lists"]:
        list_name = f"Matrix list {uuid.uuid4().hex[:8]}"
        made = owner.post("/v1/target-lists", {"name": list_name})
        assert made.status == 201, made.body
        target_list = made.json()["id"]
        list_member = f"member-{uuid.uuid4().hex[:8]}@example.com"
        added = owner.post(f"/v1/target-lists/{target_list}/members", {"members": [{"address": list_member}]})
        assert added.status == 200, added.body
    if needs["campaigns"]:
        campaign_name = f"Matrix campaign {uuid.uuid4().hex[:8]}"
        made = owner.post("/v1/campaigns", {**campaign_body(mailbox, target_list), "name": campaign_name})
        assert made.status == 201, made.body
        campaign = made.json()["campaign_id"]
    draft = ""
    if needs["drafts"]:
        email = {"mailbox_id": mailbox, "to": ["client@example.com"], "subject": "Hi", "html": "<p>Hi</p>"}
        made = owner.post("/v1/drafts", email)
        assert made.status == 201, made.body
        draft = made.json()["id"]
    return World(
        mailbox,
        message,
        failed,
        template,
        address,
        trigger,
        link,
        link_name,
        target_list,
        list_name,
        list_member,
        campaign,
        campaign_name,
        draft,
    )


def campaign_body(mailbox: str, target_list: str) -> dict[str, Any]:
    return {
        "name": "New campaign",
        "subject": "News",
        "html": "<p>News</p>",
        "mailbox_ids": [mailbox],
        "audience": {"target_lists": [target_list]},
    }


def body_for(route: Route, world: World) -> Any:
    email = {"mailbox_id": world.mailbox, "to": ["client@example.com"], "subject": "Hi", "html": "<p>Hi</p>"}
    bodies: dict[Route, Any] = {
        ("PATCH", "/v1/settings"): {"default_daily_cap": 500},
        ("POST", "/v1/mailboxes"): MAILBOX,
        ("PATCH", "/v1/mailboxes/{mailbox_id}"): {"sender_name": "Renamed"},
        ("POST", "/v1/messages"): email,
        ("POST", "/v1/messages/preview"): {k: v for k, v in email.items() if k != "to"},
        ("POST", "/v1/templates"): {"name": "New", "subject": "s", "html": "<p>x</p>"},
        ("PATCH", "/v1/templates/{template_id}"): {"name": "Renamed"},
        ("POST", "/v1/uploads"): {"filename": "price.pdf", "content_type": "application/pdf", "size": 1000},
        ("POST", "/v1/triggers"): TRIGGER,
        ("PATCH", "/v1/triggers/{trigger_id}"): {"name": "Renamed"},
        ("POST", "/v1/links"): LINK,
        ("PATCH", "/v1/links/{link_id}"): {"name": "Renamed"},
        ("POST", "/v1/target-lists"): {"name": "New list"},
        ("PATCH", "/v1/target-lists/{list_id}"): {"name": "Renamed"},
        ("POST", "/v1/target-lists/{list_id}/members"): {"members": [{"address": "new@example.com"}]},
        ("POST", "/v1/target-lists/{list_id}/import"): {"csv": "email\nnew@example.com\n"},
        ("POST", "/v1/campaigns"): campaign_body(world.mailbox, world.target_list),
        ("PATCH", "/v1/campaigns/{campaign_id}"): {"name": "Renamed"},
        ("POST", "/v1/campaigns/{campaign_id}/test"): {"to": "manager@example.com"},
        ("POST", "/v1/campaigns/{campaign_id}/target-list"): {"name": "From the log", "state": "sent"},
    }
    if route in bodies:
        return bodies[route]
    return {} if route[0] in ("POST", "PATCH", "PUT") else None


def path_for(route: Route, world: World | None) -> str:
    template = route[1]
    ids = {
        "mailbox_id": world.mailbox if world else "01MATRIXMAILBOX00000000000",
        "message_id": (world.failed if template.endswith("/retry") else world.message)
        if world
        else "01MATRIX",
        "template_id": world.template if world else "01MATRIXTEMPLATE0000000000",
        "address": world.address if world else "someone@example.com",
        "trigger_id": world.trigger if world and world.trigger else "01MATRIXTRIGGER00000000000",
        "link_id": world.link if world and world.link else "777",
        "list_id": world.target_list if world and world.target_list else "01MATRIXLIST00000000000000",
        "member": world.list_member if world and world.list_member else "someone@example.com",
        "campaign_id": world.campaign if world and world.campaign else "01MATRIXCAMPAIGN0000000000",
        "draft_id": world.draft if world and world.draft else "01MATRIXDRAFT0000000000000",
    }
    path = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "01MATRIXID"), template)
    return path + ("?email=anna@gmail.com" if template == "/v1/mailboxes/presets" else "")


def ask(caller: ApiClient, route: Route, world: World | None) -> Reply:
    blank = World("", "", "", "", "")
    return caller.call(route[0], path_for(route, world), body_for(route, world or blank))


def check(reply: Reply, expected: str, world: World, where: str) -> None:
    status, _, rest = expected.partition(" ")
    assert reply.status == int(status), f"{where}: {reply.status} {reply.body[:300]}"
    if status == "403" and rest:
        assert reply.json()["reason"] == rest, f"{where}: {reply.body}"
    elif status == "422":
        assert reply.json()["field"] == rest, f"{where}: {reply.body}"
    elif rest.startswith("sees "):
        marker = getattr(world, rest.removeprefix("sees "))
        assert marker in reply.body, f"{where}: {marker} not in {reply.body[:300]}"


# -- the tests -----------------------------------------------------------------------------------


def test_every_v1_route_of_the_template_has_an_expected_answer_for_each_caller() -> None:
    missing = [f"{m} {p}" for m, p in V1_ROUTES if (m, p) not in EXPECTED]
    stale = [f"{m} {p}" for m, p in EXPECTED if (m, p) not in V1_ROUTES]
    assert not missing, f"say what each caller gets from these routes in EXPECTED: {missing}"
    assert not stale, f"EXPECTED names routes the template no longer has: {stale}"
    assert all(set(answers) == set(CALLERS) for answers in EXPECTED.values())


@pytest.mark.usefixtures("aws_stack")
def test_each_caller_gets_the_expected_answer_and_never_another_accounts_data() -> None:
    """One stack for every route (AWS clients are made once); every wrong answer is reported."""
    configure_account()
    wrong = []
    for route in [r for r in V1_ROUTES if r in EXPECTED]:
        shared = build_world(route)  # what GETs look at; any other call gets a fresh world
        for name, make in CALLERS.items():
            # GETs, and the other account (which must change nothing), look at the shared world.
            world = shared if route[0] == "GET" or name == "other" else build_world(route)
            reply = ask(make(), route, world)
            try:
                check(reply, EXPECTED[route][name], world, f"{name}: {route[0]} {route[1]}")
            except AssertionError as exc:
                wrong.append(str(exc).splitlines()[0])
            if name == "other":
                leaked = [marker for marker in world.markers() if marker in reply.body]
                if leaked:
                    wrong.append(f"other: {route[0]} {route[1]}: another account's caller saw {leaked}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.usefixtures("aws_stack")
def test_a_user_the_settings_do_not_allow_is_refused_on_every_route_with_the_reason() -> None:
    configure_account()
    world = build_world()
    refused = client(ACCOUNT, NOT_ALLOWED)
    for route in V1_ROUTES:
        reply = ask(refused, route, world)
        assert reply.status == 403, f"{route}: {reply.status} {reply.body[:200]}"
        assert reply.json()["reason"] == "user_not_allowed", route
        assert not [m for m in world.markers() if m in reply.body]
    # Kommo's account administrators are always allowed, listed or not.
    assert client(ACCOUNT, NOT_ALLOWED, kommo_admin=True).get("/v1/me").json()["is_admin"] is True


@pytest.mark.usefixtures("aws_stack")
@pytest.mark.parametrize(
    ("status", "reason"), [("disabled", "account_disabled"), ("uninstalled", "account_uninstalled")]
)
def test_a_switched_off_account_is_refused_on_every_route_even_for_its_administrators(
    status: str, reason: str, aws_stack: StackResources
) -> None:
    configure_account()
    world = build_world()
    account_lifecycle.disable(ACCOUNT, "test", status=status)
    for caller in (client(ACCOUNT, OWNER, kommo_admin=True), client(ACCOUNT, ADMIN), client(ACCOUNT, USER)):
        for route in V1_ROUTES:
            reply = ask(caller, route, world)
            assert reply.status == 403, f"{route}: {reply.status} {reply.body[:200]}"
            assert reply.json()["reason"] == reason, route
    # Another account is not affected.
    assert client(OTHER_ACCOUNT, OTHER).get("/v1/messages").status == 200
