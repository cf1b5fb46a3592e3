"""/v1/triggers: administrators set triggers up, everyone reads them, input errors name the field."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.kommo_standin import seed
from tests.support.api_client import ApiClient
from tests.support.fixtures.automation import trigger


def test_an_administrator_creates_reads_changes_and_deletes_a_trigger(
    admin: ApiClient, manager: ApiClient
) -> None:
    created = admin.post(
        "/v1/triggers",
        {"name": "Set task", "type": "task", "params": {"text": "Call {subject}"}, "delay_seconds": 30},
    )
    assert created.status == 201, created.body
    view = created.json()
    assert view["params"] == {
        "text": "Call {subject}",
        "task_type_id": 1,
        "deadline_seconds": 86400,
        "responsible": "entity",
        "entity": "lead",
    }
    assert view["delay_seconds"] == 30
    # every user reads the account's triggers: templates of every user choose among them
    assert [t["id"] for t in manager.get("/v1/triggers").json()["items"]] == [view["id"]]
    changed = admin.patch(
        f"/v1/triggers/{view['id']}", {"params": {"text": "Call back", "entity": "contact"}}
    )
    assert changed.status == 200, changed.body
    assert changed.json()["params"]["entity"] == "contact"
    assert manager.get(f"/v1/triggers/{view['id']}").json()["params"]["text"] == "Call back"
    assert admin.delete(f"/v1/triggers/{view['id']}").status == 204
    assert manager.get(f"/v1/triggers/{view['id']}").status == 404


def test_a_user_who_is_not_an_administrator_cannot_change_triggers(
    admin: ApiClient, manager: ApiClient
) -> None:
    made = trigger(admin, "Note", "note", text="x")
    reply = manager.post("/v1/triggers", {"name": "n", "type": "note", "params": {"text": "x"}})
    assert reply.status == 403
    assert manager.patch(f"/v1/triggers/{made}", {"name": "y"}).status == 403
    assert manager.delete(f"/v1/triggers/{made}").status == 403
    assert admin.get(f"/v1/triggers/{made}").json()["name"] == "Note"


def test_another_accounts_trigger_is_not_found(admin: ApiClient, stranger: ApiClient) -> None:
    made = trigger(admin, "Note", "note", text="x")
    assert stranger.get(f"/v1/triggers/{made}").status == 404
    assert stranger.patch(f"/v1/triggers/{made}", {"name": "mine"}).status == 404
    assert stranger.get("/v1/triggers").json()["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "note", "params": {"text": "x"}}, "name"),
        ({"name": "n", "type": "teleport", "params": {}}, "type"),
        ({"name": "n", "type": "note", "params": {}}, "params.text"),
        ({"name": "n", "type": "note", "params": {"text": "x", "entity": "deal"}}, "params.entity"),
        ({"name": "n", "type": "stage", "params": {"status_id": "soon"}}, "params.status_id"),
        ({"name": "n", "type": "field", "params": {"field_id": 1}}, "params.value"),
        ({"name": "n", "type": "email", "params": {"template_id": "01NOPE"}}, "params.template_id"),
        ({"name": "n", "type": "tags", "params": {"entity": "lead"}}, "params.add"),
        ({"name": "n", "type": "task", "params": {"text": "x", "responsible": "boss"}}, "params.responsible"),
        ({"name": "n", "type": "note", "params": {"text": "x", "colour": "red"}}, "params.colour"),
        ({"name": "n", "type": "note", "params": {"text": "{{ lead.name"}}, "params.text"),
        ({"name": "n", "type": "field", "params": {"field_id": 1, "value": "{{ x | no }}"}}, "params.value"),
        ({"name": "n", "type": "note", "params": {"text": "x"}, "delay_seconds": -1}, "delay_seconds"),
        ({"name": "n", "type": "note", "params": {"text": "x"}, "when": "now"}, "when"),
    ],
)
def test_bad_input_answers_422_naming_the_field_and_stores_nothing(
    admin: ApiClient, body: dict[str, Any], field: str
) -> None:
    reply = admin.post("/v1/triggers", body)
    assert reply.status in (400, 422), reply.body
    assert reply.json()["field"] == field
    assert admin.get("/v1/triggers").json()["items"] == []


def test_a_template_or_email_naming_an_unknown_trigger_is_refused(
    admin: ApiClient, manager: ApiClient, mailbox: str
) -> None:
    reply = admin.post(
        "/v1/templates", {"name": "T", "subject": "s", "html": "h", "triggers": {"opened": ["01NOPE"]}}
    )
    assert reply.status == 422 and reply.json()["field"] == "triggers.opened.0"
    note = trigger(admin, "Note", "note", text="x")
    reply = admin.post(
        "/v1/templates", {"name": "T", "subject": "s", "html": "h", "triggers": {"clicked": [note]}}
    )
    assert reply.status == 422 and reply.json()["field"] == "triggers.clicked"
    reply = manager.post(
        "/v1/messages",
        {
            "entity": {"type": "leads", "id": seed.LEAD_OFFER},
            "subject": "s",
            "html": "h",
            "triggers": {"not_opened": [note]},
        },
    )
    assert reply.status == 422 and reply.json()["field"] == "not_opened_after"
