"""Mailboxes belong to users: any number each, exactly one default, administrators manage all."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.store.models import MailboxModel

from tests.support.api_client import ApiClient
from tests.support.fixtures.access import ACCOUNT, ANNA, BORIS, mailbox_body
from tests.support.kommo_accounts import serialize_moto


def create(client: ApiClient, **overrides: Any) -> str:
    reply = client.post("/v1/mailboxes", mailbox_body(**overrides))
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def defaults_of(user_id: int) -> list[str]:
    return sorted(
        m.mailbox_id
        for m in MailboxModel.query(ACCOUNT, consistent_read=True)
        if int(m.user_id) == user_id and m.is_default
    )


def test_the_first_mailbox_becomes_the_default_and_the_next_ones_do_not(anna: ApiClient) -> None:
    first = create(anna, is_default=False)  # the first one is the default whatever was asked
    second = create(anna)
    third = create(anna, is_default=False, sender_email="anna.3@example.com")
    assert defaults_of(ANNA) == [first]
    views = {m["id"]: m["is_default"] for m in anna.get("/v1/mailboxes").json()["items"]}
    assert views == {first: True, second: False, third: False}


def test_making_a_mailbox_the_default_unsets_the_other(anna: ApiClient) -> None:
    first, second = create(anna), create(anna)
    reply = anna.patch(f"/v1/mailboxes/{second}", {"is_default": True})
    assert reply.status == 200 and reply.json()["is_default"] is True
    assert defaults_of(ANNA) == [second]
    assert anna.get(f"/v1/mailboxes/{first}").json()["is_default"] is False
    # A new mailbox created as the default takes over in the same way.
    third = create(anna, is_default=True)
    assert defaults_of(ANNA) == [third]
    # Compose without a mailbox leaves through the default.
    message = anna.post("/v1/messages", {"to": ["c@example.com"], "subject": "s", "html": "x"}).json()
    assert message["mailbox_id"] == third


def test_the_default_cannot_be_unset_by_itself(anna: ApiClient) -> None:
    only = create(anna)
    reply = anna.patch(f"/v1/mailboxes/{only}", {"is_default": False, "sender_name": "Other"})
    assert reply.status == 422 and reply.json()["field"] == "is_default"
    stored = MailboxModel.get(ACCOUNT, only)
    assert stored.is_default is True and stored.sender_name == "Anna"  # nothing of the patch written
    assert anna.patch(f"/v1/mailboxes/{only}", {"is_default": True}).status == 200  # a no-op


def test_deleting_the_default_promotes_the_oldest_remaining_and_the_last_leaves_none(
    anna: ApiClient, boris: ApiClient
) -> None:
    first, second, third = create(anna), create(anna), create(anna)
    boris_own = create(boris)
    anna.patch(f"/v1/mailboxes/{third}", {"is_default": True})

    assert anna.delete(f"/v1/mailboxes/{third}").status == 204
    assert defaults_of(ANNA) == [first]  # the oldest remaining, not the newest
    assert anna.delete(f"/v1/mailboxes/{second}").status == 204
    assert defaults_of(ANNA) == [first]  # deleting a non-default changes nothing
    assert anna.delete(f"/v1/mailboxes/{first}").status == 204
    assert defaults_of(ANNA) == [] and mailbox_connection.default_for_user(ACCOUNT, ANNA) is None
    assert defaults_of(BORIS) == [boris_own]  # another user's default is never touched


def test_a_user_manages_only_their_own_and_an_administrator_everyones(
    owner: ApiClient, anna: ApiClient, boris: ApiClient
) -> None:
    annas = create(anna)
    assert boris.get(f"/v1/mailboxes/{annas}").status == 404
    assert boris.patch(f"/v1/mailboxes/{annas}", {"is_default": True}).status == 404
    assert boris.delete(f"/v1/mailboxes/{annas}").status == 404
    refused = boris.post("/v1/mailboxes", mailbox_body(user_id=ANNA))
    assert refused.status == 403 and refused.json()["reason"] == "admin_only"
    assert [m["id"] for m in boris.get("/v1/mailboxes").json()["items"]] == []

    # The administrator makes Boris a mailbox: it is his first, so his default.
    made = owner.post("/v1/mailboxes", mailbox_body(user_id=BORIS, sender_email="boris@example.com"))
    assert made.status == 201 and made.json()["user_id"] == BORIS and made.json()["is_default"] is True
    assert {m["user_id"] for m in owner.get("/v1/mailboxes").json()["items"]} == {ANNA, BORIS}


def test_moving_a_default_mailbox_to_another_user_keeps_one_default_each(
    owner: ApiClient, anna: ApiClient, boris: ApiClient
) -> None:
    moved, stays = create(anna), create(anna)
    borises = create(boris)
    # WHEN the administrator gives Anna's default mailbox to Boris, who has a default already
    reply = owner.patch(f"/v1/mailboxes/{moved}", {"user_id": BORIS})
    # THEN it is Boris's, not his default; Anna's remaining mailbox became hers
    assert reply.status == 200 and reply.json()["user_id"] == BORIS and reply.json()["is_default"] is False
    assert defaults_of(ANNA) == [stays] and defaults_of(BORIS) == [borises]
    # … and given back as the default, it takes over Anna's default in the same change
    owner.patch(f"/v1/mailboxes/{moved}", {"user_id": ANNA, "is_default": True})
    assert defaults_of(ANNA) == [moved] and defaults_of(BORIS) == [borises]


def test_concurrent_make_default_calls_leave_exactly_one_default(
    anna: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    serialize_moto(monkeypatch)  # moto's requests atomic, as DynamoDB's writes are
    ids = [create(anna) for _ in range(4)]
    for _ in range(3):
        start = threading.Barrier(len(ids))
        answers: list[int] = []

        def make_default(
            mailbox_id: str,
            client: ApiClient,
            start: threading.Barrier = start,
            answers: list[int] = answers,
        ) -> None:
            start.wait()
            answers.append(client.patch(f"/v1/mailboxes/{mailbox_id}", {"is_default": True}).status)

        threads = [
            threading.Thread(target=make_default, args=(mailbox_id, anna.in_environment(n + 2)))
            for n, mailbox_id in enumerate(ids)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(answers) == len(ids) and set(answers) <= {200, 409}, answers
        assert len(defaults_of(ANNA)) == 1
