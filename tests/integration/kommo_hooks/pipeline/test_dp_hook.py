"""`POST /hooks/kommo/dp`: Kommo's digital pipeline posts, as captured (form) and as JSON.

The bodies are what Kommo sends: bracket keys (raw, or %5B…%5D as PHP's http_build_query
writes them), every value a string, `+` for spaces, %XX escapes, UTF-8 Cyrillic.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.pipeline_post import dp_form_body
from devstack.resources import StackResources
from tests.support.fixtures.pipeline import (
    EVENT_TIME,
    FORM,
    SECRET,
    TEMPLATE_ID,
    form_fields,
    messages,
    post_hook,
    queued_jobs,
    run_pipeline,
)
from tests.support.kommo_accounts import save_account_with_token

DP = "/hooks/kommo/dp"


def raw_form(fields: list[tuple[str, str]]) -> str:
    """A form as in the captured posts: brackets left raw, values escaped with + and %XX."""
    return "&".join(f"{k}={quote(v, safe='', encoding='utf-8').replace('%20', '+')}" for k, v in fields)


@pytest.mark.parametrize(
    ("event_type", "type_code", "direction"),
    [
        (1, "lead_added", "went_to_trigger"),
        (14, "lead_status_changed", "went_to_trigger"),
        (15, "lead_appeared_in_status", "went_in_trigger"),
        (15, "lead_appeared_in_status", "went_to_trigger"),
        (14, "lead_status_changed", None),  # posts from before direction_of_movement existed
    ],
)
def test_given_a_captured_form_post_when_it_arrives_then_it_is_accepted_and_queued_once(
    installed: StackResources,
    event_type: int,
    type_code: str,
    direction: str | None,
) -> None:
    fields = form_fields(
        TEMPLATE_ID,
        **{
            "event[type]": str(event_type),
            "event[type_code]": type_code,
            "event[data][direction_of_movement]": direction,
            # The widget's settings form may send more than Mailer reads, in Cyrillic too.
            "action[settings][widget][settings][comment]": "Коммерческое предложение & скидка 10%",
        },
    )

    reply = post_hook(DP, raw_form(fields))

    assert reply.status == 202, reply.body
    assert reply.json()["status"] == "accepted"
    assert queued_jobs(installed) == 1  # the work waits on the queue: the answer never waits on Kommo


def test_given_the_form_as_php_encodes_it_base64_through_api_gateway_then_it_is_accepted(
    installed: StackResources,
) -> None:
    body = urlencode(form_fields(TEMPLATE_ID))  # %5B…%5D brackets, as http_build_query writes

    reply = post_hook(DP, body, as_base64=True)

    assert reply.status == 202, reply.body
    assert queued_jobs(installed) == 1


def test_given_the_same_fields_as_json_then_it_is_accepted(installed: StackResources) -> None:
    body = {
        "event": {
            "type": 15,
            "type_code": "lead_appeared_in_status",
            "data": {
                "id": seed.LEAD_OFFER,
                "element_type": 2,
                "status_id": seed.STATUS_QUALIFIED,
                "pipeline_id": seed.PIPELINE_ID,
                "direction_of_movement": "went_in_trigger",
            },
            "time": EVENT_TIME + 1,
        },
        "action": {"settings": {"widget": {"settings": {"template_id": TEMPLATE_ID, "secret": SECRET}}}},
        "subdomain": seed.SUBDOMAIN,
        "account_id": seed.ACCOUNT_ID,
    }

    reply = post_hook(DP, json.dumps(body), content_type="application/json")

    assert reply.status == 202, reply.body
    assert queued_jobs(installed) == 1


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"event[data][direction_of_movement]": "went_from_trigger"}, "left"),
        ({"event[type]": "16", "event[type_code]": "mail_in"}, "event type 16"),
        ({"event[data][element_type]": "12"}, "element type 12"),
    ],
)
def test_given_an_event_that_sends_nothing_then_it_is_ignored_and_nothing_is_queued(
    installed: StackResources, changes: dict[str, str], reason: str
) -> None:
    reply = post_hook(DP, raw_form(form_fields(TEMPLATE_ID, **changes)))

    assert reply.status == 200
    assert reply.json()["status"] == "ignored" and reason in reply.json()["reason"]
    assert queued_jobs(installed) == 0


def test_given_an_ignored_event_with_a_wrong_secret_then_it_is_refused_not_ignored(
    installed: StackResources,
) -> None:
    changes = {"event[data][direction_of_movement]": "went_from_trigger"}
    changes["action[settings][widget][settings][secret]"] = "guess"

    assert post_hook(DP, raw_form(form_fields(TEMPLATE_ID, **changes))).status == 404


@pytest.mark.parametrize(
    "changes",
    [
        {"action[settings][widget][settings][secret]": SECRET[:-1] + "x"},
        {"action[settings][widget][settings][secret]": None},
        {"action[settings][widget][settings][secret]": ""},
        {"account_id": "42000002"},  # a foreign account: not installed here
        {"subdomain": "othercompany"},  # the secret's account, another subdomain
    ],
    ids=["wrong secret", "no secret", "empty secret", "foreign account", "subdomain mismatch"],
)
def test_given_a_post_that_is_not_this_installations_then_it_answers_404_and_queues_nothing(
    installed: StackResources, changes: dict[str, Any]
) -> None:
    reply = post_hook(DP, raw_form(form_fields(TEMPLATE_ID, **changes)))

    assert reply.status == 404
    assert reply.json()["error"] == "not_found"
    assert SECRET not in reply.body
    assert queued_jobs(installed) == 0


def test_given_a_foreign_installed_account_with_its_own_secret_then_our_secret_does_not_open_it(
    installed: StackResources,
) -> None:
    save_account_with_token("other-token", account_id=42000002, dp_secret="the-other-accounts-secret")

    reply = post_hook(DP, raw_form(form_fields(TEMPLATE_ID, account_id="42000002")))

    assert reply.status == 404
    assert queued_jobs(installed) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("", "body"),
        ("this is not a form", "body"),
        ("event[type]=14&event[type]=15", "body"),  # a repeated key
        ("event[data=1", "body"),  # unbalanced brackets
        ("event=1&event[type]=14", "body"),  # a value and an object at once
        ("%FF%FE=1", "body"),  # not UTF-8
    ],
)
def test_given_a_body_that_is_not_a_form_then_it_answers_400(
    installed: StackResources, body: str, field: str
) -> None:
    reply = post_hook(DP, body)

    assert reply.status == 400, reply.body
    assert reply.json()["field"] == field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event[data][id]": "abc"}, "event.data.id"),
        ({"event[data][id]": None}, "event.data.id"),
        ({"event[data][status_id]": "-3"}, "event.data.status_id"),
        ({"event[type]": "fourteen"}, "event.type"),
        ({"event[time]": None}, "event.time"),
        ({"account_id": "31000001.5"}, "account_id"),
        ({"subdomain": "not a subdomain"}, "subdomain"),
    ],
)
def test_given_an_event_field_missing_or_malformed_then_400_names_it(
    installed: StackResources, changes: dict[str, Any], field: str
) -> None:
    reply = post_hook(DP, raw_form(form_fields(TEMPLATE_ID, **changes)))

    assert reply.status == 400, reply.body
    assert reply.json()["field"] == field
    assert queued_jobs(installed) == 0


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("template_id", "", "choose the template"),
        ("template_id", "../../etc", "not an id"),
        ("mailbox_id", "a b", "not an id"),
        ("delay", "-5", "whole number"),
        ("delay", "1.5", "whole number"),
        ("delay", "soon", "whole number"),
        ("delay", str(367 * 86400), "at most"),
        ("to", "not-an-address", "not a valid email address"),
        ("to", "{{ contact.email ", "{{"),  # a variable that does not compile
    ],
)
def test_given_a_malformed_action_setting_then_400_names_the_setting(
    installed: StackResources, setting: str, value: str, problem: str
) -> None:
    key = f"action[settings][widget][settings][{setting}]"

    reply = post_hook(DP, raw_form(form_fields(TEMPLATE_ID, **{key: value})))

    assert reply.status == 400, reply.body
    assert reply.json()["field"] == f"action.settings.widget.settings.{setting}"
    assert problem in reply.json()["message"] or setting == "to"
    assert queued_jobs(installed) == 0


def test_given_the_same_event_again_then_200_duplicate_and_nothing_is_composed_twice(
    aws_stack: StackResources, kommo: KommoStandIn, template: dict[str, Any]
) -> None:
    body = raw_form(form_fields(template["id"]))
    first = post_hook(DP, body)
    run_pipeline(aws_stack)

    replay = post_hook(DP, body)
    run_pipeline(aws_stack)

    assert first.status == 202 and replay.status == 200
    assert replay.json() == {"status": "duplicate", "message_id": first.json()["message_id"]}
    assert [m.message_id for m in messages()] == [first.json()["message_id"]]


def test_given_two_mailer_actions_on_one_stage_then_each_is_its_own_event(installed: StackResources) -> None:
    with_delay = {"action[settings][widget][settings][delay]": "60"}
    other_template = {"action[settings][widget][settings][template_id]": "01KAXYZ00000000000000000CD"}

    first = post_hook(DP, raw_form(form_fields(TEMPLATE_ID)))
    second = post_hook(DP, raw_form(form_fields(TEMPLATE_ID, **with_delay)))
    third = post_hook(DP, raw_form(form_fields(TEMPLATE_ID, **other_template)))

    assert (first.status, second.status, third.status) == (202, 202, 202)
    assert len({r.json()["message_id"] for r in (first, second, third)}) == 3
    assert queued_jobs(installed) == 3


def test_given_a_hook_then_its_message_id_is_a_ulid_of_the_event_time(installed: StackResources) -> None:
    from ulid import ULID

    reply = post_hook(DP, raw_form(form_fields(TEMPLATE_ID, **{"event[time]": str(EVENT_TIME)})))

    assert ULID.from_str(reply.json()["message_id"]).milliseconds == EVENT_TIME * 1000


def test_the_devstack_body_builder_writes_what_the_hook_reads(installed: StackResources) -> None:
    body = dp_form_body(
        account_id=seed.ACCOUNT_ID,
        subdomain=seed.SUBDOMAIN,
        secret=SECRET,
        lead_id=seed.LEAD_OFFER,
        pipeline_id=seed.PIPELINE_ID,
        status_id=seed.STATUS_QUALIFIED,
        template_id=TEMPLATE_ID,
        settings={"to": "{{ contact.email }}", "delay": 5},
    )

    assert "%7B%7B+contact.email+%7D%7D" in body  # spaces as +, braces %-escaped
    assert post_hook(DP, body, content_type=f"{FORM}; charset=UTF-8").status == 202


def test_given_the_queue_refuses_the_job_then_5xx_and_kommos_next_attempt_is_accepted(
    installed: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailer_core.base.config import reset_settings

    body = raw_form(form_fields(TEMPLATE_ID))
    monkeypatch.setenv("MAILER_PIPELINE_QUEUE_URL", installed.refs["PipelineQueue"] + "-gone")
    reset_settings()
    refused = post_hook(DP, body)
    monkeypatch.setenv("MAILER_PIPELINE_QUEUE_URL", installed.refs["PipelineQueue"])
    reset_settings()

    again = post_hook(DP, body)

    assert refused.status >= 500  # nothing remembered: the event was not queued
    assert again.status == 202, again.body
    assert queued_jobs(installed) == 1


def test_given_empty_settings_as_php_encodes_them_in_json_then_404_not_400(installed: StackResources) -> None:
    body = {
        "event": {
            "type": "14",
            "time": "1764000000",
            "data": {"id": "1", "status_id": "2", "pipeline_id": "3"},
        },
        "action": {"settings": {"widget": {"settings": []}}},
        "subdomain": seed.SUBDOMAIN,
        "account_id": str(seed.ACCOUNT_ID),
    }

    assert post_hook(DP, json.dumps(body), content_type="application/json").status == 404


def test_given_the_accounts_daily_cap_is_used_up_then_429_and_nothing_is_queued_or_remembered(
    installed: StackResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailer_core.kommo_hooks import jobs

    monkeypatch.setattr(jobs, "AUTO_SENDS_PER_DAY", 2)
    replies = [
        post_hook(DP, raw_form(form_fields(TEMPLATE_ID, **{"event[time]": str(EVENT_TIME + n)})))
        for n in range(3)
    ]

    assert [r.status for r in replies] == [202, 202, 429]
    assert replies[2].json()["reason"] == "daily_cap" and "2 automatic emails" in replies[2].json()["message"]
    assert queued_jobs(installed) == 2
    # the refused event is not remembered: on a day with room, Kommo's next delivery of it goes
    monkeypatch.setattr(jobs, "AUTO_SENDS_PER_DAY", 3)
    assert (
        post_hook(DP, raw_form(form_fields(TEMPLATE_ID, **{"event[time]": str(EVENT_TIME + 2)}))).status
        == 202
    )


@pytest.mark.parametrize(
    ("shift", "words"), [(-3601, "more than 60 minutes old"), (301, "in the future")], ids=["old", "ahead"]
)
def test_given_an_event_out_of_time_then_200_ignored_and_nothing_queued(
    installed: StackResources, shift: int, words: str
) -> None:
    now = int(time.time())
    reply = post_hook(DP, raw_form(form_fields(TEMPLATE_ID, **{"event[time]": str(now + shift)})))

    assert reply.status == 200 and reply.json()["status"] == "ignored"
    assert words in reply.json()["reason"]
    assert queued_jobs(installed) == 0
