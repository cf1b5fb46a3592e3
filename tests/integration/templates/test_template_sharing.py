"""A template shared with chosen users: who sees, previews, uses and edits it
(docs/letters.md#template-availability)."""

from __future__ import annotations

from typing import Any

from tests.support.api_client import ApiClient
from tests.support.fixtures.templates import COLLEAGUE_ID, caller, mailbox_body

OUTSIDER_ID = 8100009
SHARED = {"name": "Price list", "subject": "Prices", "html": "<p>Prices from {{ manager.name }}</p>"}


def create(client: ApiClient, **body: Any) -> dict[str, Any]:
    reply = client.post("/v1/templates", {**SHARED, **body})
    assert reply.status == 201, reply.body
    return dict(reply.json())


def listed(client: ApiClient) -> set[str]:
    return {t["id"] for t in client.get("/v1/templates").json()["items"]}


def test_a_shared_template_is_seen_previewed_and_used_by_the_chosen_users_only(
    manager: ApiClient, colleague: ApiClient
) -> None:
    outsider = caller(OUTSIDER_ID)
    template = create(manager, shared_with=[COLLEAGUE_ID, COLLEAGUE_ID, 8100010])
    assert template["shared_with"] == [COLLEAGUE_ID, 8100010] and template["is_public"] is False
    # the chosen colleague sees it in the list and opens it, but may not change it
    assert template["id"] in listed(colleague)
    got = colleague.get(f"/v1/templates/{template['id']}").json()
    assert got["html"] == SHARED["html"] and got["can_edit"] is False
    assert colleague.patch(f"/v1/templates/{template['id']}", {"name": "mine"}).status == 403
    assert colleague.patch(f"/v1/templates/{template['id']}", {"shared_with": []}).status == 403
    assert colleague.delete(f"/v1/templates/{template['id']}").status == 403
    # and previews and sends it, with their own signature
    colleague.post("/v1/mailboxes", mailbox_body(sender_name="Коллега", sender_email="colleague@example.com"))
    preview = colleague.post("/v1/messages/preview", {"template_id": template["id"]})
    assert preview.status == 200, preview.body
    assert "Prices from Коллега" in preview.json()["html"]
    sent = colleague.post("/v1/messages", {"template_id": template["id"], "to": ["client@example.com"]})
    assert sent.status == 202, sent.body
    # a user it is not shared with sees nothing of it
    assert template["id"] not in listed(outsider)
    assert outsider.get(f"/v1/templates/{template['id']}").status == 404
    outsider.post("/v1/mailboxes", mailbox_body(sender_email="outsider@example.com"))
    assert outsider.post("/v1/messages/preview", {"template_id": template["id"]}).status == 404
    refused = outsider.post("/v1/messages", {"template_id": template["id"], "to": ["client@example.com"]})
    assert refused.status == 404


def test_unsharing_takes_it_away_and_the_administrator_sees_every_template(
    manager: ApiClient, colleague: ApiClient, admin: ApiClient
) -> None:
    template = create(manager, shared_with=[COLLEAGUE_ID])
    assert manager.patch(f"/v1/templates/{template['id']}", {"shared_with": []}).json()["shared_with"] == []
    assert colleague.get(f"/v1/templates/{template['id']}").status == 404
    assert template["id"] not in listed(colleague)
    assert template["id"] in listed(admin)
    assert admin.patch(f"/v1/templates/{template['id']}", {"shared_with": [COLLEAGUE_ID]}).status == 200
    assert template["id"] in listed(colleague)


def test_shared_with_must_name_kommo_users(manager: ApiClient) -> None:
    for bad, field in (
        ("8100003", "shared_with"),
        ([0], "shared_with[0]"),
        ([True], "shared_with[0]"),
        ([1.5], "shared_with[0]"),
    ):
        reply = manager.post("/v1/templates", {**SHARED, "shared_with": bad})
        assert reply.status == 422 and reply.json()["field"] == field, (bad, reply.body)
