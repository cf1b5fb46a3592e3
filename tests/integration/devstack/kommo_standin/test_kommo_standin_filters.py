"""The stand-in's list filters, as amoCRM's filters-api page documents them: stages with their
pipeline, a pipeline, responsible users, ids; `order[id]`; 250 a page with `_links.next`."""

from __future__ import annotations

import pytest

from devstack.kommo_standin import seed
from devstack.kommo_standin.seed import Seed, demo_seed
from tests.support.kommo_helpers import Api

OTHER_PIPELINE = 7400001


@pytest.fixture
def sample() -> Seed:
    """The demo account with its leads spread: REDESIGN qualified, CONSULTING the admin's and
    in another pipeline's stage of the same id."""
    data = demo_seed()
    for lead in data.leads:
        if lead["id"] == seed.LEAD_REDESIGN:
            lead["status_id"] = seed.STATUS_QUALIFIED
        if lead["id"] == seed.LEAD_CONSULTING:
            lead["responsible_user_id"] = seed.ADMIN_USER_ID
            lead["pipeline_id"] = OTHER_PIPELINE
    return data


def ids(api: Api, query: str, entity: str = "leads") -> list[int]:
    answer = api("GET", f"/api/v4/{entity}?{query}")
    assert answer.status in (200, 204), answer.body
    return [e["id"] for e in answer.body["_embedded"][entity]] if answer.status == 200 else []


def test_leads_filter_by_stage_with_its_pipeline(api: Api) -> None:
    stage = f"filter[statuses][0][pipeline_id]={seed.PIPELINE_ID}&filter[statuses][0][status_id]="
    assert ids(api, stage + str(seed.STATUS_INCOMING)) == [seed.LEAD_OFFER]
    assert ids(api, stage + str(seed.STATUS_QUALIFIED)) == [seed.LEAD_REDESIGN]
    two = (
        f"{stage}{seed.STATUS_QUALIFIED}&filter[statuses][1][pipeline_id]={OTHER_PIPELINE}"
        f"&filter[statuses][1][status_id]={seed.STATUS_INCOMING}"
    )
    assert ids(api, two) == [seed.LEAD_REDESIGN, seed.LEAD_CONSULTING]
    # a stage is a pair: the same status id in another pipeline is another stage
    assert (
        ids(api, f"filter[statuses][0][pipeline_id]={OTHER_PIPELINE}&filter[statuses][0][status_id]=1") == []
    )


def test_a_stage_without_its_pipeline_is_refused(api: Api) -> None:
    answer = api("GET", f"/api/v4/leads?filter[statuses][0][status_id]={seed.STATUS_INCOMING}")
    assert answer.status == 400
    assert "pipeline_id" in answer.body["detail"]


def test_leads_filter_by_pipeline_and_responsible_user_together(api: Api) -> None:
    assert ids(api, f"filter[pipeline_id][]={seed.PIPELINE_ID}") == [seed.LEAD_OFFER, seed.LEAD_REDESIGN]
    assert ids(api, f"filter[responsible_user_id][]={seed.ADMIN_USER_ID}") == [seed.LEAD_CONSULTING]
    both = f"filter[pipeline_id][]={seed.PIPELINE_ID}&filter[responsible_user_id][]={seed.ADMIN_USER_ID}"
    assert ids(api, both) == []
    anyone = (
        f"filter[responsible_user_id][0]={seed.ADMIN_USER_ID}"
        f"&filter[responsible_user_id][1]={seed.MANAGER_USER_ID}"
    )
    assert ids(api, anyone) == [seed.LEAD_OFFER, seed.LEAD_REDESIGN, seed.LEAD_CONSULTING]


def test_contacts_and_companies_filter_by_responsible_user_only(api: Api) -> None:
    manager = f"filter[responsible_user_id][]={seed.MANAGER_USER_ID}"
    assert ids(api, manager, "contacts") == [
        seed.CONTACT_IVAN,
        seed.CONTACT_OLGA,
        seed.CONTACT_JOHN,
        seed.CONTACT_MARIA,
    ]
    assert ids(api, manager, "companies") == [seed.COMPANY_ROMASHKA]
    assert ids(api, f"filter[responsible_user_id][]={seed.ADMIN_USER_ID}", "companies") == []
    for entity in ("contacts", "companies"):
        assert api("GET", f"/api/v4/{entity}?filter[statuses][0][pipeline_id]=1").status == 400


def test_order_by_id_and_pages_of_a_filter_link_the_next_page_with_the_filter(api: Api) -> None:
    assert ids(api, "order[id]=desc") == [seed.LEAD_CONSULTING, seed.LEAD_REDESIGN, seed.LEAD_OFFER]
    assert api("GET", "/api/v4/leads?order[id]=up").status == 400
    first = api(
        "GET", f"/api/v4/leads?filter[responsible_user_id][]={seed.MANAGER_USER_ID}&order[id]=asc&limit=1"
    )
    assert [lead["id"] for lead in first.body["_embedded"]["leads"]] == [seed.LEAD_OFFER]
    second = api("GET", first.body["_links"]["next"]["href"]).body
    assert [lead["id"] for lead in second["_embedded"]["leads"]] == [seed.LEAD_REDESIGN]
    assert "next" not in second["_links"]


def test_a_filtered_page_embeds_contacts_when_asked(api: Api) -> None:
    answer = api("GET", f"/api/v4/leads?with=contacts&filter[pipeline_id][]={seed.PIPELINE_ID}&limit=250")
    offer = answer.body["_embedded"]["leads"][0]
    assert {c["id"] for c in offer["_embedded"]["contacts"]} == {seed.CONTACT_IVAN, seed.CONTACT_OLGA}
