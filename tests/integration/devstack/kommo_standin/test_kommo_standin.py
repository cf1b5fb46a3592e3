"""The Kommo stand-in speaks API v4 on the wire: HAL, problem+json, auth, rate, pages, writes."""

from __future__ import annotations

import json
import urllib.request

from mailer_core.base.clock import FakeClock

from devstack.kommo_standin import seed
from devstack.kommo_standin.seed import Seed, custom_field
from devstack.kommo_standin.server import KommoStandIn
from tests.support.kommo_helpers import MANAGER_TOKEN, TOKEN, Api

PROBLEM_KEYS = {"title", "type", "status", "detail"}


def test_requests_without_a_known_token_get_401_problem_json(api: Api) -> None:
    for token in (None, "not-a-token"):
        answer = api("GET", "/api/v4/account", token=token)
        assert answer.status == 401
        assert answer.content_type == "application/problem+json"
        assert set(answer.body) >= PROBLEM_KEYS
        assert answer.body["status"] == 401


def test_account_answers_hal_with_the_token_user_and_task_types(api: Api, standin: KommoStandIn) -> None:
    answer = api("GET", "/api/v4/account?with=task_types")
    assert answer.status == 200
    assert answer.content_type == "application/hal+json"
    assert answer.body["id"] == seed.ACCOUNT_ID
    assert answer.body["subdomain"] == "mailerdemo"
    assert answer.body["current_user_id"] == seed.ADMIN_USER_ID
    assert answer.body["_links"]["self"]["href"] == f"{standin.base_url}/api/v4/account"
    assert {t["code"] for t in answer.body["_embedded"]["task_types"]} >= {"FOLLOW_UP", "MEETING"}


def test_a_lead_embeds_tags_and_companies_and_contacts_only_when_asked(
    api: Api, standin: KommoStandIn
) -> None:
    plain = api("GET", f"/api/v4/leads/{seed.LEAD_OFFER}").body
    assert set(plain["_embedded"]) == {"tags", "companies"}
    assert plain["_embedded"]["tags"][0]["name"] == "VIP"
    assert plain["_embedded"]["companies"][0]["id"] == seed.COMPANY_ROMASHKA

    full = api("GET", f"/api/v4/leads/{seed.LEAD_OFFER}?with=contacts").body
    contacts = full["_embedded"]["contacts"]
    assert [(c["id"], c["is_main"]) for c in contacts] == [
        (seed.CONTACT_IVAN, True),
        (seed.CONTACT_OLGA, False),
    ]
    assert contacts[0]["_links"]["self"]["href"] == f"{standin.base_url}/api/v4/contacts/{seed.CONTACT_IVAN}"
    assert full["_links"]["self"]["href"] == f"{standin.base_url}/api/v4/leads/{seed.LEAD_OFFER}"


def test_a_contact_carries_its_emails_as_the_email_multitext_field(api: Api) -> None:
    contact = api("GET", f"/api/v4/contacts/{seed.CONTACT_IVAN}").body
    assert contact["name"] == "Иван Петров"
    email = next(f for f in contact["custom_fields_values"] if f["field_code"] == "EMAIL")
    assert email["field_type"] == "multitext"
    assert email["values"] == [
        {"value": "ivan.petrov@example.com", "enum_id": email["values"][0]["enum_id"], "enum_code": "WORK"}
    ]


def test_a_missing_entity_is_204_and_an_unknown_path_is_404(api: Api) -> None:
    missing = api("GET", "/api/v4/leads/999")
    assert (missing.status, missing.body) == (204, None)
    unknown = api("GET", "/api/v4/customers/1")
    assert unknown.status == 404
    assert unknown.content_type == "application/problem+json"
    assert set(unknown.body) >= PROBLEM_KEYS


def test_lists_filter_by_id_and_page_with_next_links(api: Api) -> None:
    ids = api("GET", f"/api/v4/leads?filter[id][]={seed.LEAD_OFFER}&filter[id][]={seed.LEAD_CONSULTING}").body
    assert [lead["id"] for lead in ids["_embedded"]["leads"]] == [seed.LEAD_OFFER, seed.LEAD_CONSULTING]
    assert "next" not in ids["_links"]

    first = api("GET", "/api/v4/leads?limit=2").body
    assert first["_page"] == 1
    assert len(first["_embedded"]["leads"]) == 2
    second = api("GET", first["_links"]["next"]["href"]).body
    assert second["_page"] == 2
    assert [lead["id"] for lead in second["_embedded"]["leads"]] == [seed.LEAD_CONSULTING]
    assert "next" not in second["_links"]
    assert api("GET", "/api/v4/leads?limit=2&page=3").status == 204
    assert api("GET", "/api/v4/leads?limit=251").status == 400


def test_custom_fields_come_50_per_page(sample: Seed, clock: FakeClock) -> None:
    # GIVEN an account with 60 lead fields
    sample.custom_fields["leads"] = [
        custom_field(600000 + n, "leads", f"Field {n}", "text", sort=n) for n in range(60)
    ]
    with KommoStandIn(sample, clock=clock) as standin:
        standin.add_token(seed.ACCOUNT_ID, "t")
        opener = urllib.request.build_opener()

        def get(url: str) -> dict:
            req = urllib.request.Request(url, headers={"Authorization": "Bearer t"})
            with opener.open(req, timeout=5) as resp:
                return json.loads(resp.read())

        # WHEN the client walks the pages by their next links
        page1 = get(f"{standin.base_url}/api/v4/leads/custom_fields")
        page2 = get(page1["_links"]["next"]["href"])
    # THEN 50 + 10, totals on each page, no next link on the last
    assert len(page1["_embedded"]["custom_fields"]) == 50
    assert page1["_total_items"] == 60 and page1["_page_count"] == 2
    assert [f["id"] for f in page2["_embedded"]["custom_fields"]] == [600000 + n for n in range(50, 60)]
    assert "next" not in page2["_links"]


def test_the_pipeline_has_the_worked_example_stages(api: Api) -> None:
    pipelines = api("GET", "/api/v4/leads/pipelines").body["_embedded"]["pipelines"]
    names = {s["name"]: s["id"] for s in pipelines[0]["_embedded"]["statuses"]}
    assert {"Qualified", "Offer sent", "Familiar with the offer"} <= set(names)
    assert {142, 143} <= set(names.values())


def test_users_are_for_administrators_only(api: Api) -> None:
    users = api("GET", "/api/v4/users").body["_embedded"]["users"]
    assert {u["email"] for u in users} == {"anna.admin@example.com", "maria.manager@example.com"}
    denied = api("GET", "/api/v4/users", token=MANAGER_TOKEN)
    assert denied.status == 403
    assert denied.content_type == "application/problem+json"


def test_the_eighth_request_within_a_second_from_one_address_gets_429_with_kommos_wait(
    api: Api, clock: FakeClock
) -> None:
    statuses = [api("GET", "/api/v4/account").status for _ in range(8)]
    assert statuses == [200] * 7 + [429]
    # Kommo counts per IP address: another token from the same address waits as well
    refused = api("GET", "/api/v4/account", token=MANAGER_TOKEN)
    assert (refused.status, refused.content_type) == (429, "application/problem+json")
    # the wait is Kommo's own (its documentation's example: 300 s), not the window's one second
    assert refused.body["retry_after"] == 300
    clock.advance(299)
    assert api("GET", "/api/v4/account").body["retry_after"] == 1
    clock.advance(1)
    assert api("GET", "/api/v4/account").status == 200


def test_an_address_that_does_not_wait_is_banned_with_nginxs_page_for_everything(
    api: Api, standin: KommoStandIn, clock: FakeClock
) -> None:
    standin.limits.wait = 60  # the wait a 429 asks for is set by the test
    assert [api("GET", "/api/v4/account").status for _ in range(8)][-1] == 429
    # WHEN the address keeps asking during the wait: 429 again, then the ban
    assert [api("GET", "/api/v4/account").status for _ in range(3)] == [429, 429, 403]
    # THEN every request gets nginx's plain page (not problem+json), whatever its path or token
    for path, token in [
        ("/api/v4/leads", TOKEN),
        ("/api/v4/users", MANAGER_TOKEN),
        ("/api/v4/account", None),
    ]:
        banned = api("GET", path, token=token)
        assert (banned.status, banned.content_type) == (403, "text/html")
        assert "<h1>403 Forbidden</h1>" in banned.body and "nginx" in banned.body
    assert api("POST", "/oauth2/access_token", {"grant_type": "refresh_token"}, token=None).status == 403
    # AND the ban ends after its time
    clock.advance(standin.limits.ban_seconds)
    assert api("GET", "/api/v4/account").status == 200


def test_patch_moves_the_lead_and_writes_fields_and_tags(
    api: Api, standin: KommoStandIn, clock: FakeClock
) -> None:
    body = {
        "status_id": seed.STATUS_QUALIFIED,
        "pipeline_id": seed.PIPELINE_ID,
        "price": 175000,
        "custom_fields_values": [
            {"field_id": seed.FIELD_DELIVERY, "values": [{"value": "Post"}]},
            {"field_id": seed.FIELD_QUANTITY, "values": [{"value": "20"}]},
            {"field_id": seed.FIELD_NEWSLETTER, "values": None},
        ],
        "tags_to_add": [{"name": "Emailed"}],
        "tags_to_delete": [{"name": "vip"}],
    }
    answer = api("PATCH", f"/api/v4/leads/{seed.LEAD_OFFER}", body)
    assert answer.status == 200
    assert answer.body["id"] == seed.LEAD_OFFER
    assert answer.body["updated_at"] == int(clock.timestamp())

    lead = api("GET", f"/api/v4/leads/{seed.LEAD_OFFER}").body
    assert (lead["status_id"], lead["price"]) == (seed.STATUS_QUALIFIED, 175000)
    values = {f["field_id"]: f["values"] for f in lead["custom_fields_values"]}
    assert values[seed.FIELD_DELIVERY] == [{"value": "Post", "enum_id": 591003, "enum_code": None}]
    assert values[seed.FIELD_QUANTITY] == [{"value": "20"}]
    assert seed.FIELD_NEWSLETTER not in values
    assert [t["name"] for t in lead["_embedded"]["tags"]] == ["Emailed"]
    assert lead["updated_by"] == seed.ADMIN_USER_ID
    assert [(c.method, c.path, c.body) for c in standin.changes] == [
        ("PATCH", f"/api/v4/leads/{seed.LEAD_OFFER}", body)
    ]


def test_a_closed_stage_sets_closed_at_and_batch_patch_answers_each_lead(api: Api, clock: FakeClock) -> None:
    answer = api(
        "PATCH",
        "/api/v4/leads",
        [
            {"id": seed.LEAD_REDESIGN, "status_id": 142, "pipeline_id": seed.PIPELINE_ID},
            {"id": seed.LEAD_CONSULTING, "name": "Renamed"},
        ],
    )
    assert answer.status == 200
    assert [x["id"] for x in answer.body["_embedded"]["leads"]] == [seed.LEAD_REDESIGN, seed.LEAD_CONSULTING]
    assert api("GET", f"/api/v4/leads/{seed.LEAD_REDESIGN}").body["closed_at"] == int(clock.timestamp())
    assert api("GET", f"/api/v4/leads/{seed.LEAD_CONSULTING}").body["name"] == "Renamed"


def test_an_invalid_write_changes_nothing(api: Api, standin: KommoStandIn) -> None:
    before = standin.lead(seed.LEAD_OFFER)
    answer = api(
        "PATCH",
        "/api/v4/leads",
        [{"id": seed.LEAD_OFFER, "name": "changed"}, {"id": seed.LEAD_REDESIGN, "status_id": 1}],
    )
    assert answer.status == 400
    assert answer.content_type == "application/problem+json"
    error = answer.body["validation-errors"][0]
    assert error["request_id"] == "1"
    assert error["errors"][0]["path"] == "1.status_id"
    assert standin.lead(seed.LEAD_OFFER) == before
    assert standin.changes == []


def test_tasks_and_notes_are_stored_answered_with_ids_and_recorded(api: Api, standin: KommoStandIn) -> None:
    task = {
        "text": "Call the client",
        "complete_till": 1795600000,
        "entity_id": seed.LEAD_OFFER,
        "entity_type": "leads",
        "responsible_user_id": seed.MANAGER_USER_ID,
    }
    tasks = api("POST", "/api/v4/tasks", [task])
    assert tasks.status == 200
    task_id = tasks.body["_embedded"]["tasks"][0]["id"]
    assert tasks.body["_embedded"]["tasks"][0]["request_id"] == "0"

    note = {"entity_id": seed.LEAD_OFFER, "note_type": "common", "params": {"text": "Offer opened"}}
    notes = api("POST", "/api/v4/leads/notes", [note])
    assert notes.body["_embedded"]["notes"][0]["entity_id"] == seed.LEAD_OFFER
    by_path = api(
        "POST",
        f"/api/v4/contacts/{seed.CONTACT_IVAN}/notes",
        [{"note_type": "common", "params": {"text": "hi"}}],
    )
    assert by_path.body["_embedded"]["notes"][0]["entity_id"] == seed.CONTACT_IVAN

    assert [(t["id"], t["text"], t["responsible_user_id"]) for t in standin.tasks] == [
        (task_id, "Call the client", seed.MANAGER_USER_ID)
    ]
    assert [n["params"]["text"] for n in standin.notes("leads")] == ["Offer opened"]
    assert [c.path for c in standin.changes] == [
        "/api/v4/tasks",
        "/api/v4/leads/notes",
        f"/api/v4/contacts/{seed.CONTACT_IVAN}/notes",
    ]
    # the read-only views need no token and show the same
    changes = api("GET", "/_standin/changes", token=None).body
    assert [c["body"] for c in changes][:2] == [[task], [note]]
    state = api("GET", "/_standin/state", token=None).body
    assert [t["id"] for t in state["tasks"]] == [task_id]


def test_tasks_and_notes_are_validated(api: Api, standin: KommoStandIn) -> None:
    no_text = api("POST", "/api/v4/tasks", [{"complete_till": 1795600000}])
    assert no_text.status == 400
    assert no_text.body["validation-errors"][0]["errors"][0]["path"] == "0.text"
    wrong_entity = api(
        "POST", "/api/v4/leads/notes", [{"entity_id": 1, "note_type": "common", "params": {"text": "x"}}]
    )
    assert wrong_entity.status == 400
    assert standin.tasks == [] and standin.changes == []


def test_unimplemented_filters_are_refused_loudly(api: Api) -> None:
    for query in ("filter[created_at][from]=1", "order[updated_at]=asc", "filter[pipeline_id][]=1"):
        path = "/api/v4/contacts" if "pipeline_id" in query else "/api/v4/leads"
        answer = api("GET", f"{path}?{query}")
        assert answer.status == 400, query
        assert "not implemented" in answer.body["detail"], query


def test_a_new_lead_links_its_contact_and_a_contact_email_can_be_changed(
    api: Api, standin: KommoStandIn
) -> None:
    created = api(
        "POST",
        "/api/v4/leads",
        [{"name": "Repeat order", "price": 900, "_embedded": {"contacts": [{"id": seed.CONTACT_JOHN}]}}],
    )
    assert created.status == 200
    lead_id = created.body["_embedded"]["leads"][0]["id"]
    lead = api("GET", f"/api/v4/leads/{lead_id}?with=contacts").body
    assert lead["status_id"] == seed.STATUS_INCOMING  # the first stage after "unsorted"
    assert [(c["id"], c["is_main"]) for c in lead["_embedded"]["contacts"]] == [(seed.CONTACT_JOHN, True)]

    patched = api(
        "PATCH",
        f"/api/v4/contacts/{seed.CONTACT_JOHN}",
        {"custom_fields_values": [{"field_code": "EMAIL", "values": [{"value": "j.smith@example.com"}]}]},
    )
    assert patched.status == 200
    contact = standin.contact(seed.CONTACT_JOHN)
    assert contact is not None
    email = next(f for f in contact["custom_fields_values"] if f["field_code"] == "EMAIL")
    assert [(v["value"], v["enum_code"]) for v in email["values"]] == [("j.smith@example.com", "WORK")]
    assert [lead["id"] for lead in contact["_embedded"]["leads"]] == [seed.LEAD_REDESIGN, lead_id]
