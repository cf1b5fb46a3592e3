"""/v1/links: numbering, validation, rights, other accounts, the loop check."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from mailer_core.accounts.auth import Caller
from mailer_core.triggers import links_api as trigger_links

from devstack.kommo_standin import seed
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.links import make_link, trigger
from tests.support.kommo_accounts import serialize_moto


def test_an_admin_creates_numbered_links_that_every_user_reads(admin: ApiClient, manager: ApiClient) -> None:
    # GIVEN a trigger to hang on a link
    moved = trigger(admin, "Change stage to Familiar", "stage", status_id=seed.STATUS_FAMILIAR)
    # WHEN an administrator creates two links
    first = make_link(
        admin, "Read the offer", once=True, target="https://shop.example/offer", trigger_ids=[moved]
    )
    second = make_link(admin, "Call me")
    # THEN they are numbered from 1, with their variable, and stored as given
    assert first["id"] == 1 and first["variable"] == "{triggerlink:1}"
    assert first["once"] is True and first["target"] == "https://shop.example/offer"
    assert first["trigger_ids"] == [moved] and first["user_id"] == seed.ADMIN_USER_ID
    assert second["id"] == 2 and second["once"] is False and second["target"] is None
    assert second["trigger_ids"] == []
    # AND a manager reads them, by number
    listed = manager.get("/v1/links")
    assert listed.status == 200 and [x["id"] for x in listed.json()["items"]] == [1, 2]
    assert manager.get("/v1/links/1").json() == first


def test_only_administrators_change_links(admin: ApiClient, manager: ApiClient) -> None:
    make_link(admin)
    for reply in (
        manager.post("/v1/links", {"name": "Mine"}),
        manager.patch("/v1/links/1", {"name": "Mine"}),
        manager.delete("/v1/links/1"),
    ):
        assert reply.status == 403, reply.body
    assert manager.get("/v1/links/1").json()["name"] == "Offer"


def test_an_admin_changes_and_deletes_a_link_and_numbers_are_never_reused(admin: ApiClient) -> None:
    moved = trigger(admin, "Move", "stage", status_id=seed.STATUS_FAMILIAR)
    made = make_link(admin, target="https://shop.example/a")
    make_link(admin, "Second")
    # WHEN link 1 changes: no target any more (the thank-you page), once, a trigger
    reply = admin.patch(
        "/v1/links/1", {"target": "", "once": True, "trigger_ids": [moved], "name": "Renamed"}
    )
    assert reply.status == 200, reply.body
    changed = reply.json()
    assert changed["target"] is None and changed["once"] is True and changed["trigger_ids"] == [moved]
    assert changed["name"] == "Renamed" and changed["id"] == 1 and changed["created_at"] == made["created_at"]
    assert admin.get("/v1/links/1").json() == changed
    # AND a PATCH naming one field changes only it
    assert admin.patch("/v1/links/1", {"name": "Again"}).json()["trigger_ids"] == [moved]
    # WHEN link 2 is deleted
    assert admin.delete("/v1/links/2").status == 204
    assert admin.get("/v1/links/2").status == 404
    assert admin.delete("/v1/links/2").status == 404
    # THEN the next link still gets a new number
    assert make_link(admin, "Third")["id"] == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "  "}, "name"),
        ({"name": "x", "once": "yes"}, "once"),
        ({"name": "x", "target": "ftp://files.example/a"}, "target"),
        ({"name": "x", "target": "shop.example/a"}, "target"),
        ({"name": "x", "target": "javascript:alert({{ lead.id }})"}, "target"),
        ({"name": "x", "target": "https://a.example/{{ lead.id"}, "target"),
        ({"name": "x", "target": 5}, "target"),
        ({"name": "x", "target": "https://a.example/" + "a" * 2000}, "target"),
        ({"name": "x", "trigger_ids": "abc"}, "trigger_ids"),
        ({"name": "x", "trigger_ids": ["no-such-trigger"]}, "trigger_ids.0"),
        ({"name": "x", "color": "red"}, "color"),
    ],
)
def test_bad_input_is_refused_naming_the_field(admin: ApiClient, body: dict[str, Any], field: str) -> None:
    reply = admin.post("/v1/links", body)
    assert reply.status == 422, reply.body
    assert reply.json()["field"] == field
    assert admin.get("/v1/links").json()["items"] == []


@pytest.mark.parametrize(
    "target",
    [
        "https://shop.example/offer?lead={{ lead.id }}",
        "{{ lead.cf[560001] }}",
        "{{ lead.cf['Product'] }}",
        "http://shop.example/{id}",
    ],
)
def test_a_target_may_hold_variables(admin: ApiClient, target: str) -> None:
    assert make_link(admin, target=target)["target"] == target


def test_a_patch_is_validated_too(admin: ApiClient) -> None:
    make_link(admin)
    reply = admin.patch("/v1/links/1", {"target": "mailto:anna@example.com"})
    assert reply.status == 422 and reply.json()["field"] == "target"
    assert admin.patch("/v1/links/1", {"name": None}).json()["field"] == "name"
    assert admin.get("/v1/links/1").json()["target"] is None


def test_another_account_sees_no_link(admin: ApiClient, stranger: ApiClient) -> None:
    make_link(admin)
    for reply in (
        stranger.get("/v1/links/1"),
        stranger.patch("/v1/links/1", {"name": "Theirs"}),
        stranger.delete("/v1/links/1"),
    ):
        assert reply.status == 404, reply.body
    assert stranger.get("/v1/links").json()["items"] == []
    # AND its own first link is its number 1
    assert make_link(stranger)["id"] == 1
    assert admin.get("/v1/links/1").json()["name"] == "Offer"


@pytest.mark.parametrize("link_id", ["abc", "0", "-1", "1e3", "9999999999"])
def test_a_link_id_that_is_not_a_number_is_not_found(admin: ApiClient, link_id: str) -> None:
    reply = admin.get(f"/v1/links/{link_id}")
    assert reply.status == 404 and reply.json()["field"] == "link_id"


def test_concurrent_creates_get_distinct_numbers(
    aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN moto's requests made atomic, as DynamoDB's single-item writes are
    serialize_moto(monkeypatch)
    caller = Caller(
        account_id=seed.ACCOUNT_ID, subdomain=seed.SUBDOMAIN, user_id=seed.ADMIN_USER_ID, is_admin=True
    )
    start = threading.Barrier(12)
    numbers: list[int] = []

    def one(n: int) -> None:
        start.wait()
        numbers.append(int(trigger_links.create(caller, {"name": f"link {n}"})["id"]))

    # WHEN twelve administrators create a link at once
    threads = [threading.Thread(target=one, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN each got its own number, 1 to 12
    assert sorted(numbers) == list(range(1, 13))


def test_a_link_that_would_close_an_automation_loop_is_refused(admin: ApiClient) -> None:
    # GIVEN template «Offer» whose body has {triggerlink:1}, and a trigger that sends «Offer»
    reply = admin.post(
        "/v1/templates",
        {
            "name": "Offer",
            "subject": "Offer",
            "html": '<a href="{triggerlink:1}">Read</a>',
            "is_public": True,
        },
    )
    assert reply.status == 201, reply.body
    resend = trigger(admin, "Send the offer", "email", template_id=reply.json()["id"])
    # WHEN link 1 is created with that trigger: a click would send «Offer», whose link sends it again
    refused = admin.post("/v1/links", {"name": "Loop", "trigger_ids": [resend]})
    # THEN it is refused, with the loop spelled out
    assert refused.status == 422 and refused.json()["field"] == "trigger_ids"
    assert "«Offer»" in refused.json()["message"] and "link 1" in refused.json()["message"]
