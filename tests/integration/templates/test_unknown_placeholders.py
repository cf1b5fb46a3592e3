"""Nothing silent: a placeholder Mailer cannot fill is refused at save and listed in the preview
(docs/letters.md#nothing-silent)."""

from __future__ import annotations

from tests.support.api_client import ApiClient
from tests.support.fixtures.templates import mailbox_body


def test_a_template_with_an_unknown_placeholder_is_refused_naming_it(manager: ApiClient) -> None:
    reply = manager.post("/v1/templates", {"name": "Old", "subject": "Hi {name}", "html": "<p>x</p>"})
    assert reply.status == 422 and reply.json()["field"] == "subject"
    assert reply.json()["placeholders"] == ["{name}"]
    html = manager.post(
        "/v1/templates", {"name": "Old", "subject": "Hi", "html": "<p>{email} {datetime}</p>"}
    )
    assert html.status == 422 and html.json()["field"] == "html"
    assert html.json()["placeholders"] == ["{email}", "{datetime}"]
    known = manager.post(
        "/v1/templates", {"name": "Ok", "subject": "{subject}", "html": "<p>{date} {id}</p>"}
    )
    assert known.status == 201, known.body
    assert manager.patch(f"/v1/templates/{known.json()['id']}", {"html": "{phone}"}).status == 422


def test_the_preview_lists_what_would_be_sent_as_it_is(manager: ApiClient) -> None:
    manager.post("/v1/mailboxes", mailbox_body())
    preview = manager.post(
        "/v1/messages/preview", {"subject": "Hi {name}", "html": "<p>{name} {{ manager.name }}</p>"}
    )
    assert preview.status == 200, preview.body
    assert preview.json()["unknown_placeholders"] == ["{name}"]
