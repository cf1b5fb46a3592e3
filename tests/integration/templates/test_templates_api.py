"""/v1/templates: CRUD, who sees and edits what, and what a saved template must be."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api_client import ApiClient
from tests.support.fixtures.templates import COLLEAGUE_ID, OFFER


def create(client: ApiClient, **body: Any) -> dict[str, Any]:
    reply = client.post("/v1/templates", {**OFFER, **body})
    assert reply.status == 201, reply.body
    return dict(reply.json())


def ids(client: ApiClient) -> set[str]:
    reply = client.get("/v1/templates")
    assert reply.status == 200, reply.body
    return {t["id"] for t in reply.json()["items"]}


def test_create_read_list_update_delete(manager: ApiClient) -> None:
    created = create(
        manager,
        to=["{{ lead.responsible.email }}", "boss@example.com"],
        cc=["copy@example.com"],
        bcc=["{{ lead.cf['Billing email'] }}"],
        to_client="all",
        disable_signature=True,
        timezone="Europe/Moscow",
        attachment_links=["{{ lead.cf['Offer PDF'] }}"],
    )
    assert created["name"] == "Offer" and created["user_id"] == manager.user_id
    assert created["to"] == ["{{ lead.responsible.email }}", "boss@example.com"]
    assert created["to_client"] == "all" and created["disable_signature"] is True
    assert created["is_public"] is False and created["can_edit"] is True
    assert created["locale"] == "ru" and created["timezone"] == "Europe/Moscow"

    got = manager.get(f"/v1/templates/{created['id']}").json()
    assert got["html"] == OFFER["html"] and got["subject"] == OFFER["subject"]
    [listed] = manager.get("/v1/templates").json()["items"]
    assert listed["id"] == created["id"] and "html" not in listed

    reply = manager.patch(f"/v1/templates/{created['id']}", {"name": "Offer v2", "cc": [], "locale": None})
    assert reply.status == 200, reply.body
    assert reply.json()["name"] == "Offer v2" and reply.json()["cc"] == [] and reply.json()["locale"] is None
    assert manager.get(f"/v1/templates/{created['id']}").json()["html"] == OFFER["html"]

    assert manager.delete(f"/v1/templates/{created['id']}").status == 204
    assert manager.get(f"/v1/templates/{created['id']}").status == 404
    assert manager.delete(f"/v1/templates/{created['id']}").status == 404


def test_a_private_template_is_its_owners_and_the_administrators(
    manager: ApiClient, colleague: ApiClient, admin: ApiClient, stranger: ApiClient
) -> None:
    mine = create(manager)["id"]
    assert mine not in ids(colleague)
    assert colleague.get(f"/v1/templates/{mine}").status == 404
    assert colleague.patch(f"/v1/templates/{mine}", {"name": "x"}).status == 404
    assert colleague.delete(f"/v1/templates/{mine}").status == 404
    assert stranger.get(f"/v1/templates/{mine}").status == 404  # another Kommo account
    assert mine not in ids(stranger)
    # the administrator sees and edits everyone's
    assert mine in ids(admin)
    reply = admin.patch(f"/v1/templates/{mine}", {"subject": "Checked by the admin"})
    assert reply.status == 200 and reply.json()["can_edit"] is True


def test_a_public_template_is_seen_and_used_by_all_but_changed_by_its_owner(
    manager: ApiClient, colleague: ApiClient
) -> None:
    public = create(manager, is_public=True)["id"]
    assert public in ids(colleague)
    seen = colleague.get(f"/v1/templates/{public}")
    assert seen.status == 200 and seen.json()["can_edit"] is False
    for reply in (
        colleague.patch(f"/v1/templates/{public}", {"name": "mine now"}),
        colleague.delete(f"/v1/templates/{public}"),
    ):
        assert reply.status == 403 and reply.json()["error"] == "forbidden"
    assert manager.get(f"/v1/templates/{public}").json()["name"] == "Offer"


def test_only_an_administrator_changes_the_owner(
    manager: ApiClient, colleague: ApiClient, admin: ApiClient
) -> None:
    mine = create(manager)["id"]
    reply = manager.patch(f"/v1/templates/{mine}", {"user_id": COLLEAGUE_ID})
    assert reply.status == 403 and reply.json()["field"] == "user_id"
    assert manager.post("/v1/templates", {**OFFER, "user_id": COLLEAGUE_ID}).status == 403
    assert manager.patch(f"/v1/templates/{mine}", {"user_id": manager.user_id}).status == 200  # no change

    reply = admin.patch(f"/v1/templates/{mine}", {"user_id": COLLEAGUE_ID})
    assert reply.status == 200 and reply.json()["user_id"] == COLLEAGUE_ID
    assert mine in ids(colleague) and mine not in ids(manager)
    assert colleague.patch(f"/v1/templates/{mine}", {"name": "Now mine"}).status == 200
    created = admin.post("/v1/templates", {**OFFER, "user_id": COLLEAGUE_ID})
    assert created.status == 201 and created.json()["user_id"] == COLLEAGUE_ID


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"html": "<p>{{ lead.name </p>"}, "html", "line 1"),
        ({"html": "<p>\n\n{% if x %}</p>"}, "html", "line 3"),
        ({"html": "{{ lead.name|safe }}"}, "html", "safe"),
        ({"html": "{% autoescape false %}{{ x }}{% endautoescape %}"}, "html", "autoescape"),
        ({"subject": "Hi {{ x "}, "subject", "syntax"),
        ({"subject": "Hi\r\nBcc: evil@example.com"}, "subject", "one line"),
        ({"to": ["not an address"]}, "to[0]", "not a valid email"),
        ({"cc": ["ok@example.com", "{{ broken "]}, "cc[1]", "syntax"),
        ({"to_client": "everyone"}, "to_client", "main, all, none"),
        ({"locale": "klingon_XX"}, "locale", "locale"),
        ({"timezone": "Mars/Olympus"}, "timezone", "time zone"),
        ({"timezone": "text/"}, "timezone", "time zone"),  # not even a zone key: once a 500
        ({"name": ""}, "name", "empty"),
        ({"owner": 5}, "owner", "unknown field"),
        ({"is_public": "yes"}, "is_public", "true or false"),
        ({"attachment_links": ["ftp://example.com/x"]}, "attachment_links[0]", ""),
        # found by the API fuzzing: an empty upload id was a key DynamoDB refuses (a 500)
        ({"attachments": [{"upload_id": ""}]}, "attachments[0].upload_id", "must be an id"),
    ],
)
def test_a_bad_template_is_refused_naming_the_field(
    manager: ApiClient, body: dict[str, Any], field: str, words: str
) -> None:
    reply = manager.post("/v1/templates", {**OFFER, **body})
    assert reply.status == 422, reply.body
    assert reply.json()["field"] == field
    assert words in reply.json()["message"]


SANDBOX_ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ lead.__class__.__base__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ range.__globals__ }}",
    "{{ lead.name.__add__ }}",
    "{{ lead['__class__'] }}",
    "{{ '{0.__class__}'.format(lead) }}",
    "{{ lead.pop('name') }}",
    "{% if lead.id %}{{ items.append(1) }}{% endif %}",
    "{% set x = lead.update({'name': 1}) %}",
    "{{ contacts|map(attribute='__class__')|list }}",
    "{{ contacts|sort(attribute='name.__class__') }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
    "{% extends 'base.html' %}",
]


@pytest.mark.parametrize("payload", SANDBOX_ESCAPES)
@pytest.mark.parametrize("field", ["html", "subject"])
def test_a_sandbox_escape_is_refused_when_saved_not_first_at_send(
    manager: ApiClient, field: str, payload: str
) -> None:
    created = manager.post("/v1/templates", {**OFFER, field: f"Hello {payload}"})
    saved = create(manager)
    changed = manager.patch(f"/v1/templates/{saved['id']}", {field: payload})

    for reply in (created, changed):
        assert reply.status == 422, reply.body
        assert reply.json()["field"] == field
        assert "not allowed" in reply.json()["message"]
    assert manager.get(f"/v1/templates/{saved['id']}").json()[field] == OFFER[field]
    assert ids(manager) == {saved["id"]}
    # what only looks like an escape is still saved: a custom field named with "_", attribute names
    near_miss = "{{ lead.cf['_Code'] }} {{ contacts|map(attribute='name')|join(', ') }} {{ '%s'|format(1) }}"
    assert manager.patch(f"/v1/templates/{saved['id']}", {field: near_miss}).status == 200


def test_a_large_body_is_kept_in_the_bucket_and_read_back(manager: ApiClient) -> None:
    html = "<p>{{ contact.name }}</p>" + "<p>" + "Текст предложения. " * 12_000 + "</p>"
    created = create(manager, html=html)
    assert manager.get(f"/v1/templates/{created['id']}").json()["html"] == html
    too_big = manager.post("/v1/templates", {**OFFER, "html": "x" * (8 * 1024 * 1024 + 1)})
    assert too_big.status == 413 and too_big.json()["field"] == "html"


def test_templates_are_listed_by_name(manager: ApiClient) -> None:
    for name in ("b follow-up", "A offer", "c reminder"):
        create(manager, name=name)
    names = [t["name"] for t in manager.get("/v1/templates").json()["items"]]
    assert names == ["A offer", "b follow-up", "c reminder"]
