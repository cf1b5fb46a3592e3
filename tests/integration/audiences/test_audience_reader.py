"""An audience read page by page from the Kommo stand-in: bulk reads, filters, lists, cursors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mailer_core.audiences import lists_api, reader
from mailer_core.audiences.lists_api import NewMember
from mailer_core.audiences.pages import AudiencePage
from mailer_core.audiences.reader import read_page
from mailer_core.audiences.spec import Audience, parse
from mailer_core.base.clock import FakeClock
from mailer_core.base.errors import InvalidInput
from mailer_core.kommo.client import KommoClient

from devstack.kommo_standin import seed
from devstack.kommo_standin.seed import Seed
from devstack.kommo_standin.server import KommoStandIn
from tests.support.fixtures.audiences import (
    BULK,
    bulk_address,
    bulk_lead,
    bulk_responsible,
    bulk_seed,
    bulk_stage,
    entity_reads,
    widget_caller,
)
from tests.support.fixtures.templates import TOKEN

MISSING_LEAD = 24999999


@pytest.fixture
def sample() -> Seed:
    return bulk_seed()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def pages(audience: Audience, clock: FakeClock, cursor: str | None = None) -> Iterator[AudiencePage]:
    while True:
        page = read_page(seed.ACCOUNT_ID, audience, cursor, clock=clock)
        yield page
        if page.cursor is None:
            return
        cursor = page.cursor


def addresses(found: list[AudiencePage]) -> list[str]:
    return [r.address for page in found for r in page.recipients]


def skipped(found: list[AudiencePage]) -> dict[str, int]:
    total: dict[str, int] = {}
    for page in found:
        for why, count in page.skipped.items():
            total[why] = total.get(why, 0) + count
    return total


def test_a_thousand_leads_by_id_cost_at_most_0_05_kommo_requests_per_recipient(
    kommo: KommoStandIn, clock: FakeClock
) -> None:
    # GIVEN a selection of 1,000 leads from a Kommo list view, a lead Kommo no longer has and
    # a lead whose only contact has no address
    ids = [bulk_lead(n) for n in range(BULK)] + [MISSING_LEAD, seed.LEAD_CONSULTING]
    audience = parse(seed.ACCOUNT_ID, {"ids": ids})
    before = entity_reads(kommo)

    # WHEN it is read page by page
    found = list(pages(audience, clock))

    # THEN every lead's main contact is a recipient once, about its lead, with its name
    assert addresses(found) == [bulk_address(n) for n in range(BULK)]
    first = found[0].recipients[0]
    assert first.entity == ("leads", bulk_lead(0)) and first.name == "Buyer 0"
    assert skipped(found) == {"not_found": 1, "no_address": 1}
    # AND each page brings its leads, contacts and companies for rendering, 250 leads at most
    assert all(len(page.entities["leads"]) <= 250 for page in found)
    assert set(found[0].entities) == {"leads", "contacts", "companies"}
    assert seed.COMPANY_ROMASHKA in found[0].entities["companies"]
    # AND Kommo was read 250 to a request: 3 requests per 250 leads
    requests = entity_reads(kommo) - before
    assert requests / BULK <= 0.05, requests
    assert requests == 3 * 4 + 2  # the last page: 2 ids, one lead without a company


def test_a_filter_by_stage_and_responsible_user_reads_kommos_own_filter(
    kommo: KommoStandIn, clock: FakeClock
) -> None:
    # GIVEN qualified leads of the manager (and the demo leads, which are not qualified)
    audience = parse(
        seed.ACCOUNT_ID,
        {
            "filter": {
                "pipeline_id": seed.PIPELINE_ID,
                "status_ids": [seed.STATUS_QUALIFIED],
                "responsible_user_ids": [seed.MANAGER_USER_ID],
            }
        },
    )
    expected = [
        bulk_address(n)
        for n in range(BULK)
        if bulk_stage(n) == seed.STATUS_QUALIFIED and bulk_responsible(n) == seed.MANAGER_USER_ID
    ]
    before = entity_reads(kommo)

    found = list(pages(audience, clock))

    # THEN exactly those leads, in id order, each once
    assert addresses(found) == expected and len(expected) == 250
    # AND Kommo filtered them itself: its documented parameters went out
    lists = [r for r in kommo.requests if r.path == "/api/v4/leads" and "statuses" in r.query]
    assert lists and all("order%5Bid%5D=asc" in r.query and "limit=250" in r.query for r in lists)
    assert (entity_reads(kommo) - before) / len(expected) <= 0.05


def test_a_filter_by_tag_keeps_the_tagged_leads(kommo: KommoStandIn, clock: FakeClock) -> None:
    audience = parse(
        seed.ACCOUNT_ID,
        {"filter": {"responsible_user_ids": [seed.MANAGER_USER_ID], "tags": ["vip"]}, "contacts": "all"},
    )
    found = list(pages(audience, clock))
    # the demo offer is the only VIP lead: its two contacts' three addresses
    assert addresses(found) == [
        "ivan.petrov@example.com",
        "olga.smirnova@example.com",
        "olga.home@example.org",
    ]


def test_leads_that_leave_the_filter_mid_read_do_not_make_the_next_page_skip_any(
    kommo: KommoStandIn, clock: FakeClock
) -> None:
    # GIVEN the negotiation stage (500 leads) read one page
    audience = parse(
        seed.ACCOUNT_ID,
        {"filter": {"pipeline_id": seed.PIPELINE_ID, "status_ids": [seed.STATUS_NEGOTIATION]}},
    )
    expected = [bulk_address(n) for n in range(BULK) if bulk_stage(n) == seed.STATUS_NEGOTIATION]
    first = read_page(seed.ACCOUNT_ID, audience, None, clock=clock)
    assert len(first.recipients) == 250

    # WHEN 40 leads already read move on to another stage (a campaign's trigger), and 3 new
    # negotiation leads show up among those not read yet
    client = KommoClient(seed.SUBDOMAIN, TOKEN, base_url=kommo.base_url, clock=clock)
    moved = [r.entity[1] for r in first.recipients[:40] if r.entity]
    client.update_entities(
        "leads", [{"id": i, "status_id": seed.STATUS_WON, "pipeline_id": seed.PIPELINE_ID} for i in moved]
    )
    joining = [bulk_lead(n) for n in (900, 902, 904)]
    client.update_entities("leads", [{"id": i, "status_id": seed.STATUS_NEGOTIATION} for i in joining])

    rest = list(pages(audience, clock, first.cursor))

    # THEN the rest of the stage is read without a gap or a repeat, the newcomers with it
    read = addresses([first, *rest])
    assert sorted(read) == sorted(expected + [bulk_address(n) for n in (900, 902, 904)])
    assert len(read) == len(set(read))


def test_main_or_all_contacts_of_leads_and_companies(kommo: KommoStandIn, clock: FakeClock) -> None:
    def read(payload: dict[str, Any]) -> list[str]:
        return addresses(list(pages(parse(seed.ACCOUNT_ID, payload), clock)))

    assert read({"ids": [seed.LEAD_OFFER]}) == ["ivan.petrov@example.com"]
    assert read({"ids": [seed.LEAD_OFFER], "contacts": "all"}) == [
        "ivan.petrov@example.com",
        "olga.smirnova@example.com",
        "olga.home@example.org",
    ]
    assert read({"entity_type": "contacts", "ids": [seed.CONTACT_OLGA]}) == ["olga.smirnova@example.com"]
    company = read({"entity_type": "companies", "ids": [seed.COMPANY_ROMASHKA]})
    assert company == ["ivan.petrov@example.com"]  # a company's contacts have no main one: the first


def test_target_lists_of_entities_and_addresses_follow_the_other_sources(
    kommo: KommoStandIn, clock: FakeClock
) -> None:
    # GIVEN a list of 300 addresses and two leads (one deleted in Kommo meanwhile)
    owner = widget_caller()
    made = lists_api.create(owner, {"name": "Fair visitors"}, clock=clock)
    members = [NewMember(address=f"Visitor{n:03d}@Example.com", name=f"Visitor {n}") for n in range(300)]
    members += [NewMember(entity_type="leads", entity_id=seed.LEAD_REDESIGN)]
    members += [NewMember(entity_type="leads", entity_id=MISSING_LEAD)]
    lists_api.add_members(seed.ACCOUNT_ID, made["id"], members, clock=clock)
    audience = parse(seed.ACCOUNT_ID, {"ids": [seed.LEAD_OFFER], "target_lists": [made["id"]]}, who=owner)

    found = list(pages(audience, clock))

    # THEN the ids come first, then the list's members: its 302 in one page (up to 5,000)
    got = addresses(found)
    assert got[0] == "ivan.petrov@example.com"
    assert "john.smith@example.com" in got and "Visitor007@Example.com" in got
    assert len(got) == 1 + 300 + 1
    assert skipped(found) == {"not_found": 1}
    plain = next(r for page in found for r in page.recipients if r.address == "Visitor007@Example.com")
    assert plain.entity is None and plain.name == "Visitor 7"
    assert len(found) == 1 + 1


def test_a_lists_page_ends_at_its_most_members_or_its_most_crm_entities(
    kommo: KommoStandIn, sample: Seed, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN pages of at most 5 members of which at most 2 CRM entities (5,000 and 250 in use)
    monkeypatch.setattr(reader, "LIST_PAGE", 5)
    monkeypatch.setattr(reader, "PAGE", 2)
    owner = widget_caller()
    made = lists_api.create(owner, {"name": "Mixed"}, clock=clock)
    members = [NewMember(entity_type="leads", entity_id=bulk_lead(n)) for n in range(3)]
    members += [NewMember(address=f"z{n}@example.com") for n in range(5)]  # after "leads:…"
    lists_api.add_members(seed.ACCOUNT_ID, made["id"], members, clock=clock)
    audience = parse(seed.ACCOUNT_ID, {"target_lists": [made["id"]]}, who=owner)

    found = list(pages(audience, clock))

    # THEN a page stops at its second lead, the next at its fifth member; each member once
    assert [len(page.recipients) for page in found] == [2, 5, 1]
    assert addresses(found) == [bulk_address(n) for n in range(3)] + [f"z{n}@example.com" for n in range(5)]
    assert [len(page.entities.get("leads", {})) for page in found] == [2, 1, 0]


def test_an_unknown_or_invisible_list_is_refused_naming_the_field(
    kommo: KommoStandIn, clock: FakeClock
) -> None:
    colleague_list = lists_api.create(widget_caller(8100003), {"name": "Mine"}, clock=clock)["id"]
    with pytest.raises(InvalidInput) as unknown:
        parse(seed.ACCOUNT_ID, {"ids": [1], "exclude_lists": ["01JUNKNOWN"]})
    assert unknown.value.field == "audience.exclude_lists[0]"
    with pytest.raises(InvalidInput) as hidden:
        parse(seed.ACCOUNT_ID, {"target_lists": [colleague_list]}, who=widget_caller())
    assert hidden.value.field == "audience.target_lists[0]"
    assert parse(seed.ACCOUNT_ID, {"target_lists": [colleague_list]}, who=widget_caller(admin=True))


def test_leads_kommo_returns_outside_the_filter_get_no_email(kommo: KommoStandIn, clock: FakeClock) -> None:
    # GIVEN an account whose Kommo ignores the filter (API filtering not enabled): every lead
    client = KommoClient(seed.SUBDOMAIN, TOKEN, base_url=kommo.base_url, clock=clock)
    original = client.get

    def unfiltered(path: str, params: Any = ()) -> Any:
        return original(path, [(k, v) for k, v in params if not k.startswith("filter[")])

    client.get = unfiltered  # type: ignore[method-assign]
    audience = parse(seed.ACCOUNT_ID, {"filter": {"responsible_user_ids": [seed.ADMIN_USER_ID]}})

    found: list[AudiencePage] = []
    cursor = None
    while True:
        page = read_page(seed.ACCOUNT_ID, audience, cursor, clock=clock, client=client)
        found.append(page)
        if (cursor := page.cursor) is None:
            break

    # THEN only the administrator's leads are recipients; the others are counted apart
    assert addresses(found) == [
        bulk_address(n) for n in range(BULK) if bulk_responsible(n) == seed.ADMIN_USER_ID
    ]
    assert skipped(found)["not_in_filter"] == BULK + 3 - 250
