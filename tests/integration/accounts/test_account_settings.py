"""GET/PATCH /v1/settings, who may change them, and where the defaults are used."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from mailer_core.accounts import access
from mailer_core.accounts.auth import Caller
from mailer_core.base.clock import FakeClock
from mailer_core.base.errors import Forbidden
from mailer_core.store.models import AccountModel, MailboxModel
from mailer_core.tracking import machine_traffic

from tests.support.api_client import ApiClient
from tests.support.fixtures.access import ACCOUNT, ANNA, BORIS, OTHER_ACCOUNT, caller, mailbox_body

DEFAULTS: dict[str, Any] = {
    "allowed_user_ids": None,
    "admin_user_ids": [],
    "default_rate_per_second": 1.0,
    "default_daily_cap": 2000,
    "track_opens": True,
    "filter_machine_traffic": True,
    "auto_emails_per_entity_per_day": 3,
}


def settings_of(client: ApiClient) -> dict[str, Any]:
    reply = client.get("/v1/settings")
    assert reply.status == 200, reply.body
    return {k: v for k, v in reply.json().items() if k in DEFAULTS}


def test_an_account_that_never_saved_settings_has_the_defaults_and_lets_everyone_in(anna: ApiClient) -> None:
    # GIVEN no account item at all (composed without installing, as the tests and local stack do)
    assert settings_of(anna) == DEFAULTS
    assert anna.get("/v1/me").json()["is_admin"] is False
    assert anna.get("/v1/mailboxes").status == 200


def test_an_administrator_changes_the_settings_and_every_user_reads_them(
    owner: ApiClient, anna: ApiClient
) -> None:
    change = {
        "allowed_user_ids": [ANNA, BORIS, ANNA],
        "admin_user_ids": [BORIS],
        "default_rate_per_second": 0.5,
        "default_daily_cap": 300,
        "track_opens": False,
        "filter_machine_traffic": False,
        "auto_emails_per_entity_per_day": 5,
    }
    reply = owner.patch("/v1/settings", change)

    assert reply.status == 200, reply.body
    expected = {**change, "allowed_user_ids": [ANNA, BORIS]}  # sorted, once each
    assert {k: v for k, v in reply.json().items() if k in DEFAULTS} == expected
    assert settings_of(anna) == expected
    stored = AccountModel.get(ACCOUNT, consistent_read=True)
    assert stored.subdomain == "mailerdemo" and stored.status == "active"  # an item made from the token
    assert int(stored.settings_updated_by) == 500


def test_null_puts_a_setting_back_to_its_default(owner: ApiClient) -> None:
    owner.patch("/v1/settings", {"default_daily_cap": 10, "allowed_user_ids": [ANNA]})
    reply = owner.patch("/v1/settings", {"default_daily_cap": None, "allowed_user_ids": []})
    assert reply.json()["default_daily_cap"] == 2000 and reply.json()["allowed_user_ids"] is None
    stored = AccountModel.get(ACCOUNT, consistent_read=True)
    assert stored.default_daily_cap is None and stored.allowed_user_ids is None


def test_only_administrators_change_the_settings(owner: ApiClient, anna: ApiClient, boris: ApiClient) -> None:
    refused = anna.patch("/v1/settings", {"default_daily_cap": 1})
    assert refused.status == 403 and refused.json()["reason"] == "admin_only"
    # A Mailer administrator named in the settings may, though Kommo does not call them an admin.
    owner.patch("/v1/settings", {"admin_user_ids": [BORIS]})
    assert boris.get("/v1/me").json()["is_admin"] is True
    assert boris.patch("/v1/settings", {"default_daily_cap": 7}).status == 200
    assert settings_of(anna)["default_daily_cap"] == 7


def test_a_mailer_administrator_sees_and_manages_everyones_mailboxes(
    owner: ApiClient, anna: ApiClient, boris: ApiClient
) -> None:
    mailbox = anna.post("/v1/mailboxes", mailbox_body()).json()["id"]
    assert boris.get(f"/v1/mailboxes/{mailbox}").status == 404
    owner.patch("/v1/settings", {"admin_user_ids": [BORIS]})
    assert [m["id"] for m in boris.get("/v1/mailboxes").json()["items"]] == [mailbox]
    assert boris.patch(f"/v1/mailboxes/{mailbox}", {"sender_name": "Anna S."}).status == 200


def test_an_administrator_of_another_account_changes_only_their_own(
    owner: ApiClient, anna: ApiClient, stranger: ApiClient
) -> None:
    owner.patch("/v1/settings", {"allowed_user_ids": [ANNA], "default_daily_cap": 100})
    reply = stranger.patch("/v1/settings", {"default_daily_cap": 5})
    assert reply.status == 200
    assert reply.json()["allowed_user_ids"] is None and reply.json()["default_daily_cap"] == 5
    assert settings_of(anna)["default_daily_cap"] == 100
    assert AccountModel.get(OTHER_ACCOUNT).default_daily_cap == 5


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"colour": "red"}, 422, "colour"),
        ({}, 422, "body"),
        ([], 422, "body"),
        ({"allowed_user_ids": "501"}, 422, "allowed_user_ids"),
        ({"allowed_user_ids": [501, "502"]}, 422, "allowed_user_ids[1]"),
        ({"admin_user_ids": [0]}, 422, "admin_user_ids[0]"),
        ({"admin_user_ids": [True]}, 422, "admin_user_ids[0]"),
        ({"allowed_user_ids": list(range(1, 1002))}, 422, "allowed_user_ids"),
        ({"default_rate_per_second": 0}, 422, "default_rate_per_second"),
        ({"default_rate_per_second": 101}, 422, "default_rate_per_second"),
        ({"default_rate_per_second": "1"}, 422, "default_rate_per_second"),
        ({"default_daily_cap": 0}, 422, "default_daily_cap"),
        ({"default_daily_cap": 2.5}, 422, "default_daily_cap"),
        ({"track_opens": "yes"}, 422, "track_opens"),
        ({"filter_machine_traffic": 1}, 422, "filter_machine_traffic"),
        ({"auto_emails_per_entity_per_day": 0}, 422, "auto_emails_per_entity_per_day"),
        ({"auto_emails_per_entity_per_day": 1001}, 422, "auto_emails_per_entity_per_day"),
        ({"default_daily_cap": 10, "track_opens": "no"}, 422, "track_opens"),
    ],
)
def test_a_bad_setting_is_named_and_nothing_is_written(
    owner: ApiClient, body: Any, status: int, field: str
) -> None:
    reply = owner.patch("/v1/settings", body)
    assert (reply.status, reply.json().get("field")) == (status, field), reply.body
    assert AccountModel.count(ACCOUNT) == 0  # not even the item was made


def test_a_body_that_is_not_json_is_a_400(owner: ApiClient) -> None:
    reply = owner.call("PATCH", "/v1/settings", "{not json")
    assert reply.status == 400 and reply.json()["field"] == "body"


def test_new_mailboxes_take_the_accounts_defaults_unless_they_give_their_own(
    owner: ApiClient, anna: ApiClient
) -> None:
    owner.patch("/v1/settings", {"default_rate_per_second": 0.2, "default_daily_cap": 150})
    plain = anna.post("/v1/mailboxes", mailbox_body()).json()
    own = anna.post("/v1/mailboxes", mailbox_body(rate_per_second=3, daily_cap=900)).json()
    assert (plain["rate_per_second"], plain["daily_cap"]) == (0.2, 150)
    assert (own["rate_per_second"], own["daily_cap"]) == (3.0, 900)
    stored = MailboxModel.get(ACCOUNT, plain["id"])
    assert (float(stored.rate_per_second), int(stored.daily_cap)) == (0.2, 150)


def test_the_open_pixel_default_applies_to_emails_and_templates_that_do_not_say(
    owner: ApiClient, anna: ApiClient
) -> None:
    anna.post("/v1/mailboxes", mailbox_body())
    email = {"to": ["client@example.com"], "subject": "Hi", "html": "<p>Hi</p>"}
    assert anna.post("/v1/messages", email).json()["track_opens"] is True
    owner.patch("/v1/settings", {"track_opens": False})

    assert anna.post("/v1/messages", email).json()["track_opens"] is False
    assert anna.post("/v1/messages", {**email, "track_opens": True}).json()["track_opens"] is True
    template = anna.post("/v1/templates", {"name": "T", "subject": "s", "html": "<p>x</p>"}).json()
    assert template["track_opens"] is False
    from_template = anna.post("/v1/messages", {"template_id": template["id"], "to": ["c@example.com"]})
    assert from_template.json()["track_opens"] is False


def test_the_machine_traffic_switch_and_the_automatic_email_cap_are_read_from_the_settings(
    owner: ApiClient,
) -> None:
    assert access.auto_email_cap(ACCOUNT) == 3
    assert machine_traffic.filter_on(ACCOUNT) is True
    owner.patch("/v1/settings", {"filter_machine_traffic": False, "auto_emails_per_entity_per_day": 9})
    machine_traffic.forget_switches()
    assert machine_traffic.filter_on(ACCOUNT) is False
    assert access.auto_email_cap(ACCOUNT) == 9


@pytest.mark.usefixtures("aws_stack")
def test_a_change_made_elsewhere_is_seen_within_the_cache_time() -> None:
    clock = FakeClock()
    anna = Caller(account_id=ACCOUNT, subdomain="mailerdemo", user_id=ANNA, is_admin=False)
    assert access.authorize(anna, clock=clock) == anna
    # GIVEN another container restricts Mailer to Boris (written straight to the table)
    AccountModel(ACCOUNT, subdomain="mailerdemo", allowed_user_ids=[BORIS]).save()
    clock.advance(access.CACHE_SECONDS - 1)
    assert access.authorize(anna, clock=clock) == anna  # still what this container read
    clock.advance(1)
    with pytest.raises(Forbidden) as refused:
        access.authorize(anna, clock=clock)
    assert refused.value.details == {"reason": "user_not_allowed"}
    assert access.account_active(ACCOUNT, clock=clock) is True


@pytest.mark.usefixtures("aws_stack")
def test_the_effective_admin_flag_replaces_the_tokens() -> None:
    AccountModel(ACCOUNT, subdomain="mailerdemo", admin_user_ids=[BORIS], allowed_user_ids=[ANNA]).save()
    boris = Caller(account_id=ACCOUNT, subdomain="mailerdemo", user_id=BORIS, is_admin=False)
    kommo_admin = Caller(account_id=ACCOUNT, subdomain="mailerdemo", user_id=777, is_admin=True)
    assert access.authorize(boris).is_admin is True  # a Mailer administrator, allowed though not listed
    assert access.authorize(kommo_admin) == kommo_admin  # Kommo's administrators always are
    stale = FakeClock()
    stale.advance(-timedelta(days=1).total_seconds())  # a clock behind the cached read reads again
    assert access.authorize(boris, clock=stale).is_admin is True


def test_every_refusal_names_its_reason_in_the_error_body(owner: ApiClient) -> None:
    owner.patch("/v1/settings", {"allowed_user_ids": [ANNA]})
    reply = caller(BORIS).get("/v1/templates")
    assert reply.status == 403
    body = reply.json()
    assert body["error"] == "forbidden" and body["reason"] == "user_not_allowed" and body["message"]


def test_the_opt_out_settings_default_to_a_footer_and_nothing_in_kommo(
    owner: ApiClient, anna: ApiClient
) -> None:
    current = anna.get("/v1/settings").json()
    assert (current["opt_out_footer"], current["opt_out_tag"], current["opt_out_note"]) == (True, None, False)
    reply = owner.patch(
        "/v1/settings", {"opt_out_footer": False, "opt_out_tag": " unsubscribed ", "opt_out_note": True}
    )
    assert reply.status == 200, reply.body
    assert (reply.json()["opt_out_footer"], reply.json()["opt_out_tag"], reply.json()["opt_out_note"]) == (
        False,
        "unsubscribed",
        True,
    )
    assert access.settings_of(ACCOUNT).opt_out_tag == "unsubscribed"
    back = owner.patch("/v1/settings", {"opt_out_footer": None, "opt_out_tag": None}).json()
    assert (back["opt_out_footer"], back["opt_out_tag"], back["opt_out_note"]) == (True, None, True)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"opt_out_footer": "no"}, "opt_out_footer"),
        ({"opt_out_note": 1}, "opt_out_note"),
        ({"opt_out_tag": ""}, "opt_out_tag"),
        ({"opt_out_tag": "   "}, "opt_out_tag"),
        ({"opt_out_tag": "x" * 101}, "opt_out_tag"),
        ({"opt_out_tag": "two\nlines"}, "opt_out_tag"),
        ({"opt_out_tag": ["a"]}, "opt_out_tag"),
    ],
)
def test_a_bad_opt_out_setting_is_named(owner: ApiClient, body: Any, field: str) -> None:
    reply = owner.patch("/v1/settings", body)
    assert (reply.status, reply.json().get("field")) == (422, field), reply.body
    assert AccountModel.count(ACCOUNT) == 0
