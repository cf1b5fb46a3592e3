"""Mailboxes through the api function: validation, secrecy of passwords, ownership."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from mailer_core.adapters import kms
from mailer_core.store.models import MailboxModel

from tests.support.api_client import ApiClient
from tests.support.fixtures.core import ACCOUNT, PASSWORD, mailbox_body
from tests.support.smtp_servers import SmtpTestServer


def test_create_returns_the_mailbox_without_its_password(user: ApiClient) -> None:
    reply = user.post("/v1/mailboxes", mailbox_body())

    assert reply.status == 201
    view = reply.json()
    assert view["sender_email"] == "anna@example.com"
    assert view["smtp_login"] == "anna@example.com"  # defaults to the address
    assert view["has_password"] is True
    assert "s3cret-app-password" not in reply.body
    assert user.get(f"/v1/mailboxes/{view['id']}").json() == view


def test_password_is_stored_as_kms_ciphertext_bound_to_the_mailbox(user: ApiClient) -> None:
    mailbox_id = user.post("/v1/mailboxes", mailbox_body()).json()["id"]
    stored = MailboxModel.get(ACCOUNT, mailbox_id)

    assert "s3cret" not in stored.password_ciphertext
    context = {"account_id": str(ACCOUNT), "mailbox_id": mailbox_id, "purpose": "smtp_password"}
    assert kms.decrypt(stored.password_ciphertext, context) == "s3cret-app-password"
    with pytest.raises(ClientError, match="InvalidCiphertext"):
        kms.decrypt(stored.password_ciphertext, {**context, "mailbox_id": "another"})


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"smtp_port": 25}, "smtp_port", "port 25 is blocked"),
        ({"smtp_port": 70000}, "smtp_port", "at most 65535"),
        ({"smtp_security": "tls13"}, "smtp_security", "must be one of"),
        ({"sender_email": "not-an-address"}, "sender_email", "not a valid email"),
        ({"smtp_host": "bad host!"}, "smtp_host", "not a host name"),
        ({"smtp_password": ""}, "smtp_password", "must not be empty"),
        ({"rate_per_second": 0}, "rate_per_second", "between"),
        ({"daily_cap": "many"}, "daily_cap", "integer"),
        ({"colour": "red"}, "colour", "unknown field"),
        # CR, LF and NUL would end or split an SMTP/IMAP command (IMAP's LOGIN sends them as they are).
        ({"smtp_password": "s3cret\r\nA1 LOGOUT"}, "smtp_password", "line breaks"),
        ({"smtp_login": "anna@example.com\n"}, "smtp_login", "line breaks"),
        ({"smtp_login": "admin\x00anna"}, "smtp_login", "NUL"),
        ({"imap_host": "imap.example.com", "imap_login": "anna\r"}, "imap_login", "line breaks"),
        ({"imap_host": "imap.example.com", "imap_password": "a\x00b"}, "imap_password", "NUL"),
        ({"smtp_host": "smtp.example.com\n"}, "smtp_host", "not a host name"),
    ],
)
def test_bad_fields_are_named_and_nothing_is_stored(
    user: ApiClient, change: dict, field: str, words: str
) -> None:
    reply = user.post("/v1/mailboxes", mailbox_body(**change))

    assert reply.status == 422
    assert reply.json()["field"] == field
    assert words in reply.json()["message"]
    assert user.get("/v1/mailboxes").json()["items"] == []


def test_missing_password_and_broken_json_are_refused(user: ApiClient) -> None:
    body = mailbox_body()
    del body["smtp_password"]
    assert user.post("/v1/mailboxes", body).json() == {
        "error": "invalid",
        "message": "is required",
        "field": "smtp_password",
    }
    broken = user.post("/v1/mailboxes", "{not json")
    assert broken.status == 400 and broken.json()["field"] == "body"


def test_patch_changes_fields_and_reencrypts_a_new_password(user: ApiClient) -> None:
    mailbox_id = user.post("/v1/mailboxes", mailbox_body()).json()["id"]
    before = MailboxModel.get(ACCOUNT, mailbox_id).password_ciphertext

    reply = user.patch(
        f"/v1/mailboxes/{mailbox_id}",
        {"smtp_port": 587, "smtp_security": "starttls", "smtp_password": "new-password"},
    )

    assert reply.status == 200
    assert reply.json()["smtp_port"] == 587 and reply.json()["smtp_security"] == "starttls"
    after = MailboxModel.get(ACCOUNT, mailbox_id).password_ciphertext
    assert after != before
    context = {"account_id": str(ACCOUNT), "mailbox_id": mailbox_id, "purpose": "smtp_password"}
    assert kms.decrypt(after, context) == "new-password"


def test_a_failed_patch_changes_nothing(user: ApiClient) -> None:
    created = user.post("/v1/mailboxes", mailbox_body()).json()
    reply = user.patch(f"/v1/mailboxes/{created['id']}", {"smtp_host": "ok.example.com", "smtp_port": 25})
    assert reply.status == 422
    assert user.get(f"/v1/mailboxes/{created['id']}").json() == created


def test_users_see_their_own_mailboxes_and_admins_see_all(
    user: ApiClient, colleague: ApiClient, admin: ApiClient
) -> None:
    mine = user.post("/v1/mailboxes", mailbox_body()).json()["id"]
    theirs = colleague.post("/v1/mailboxes", mailbox_body(sender_email="boris@example.com")).json()["id"]

    assert [m["id"] for m in user.get("/v1/mailboxes").json()["items"]] == [mine]
    assert user.get(f"/v1/mailboxes/{theirs}").status == 404
    assert user.delete(f"/v1/mailboxes/{theirs}").status == 404
    assert sorted(m["id"] for m in admin.get("/v1/mailboxes").json()["items"]) == sorted([mine, theirs])
    assert user.post("/v1/mailboxes", mailbox_body(user_id=502)).status == 403
    assert admin.post("/v1/mailboxes", mailbox_body(user_id=502)).json()["user_id"] == 502


def test_another_account_sees_nothing(user: ApiClient, stranger: ApiClient) -> None:
    mailbox_id = user.post("/v1/mailboxes", mailbox_body()).json()["id"]

    assert stranger.get(f"/v1/mailboxes/{mailbox_id}").status == 404
    assert stranger.patch(f"/v1/mailboxes/{mailbox_id}", {"sender_name": "x"}).status == 404
    assert stranger.delete(f"/v1/mailboxes/{mailbox_id}").status == 404
    assert stranger.get("/v1/mailboxes").json()["items"] == []
    assert user.get(f"/v1/mailboxes/{mailbox_id}").status == 200


def test_delete_removes_the_mailbox(user: ApiClient) -> None:
    mailbox_id = user.post("/v1/mailboxes", mailbox_body()).json()["id"]
    assert user.delete(f"/v1/mailboxes/{mailbox_id}").status == 204
    assert user.get(f"/v1/mailboxes/{mailbox_id}").status == 404


def test_plain_smtp_is_refused_outside_the_local_stack(
    user: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailer_core.base.config import reset_settings

    monkeypatch.delenv("MAILER_ALLOW_PLAINTEXT_SMTP")
    reset_settings()
    reply = user.post("/v1/mailboxes", mailbox_body(smtp_security="none"))
    assert reply.status == 422 and reply.json()["field"] == "smtp_security"


def test_a_stored_password_is_never_sent_to_a_new_host_without_being_given_again(
    user: ApiClient, admin: ApiClient, smtp: SmtpTestServer
) -> None:
    # GIVEN a user's mailbox (its check reaches no server: smtp.example.com does not resolve here)
    created = user.post("/v1/mailboxes", mailbox_body()).json()
    # WHEN an administrator points it at a server of their own without giving the password
    moved = {"smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_security": "none"}
    reply = admin.patch(f"/v1/mailboxes/{created['id']}", moved)
    # THEN it is refused, naming the password; nothing changed; the new host heard nothing
    assert reply.status == 422 and reply.json()["field"] == "smtp_password"
    assert "another server" in reply.json()["message"]
    assert user.get(f"/v1/mailboxes/{created['id']}").json()["smtp_host"] == "smtp.example.com"
    assert smtp.connections == 0
    # WHEN the same change comes with the password: it is saved and checked against the new host
    reply = admin.patch(f"/v1/mailboxes/{created['id']}", {**moved, "smtp_password": PASSWORD})
    assert reply.status == 200 and reply.json()["smtp_host"] == smtp.host
    assert smtp.connections >= 1


def test_moving_imap_to_a_new_host_needs_the_password_it_signs_in_with(user: ApiClient) -> None:
    # GIVEN a mailbox whose IMAP signs in with the SMTP password
    created = user.post("/v1/mailboxes", mailbox_body(imap_host="imap.example.com")).json()
    url = f"/v1/mailboxes/{created['id']}"
    # THEN moving IMAP elsewhere needs the password again; the same host does not
    refused = user.patch(url, {"imap_host": "imap.elsewhere.example"})
    assert refused.status == 422 and refused.json()["field"] == "smtp_password"
    assert user.patch(url, {"imap_host": "IMAP.example.com"}).status == 200
    # GIVEN a separate IMAP password: moving IMAP needs that one
    assert user.patch(url, {"imap_password": "imap-secret"}).status == 200
    refused = user.patch(url, {"imap_host": "imap.elsewhere.example", "smtp_password": PASSWORD})
    assert refused.status == 422 and refused.json()["field"] == "imap_password"
    assert (
        user.patch(url, {"imap_host": "imap.elsewhere.example", "imap_password": "imap-secret"}).status == 200
    )
