"""/v1/target-lists: lists, who sees and changes what, members, the CSV import and its report."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from mailer_core.audiences import lists_api
from mailer_core.campaigns import worker
from mailer_core.store.models import TargetListMemberModel, target_list_key

from devstack.kommo_standin import seed
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.sqs import receive_batch


def create(client: ApiClient, **body: Any) -> dict[str, Any]:
    reply = client.post("/v1/target-lists", {"name": "Fair visitors", **body})
    assert reply.status == 201, reply.body
    return dict(reply.json())


def count(client: ApiClient, list_id: str) -> int:
    return int(client.get(f"/v1/target-lists/{list_id}").json()["members"])


def all_members(client: ApiClient, list_id: str, limit: int = 2) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        reply = client.get(f"/v1/target-lists/{list_id}/members?limit={limit}{cursor}")
        assert reply.status == 200, reply.body
        found += reply.json()["items"]
        if not reply.json()["next_cursor"]:
            return found
        cursor = f"&cursor={reply.json()['next_cursor']}"


def test_create_read_list_rename_delete(manager: ApiClient) -> None:
    made = create(manager)
    assert made["user_id"] == seed.MANAGER_USER_ID and made["members"] == 0
    assert made["is_public"] is False and made["can_edit"] is True
    assert manager.get(f"/v1/target-lists/{made['id']}").json() == made
    assert [t["id"] for t in manager.get("/v1/target-lists").json()["items"]] == [made["id"]]
    renamed = manager.patch(f"/v1/target-lists/{made['id']}", {"name": "Visitors 2026"})
    assert renamed.status == 200 and renamed.json()["name"] == "Visitors 2026"
    assert manager.delete(f"/v1/target-lists/{made['id']}").status == 204
    assert manager.get(f"/v1/target-lists/{made['id']}").status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "  "}, "name"),
        ({"name": "x", "colour": 1}, "colour"),
        ({"name": "x" * 201}, "name"),
    ],
)
def test_a_bad_list_is_refused_naming_the_field(manager: ApiClient, body: dict[str, Any], field: str) -> None:
    reply = manager.post("/v1/target-lists", body)
    assert reply.status == 422 and reply.json()["field"] == field


def test_lists_follow_the_templates_ownership_rules(
    manager: ApiClient, colleague: ApiClient, admin: ApiClient, stranger: ApiClient
) -> None:
    private = create(manager, name="Mine")["id"]
    shared = create(manager, name="Shared", is_public=True)["id"]
    # a colleague sees only the public one, and may not change it
    assert {t["id"] for t in colleague.get("/v1/target-lists").json()["items"]} == {shared}
    assert colleague.get(f"/v1/target-lists/{private}").status == 404
    assert colleague.get(f"/v1/target-lists/{shared}").json()["can_edit"] is False
    refused = colleague.post(
        f"/v1/target-lists/{shared}/members", {"members": [{"address": "a@example.com"}]}
    )
    assert refused.status == 403 and refused.json()["reason"] == "not_owner"
    assert colleague.delete(f"/v1/target-lists/{shared}").status == 403
    assert colleague.patch(f"/v1/target-lists/{private}", {"name": "x"}).status == 404
    # the owner may not give a list away; an administrator may, and sees and changes every list
    assert manager.patch(f"/v1/target-lists/{private}", {"user_id": 8100003}).status == 403
    assert {t["id"] for t in admin.get("/v1/target-lists").json()["items"]} == {private, shared}
    handed = admin.patch(f"/v1/target-lists/{private}", {"user_id": 8100003})
    assert handed.status == 200 and handed.json()["user_id"] == 8100003
    assert colleague.get(f"/v1/target-lists/{private}").status == 200
    # another account sees nothing
    assert stranger.get(f"/v1/target-lists/{shared}").status == 404
    assert stranger.get("/v1/target-lists").json()["items"] == []


def test_members_are_added_once_counted_truly_paged_and_removed(manager: ApiClient) -> None:
    list_id = create(manager)["id"]
    body = {
        "members": [
            {"address": "Anna@Example.com", "name": "Анна"},
            {"address": "boris@example.com"},
            {"entity_type": "leads", "id": seed.LEAD_OFFER},
        ]
    }
    first = manager.post(f"/v1/target-lists/{list_id}/members", body)
    assert first.status == 200, first.body
    assert first.json()["added"] == 3 and first.json()["list"]["members"] == 3
    # the same members again (a retried request) add nothing and count nothing
    again = manager.post(f"/v1/target-lists/{list_id}/members", body).json()
    assert again["added"] == 0 and again["already_members"] == 3 and count(manager, list_id) == 3

    members = all_members(manager, list_id)
    assert [m["member"] for m in members] == [
        "anna@example.com",
        "boris@example.com",
        f"leads:{seed.LEAD_OFFER}",
    ]
    assert members[0]["address"] == "Anna@Example.com" and members[0]["name"] == "Анна"
    assert members[2]["entity_type"] == "leads" and members[2]["entity_id"] == seed.LEAD_OFFER

    assert manager.delete(f"/v1/target-lists/{list_id}/members/{quote('ANNA@example.com')}").status == 204
    assert manager.delete(f"/v1/target-lists/{list_id}/members/leads:{seed.LEAD_OFFER}").status == 204
    assert manager.delete(f"/v1/target-lists/{list_id}/members/leads:{seed.LEAD_OFFER}").status == 404
    assert count(manager, list_id) == 1


@pytest.mark.parametrize(
    ("members", "field"),
    [
        (None, "members"),
        ([], "members"),
        ([{"address": "ok@example.com"}, {"address": "nope"}], "members[1].address"),
        ([{"entity_type": "deals", "id": 1}], "members[0].entity_type"),
        ([{"entity_type": "leads", "id": "1"}], "members[0].id"),
        ([{"address": "a@example.com", "phone": "1"}], "members[0].phone"),
    ],
)
def test_bad_members_are_refused_naming_the_field_and_nothing_is_added(
    manager: ApiClient, members: Any, field: str
) -> None:
    list_id = create(manager)["id"]
    reply = manager.post(f"/v1/target-lists/{list_id}/members", {"members": members})
    assert reply.status == 422 and reply.json()["field"] == field
    assert count(manager, list_id) == 0


def test_a_members_cursor_of_another_list_is_refused(manager: ApiClient) -> None:
    one, other = create(manager)["id"], create(manager)["id"]
    for list_id in (one, other):
        manager.post(
            f"/v1/target-lists/{list_id}/members",
            {"members": [{"address": f"{n}@example.com"} for n in "abc"]},
        )
    cursor = manager.get(f"/v1/target-lists/{one}/members?limit=1").json()["next_cursor"]
    reply = manager.get(f"/v1/target-lists/{other}/members?limit=1&cursor={cursor}")
    assert reply.status == 400 and reply.json()["field"] == "cursor"


CSV = (
    "Имя;Email\n"
    "Анна;anna@example.com\n"
    "Борис;boris@example\n"
    "Вера;\n"
    "Анна снова;ANNA@example.com\n"
    "Глеб;gleb@example.com\n"
)


def test_a_csv_with_bad_rows_keeps_the_good_ones_and_reports_the_others(manager: ApiClient) -> None:
    list_id = create(manager)["id"]
    reply = manager.post(f"/v1/target-lists/{list_id}/import", CSV, headers={"content-type": "text/csv"})
    # THEN a 422 naming the file, whose report lists each refused row with its number and why
    assert reply.status == 422, reply.body
    body = reply.json()
    assert body["field"] == "csv" and body["reason"] == "rows_refused"
    report = body["report"]
    assert report["rows"] == 5 and report["imported"] == 2 and report["added"] == 2
    assert report["refused"] == [
        {"row": 3, "reason": "bad_address", "value": "boris@example"},
        {"row": 4, "reason": "empty", "value": ""},
        {"row": 5, "reason": "duplicate", "value": "ANNA@example.com"},
    ]
    # AND the good rows are members, with their names; the count is true
    members = all_members(manager, list_id, limit=50)
    assert [(m["address"], m["name"]) for m in members] == [
        ("anna@example.com", "Анна"),
        ("gleb@example.com", "Глеб"),
    ]
    assert count(manager, list_id) == 2

    # WHEN a clean file comes as JSON, with one member the list holds already
    clean = manager.post(
        f"/v1/target-lists/{list_id}/import", {"csv": "email,name\ngleb@example.com,G\nd@example.com,D\n"}
    )
    assert clean.status == 200, clean.body
    assert clean.json()["added"] == 1 and clean.json()["already_members"] == 1
    assert clean.json()["refused"] == [] and count(manager, list_id) == 3


def test_a_csv_import_is_refused_whole_when_it_cannot_be_read(
    manager: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    list_id = create(manager)["id"]
    no_column = manager.post(
        f"/v1/target-lists/{list_id}/import", "name\nAnna\n", headers={"content-type": "text/csv"}
    )
    assert no_column.status == 422 and no_column.json()["field"] == "csv"
    not_text = manager.post(f"/v1/target-lists/{list_id}/import", {"file": "x"})
    assert not_text.status == 422 and not_text.json()["field"] == "csv"
    monkeypatch.setattr(lists_api, "IMPORT_BYTES", 100)
    big = manager.post(
        f"/v1/target-lists/{list_id}/import",
        "email\n" + "a@example.com\n" * 20,
        headers={"content-type": "text/csv"},
    )
    assert big.status == 413 and big.json()["field"] == "csv" and big.json()["limit_bytes"] == 100
    assert count(manager, list_id) == 0


def test_a_deleted_list_takes_its_members_with_it(manager: ApiClient) -> None:
    list_id = create(manager)["id"]
    manager.post(f"/v1/target-lists/{list_id}/members", {"members": [{"address": "a@example.com"}]})
    assert manager.delete(f"/v1/target-lists/{list_id}").status == 204
    assert manager.get(f"/v1/target-lists/{list_id}/members").status == 404
    assert list(TargetListMemberModel.query(target_list_key(seed.ACCOUNT_ID, list_id))) == []


def test_a_large_list_is_deleted_in_packages_by_queued_jobs_that_are_safe_to_repeat(
    manager: ApiClient, aws_stack: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a list with more members than one package of its deletion (packages of 3 here)
    monkeypatch.setattr(lists_api, "PURGE_PACKAGE", 3)
    list_id = create(manager)["id"]
    added = [{"address": f"m{n}@example.com"} for n in range(8)]
    manager.post(f"/v1/target-lists/{list_id}/members", {"members": added})

    def left() -> int:
        return len(list(TargetListMemberModel.query(target_list_key(seed.ACCOUNT_ID, list_id))))

    # WHEN it is deleted
    assert manager.delete(f"/v1/target-lists/{list_id}").status == 204
    # THEN it is gone at once, its first package of members with it, and the rest follow
    assert manager.get(f"/v1/target-lists/{list_id}").status == 404 and left() == 5
    body = receive_batch(aws_stack.refs["CampaignQueue"])[0]["Body"]
    assert worker.process_body(body) == "removed 3, the next package queued" and left() == 2
    assert worker.process_body(body) == "removed 2" and left() == 0  # a job given twice: no harm
    assert worker.process_body(body) == "removed 0"
    # AND a job for a list that exists never touches it
    kept = create(manager)["id"]
    manager.post(f"/v1/target-lists/{kept}/members", {"members": added[:1]})
    assert lists_api.purge_members(seed.ACCOUNT_ID, kept) == "the list exists" and count(manager, kept) == 1
