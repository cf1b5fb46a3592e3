"""Exclusion lists leave out recipients by address, by entity or by contact, in batches."""

from __future__ import annotations

import pytest
from mailer_core.audiences import lists_api
from mailer_core.audiences.exclusions import excluded
from mailer_core.audiences.lists_api import NewMember
from mailer_core.audiences.pages import Recipient
from mailer_core.base.clock import FakeClock

from tests.support.fixtures.audiences import widget_caller


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_list(name: str, members: list[NewMember], clock: FakeClock) -> str:
    list_id = str(lists_api.create(widget_caller(), {"name": name}, clock=clock)["id"])
    lists_api.add_members(31000001, list_id, members, clock=clock)
    return list_id


@pytest.mark.usefixtures("aws_stack")
def test_an_address_an_entity_or_a_contact_on_a_list_excludes_the_recipient(
    clock: FakeClock, dynamodb_calls: list[str]
) -> None:
    # GIVEN an unsubscribed address, and a list of a lead and a contact
    opted_out = make_list("Opted out", [NewMember(address="Anna@Example.com")], clock)
    partners = make_list(
        "Partners",
        [NewMember(entity_type="leads", entity_id=11), NewMember(entity_type="contacts", entity_id=77)],
        clock,
    )
    recipients = [
        Recipient("anna@example.COM", ("leads", 1), contact_id=5),
        Recipient("boris@example.com", ("leads", 11), contact_id=6),
        Recipient("vera@example.com", ("leads", 12), contact_id=77),
        Recipient("gleb@example.com", ("leads", 13), contact_id=8),
        Recipient("plain@example.com"),
    ] + [Recipient(f"r{n}@example.com", ("leads", 1000 + n), contact_id=2000 + n) for n in range(245)]
    dynamodb_calls.clear()

    # WHEN a page of 250 recipients is checked against both lists
    out = excluded(31000001, [opted_out, partners], recipients)

    # THEN the address (any case), the lead and the contact are excluded, nobody else
    assert out == {"anna@example.com", "boris@example.com", "vera@example.com"}
    # AND the lists were read in batches of keys, never one read per recipient
    assert set(dynamodb_calls) == {"BatchGetItem"}
    keys = 2 * (250 * 3 - 1)  # per list: each address, entity and contact (one plain address)
    assert len(dynamodb_calls) == 1 + -(-keys // 100)  # the lists themselves, then their members


@pytest.mark.usefixtures("aws_stack")
def test_a_deleted_list_excludes_nobody(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a list deleted with members its deletion left behind (more than it deletes at once)
    monkeypatch.setattr(lists_api, "PURGE_PACKAGE", 1)
    gone = make_list(
        "Old", [NewMember(address="anna@example.com"), NewMember(address="boris@example.com")], clock
    )
    lists_api.delete(widget_caller(), gone)
    recipients = [Recipient("anna@example.com"), Recipient("boris@example.com")]
    assert excluded(31000001, [gone], recipients) == set()


@pytest.mark.usefixtures("aws_stack")
def test_no_lists_or_no_recipients_read_nothing(dynamodb_calls: list[str]) -> None:
    assert excluded(31000001, [], [Recipient("a@example.com")]) == set()
    assert excluded(31000001, ["X"], []) == set()
    assert dynamodb_calls == []
