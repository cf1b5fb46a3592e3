"""Switching Mailer off for an account: Kommo's uninstall hook, the sweep of its pending work,
the send worker refusing its emails, and a reinstall that keeps its data."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
from mailer_core.accounts import access
from mailer_core.adapters import kms
from mailer_core.kommo_hooks import install as kommo_oauth
from mailer_core.kommo_hooks import uninstall as account_lifecycle
from mailer_core.kommo_hooks.install import token_context
from mailer_core.store.models import AccountModel, MessageModel

from devstack.resources import StackResources
from tests.support.api_client import ApiClient, LambdaContext, http_event, load_handler
from tests.support.constants import TEST_SECRET
from tests.support.fixtures.access import ACCOUNT, OTHER_ACCOUNT, mailbox_body
from tests.support.kommo_accounts import CLIENT_ID
from tests.support.smtp_servers import Credentials, SmtpTestServer, smtp_server
from tests.support.sqs import deliver

LOGIN, PASSWORD = "anna@example.com", "lifecycle-password"


@pytest.fixture
def integration(monkeypatch: pytest.MonkeyPatch, aws_stack: StackResources) -> None:
    """Our integration's id and secret, as Kommo knows them; Kommo itself out of reach (a closed
    port on 127.0.0.1), so the hook cannot confirm the uninstall and honours it
    (tests/integration/kommo_hooks/install confirms it through the stand-in)."""
    from mailer_core.base.config import reset_settings

    monkeypatch.setenv("KOMMO_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("KOMMO_CLIENT_SECRET", TEST_SECRET)
    monkeypatch.setenv("MAILER_KOMMO_BASE_URL", "http://127.0.0.1:9")
    reset_settings()


@pytest.fixture
def installed(aws_stack: StackResources) -> AccountModel:
    """Account A as an install leaves it: tokens stored, active."""
    kommo_oauth.store_account_tokens(
        ACCOUNT,
        subdomain="mailerdemo",
        domain="kommo.com",
        access="access-token",
        refresh="refresh-token",
        expires_at=2_000_000_000,
        now=datetime.now(UTC).timestamp(),
    )
    return AccountModel.get(ACCOUNT, consistent_read=True)


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with smtp_server(authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        yield server


def signed(account_id: int | str, *, client_id: str = CLIENT_ID, secret: str = TEST_SECRET) -> dict[str, str]:
    """The query Kommo sends: HMAC-SHA256 of "client_id|account_id" with the client secret, in hex."""
    digest = hmac.new(secret.encode(), f"{client_id}|{account_id}".encode(), hashlib.sha256).hexdigest()
    return {"client_uuid": client_id, "account_id": str(account_id), "signature": digest}


def hook(params: dict[str, str]) -> tuple[int, dict[str, Any]]:
    url = "https://mailer.test.example/hooks/kommo/uninstall?" + urlencode(params)
    event = http_event("GET", url, route_key="GET /hooks/kommo/uninstall")
    result = load_handler("webhook").lambda_handler(event, LambdaContext())
    return int(result["statusCode"]), json.loads(result["body"])


def compose(client: ApiClient, **extra: Any) -> str:
    reply = client.post(
        "/v1/messages", {"to": ["client@example.com"], "subject": "Hi", "html": "<p>Hi</p>", **extra}
    )
    assert reply.status == 202, reply.body
    return str(reply.json()["id"])


def status_of(message_id: str) -> str:
    return str(MessageModel.get(ACCOUNT, message_id, consistent_read=True).status)


def schedules(stack: StackResources) -> list[str]:
    listed = boto3.client("scheduler").list_schedules(GroupName=stack.refs["ScheduleGroup"])["Schedules"]
    return sorted(s["Name"] for s in listed)


def send_queue(stack: StackResources) -> dict[str, Any]:
    return deliver(load_handler("send"), stack.refs["SendQueue"], stack.attrs[("SendQueue", "Arn")])


@pytest.mark.usefixtures("integration")
def test_kommos_uninstall_hook_switches_the_account_off_and_cancels_its_pending_work(
    installed: AccountModel, anna: ApiClient, aws_stack: StackResources
) -> None:
    anna.post("/v1/mailboxes", mailbox_body())
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    scheduled, queued, canceled_before = compose(anna, send_at=later), compose(anna), compose(anna)
    anna.post(f"/v1/messages/{canceled_before}/cancel")
    sent = compose(anna)
    MessageModel(ACCOUNT, sent).update(actions=[MessageModel.status.set("sent")])
    assert schedules(aws_stack) == [f"send-{ACCOUNT}-{scheduled}"]

    status, body = hook(signed(ACCOUNT))

    assert status == 200
    assert body == {"account_id": ACCOUNT, "status": "uninstalled", "canceled": 2, "finished": True}
    assert [status_of(m) for m in (scheduled, queued, canceled_before, sent)] == [
        "canceled",
        "canceled",
        "canceled",
        "sent",
    ]
    swept = MessageModel.get(ACCOUNT, scheduled)
    assert swept.history[-1].event == "canceled" and "switched off" in str(swept.last_error)
    assert schedules(aws_stack) == []  # the schedule went with it
    account = AccountModel.get(ACCOUNT, consistent_read=True)
    assert account.status == "uninstalled" and account.disabled_at is not None
    assert account.kommo_token_ciphertext is None and account.kommo_refresh_token_ciphertext is None
    assert int(account.token_version) == int(installed.token_version) + 1  # a running refresh cannot store
    refused = anna.get("/v1/messages")
    assert refused.status == 403 and refused.json()["reason"] == "account_uninstalled"
    # The same hook again (Kommo may repeat it) finds nothing more to do.
    assert hook(signed(ACCOUNT)) == (200, {**body, "canceled": 0})


@pytest.mark.usefixtures("integration")
@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({**signed(ACCOUNT), "signature": "0" * 64}, 403, "signature"),
        (signed(ACCOUNT, secret="another-secret"), 403, "signature"),
        (signed(OTHER_ACCOUNT) | {"account_id": str(ACCOUNT)}, 403, "signature"),
        (signed(ACCOUNT, client_id="another-integration"), 403, "client_uuid"),
        ({k: v for k, v in signed(ACCOUNT).items() if k != "signature"}, 400, "signature"),
        ({k: v for k, v in signed(ACCOUNT).items() if k != "account_id"}, 400, "account_id"),
        (signed("12ab"), 400, "account_id"),
    ],
)
def test_a_hook_kommo_did_not_sign_changes_nothing(
    installed: AccountModel, params: dict[str, str], status: int, field: str
) -> None:
    answer, body = hook(params)
    assert (answer, body.get("field")) == (status, field), body
    assert AccountModel.get(ACCOUNT, consistent_read=True).status == "active"


@pytest.mark.usefixtures("integration")
def test_a_hook_for_an_account_mailer_does_not_know_is_answered_and_ignored() -> None:
    assert hook(signed(77777)) == (
        200,
        {"account_id": 77777, "status": "unknown", "canceled": 0, "finished": True},
    )
    assert AccountModel.count(77777) == 0


def test_the_worker_cancels_instead_of_sending_an_email_of_a_switched_off_account(
    installed: AccountModel, anna: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    anna.post("/v1/mailboxes", mailbox_body(smtp_host=smtp.host, smtp_port=smtp.port, smtp_password=PASSWORD))
    message = compose(anna)
    # GIVEN the account is switched off by an operator, and the sweep never reached this job
    result = account_lifecycle.disable(ACCOUNT, "unpaid", budget_seconds=0)
    assert (result.status, result.canceled, result.finished) == ("disabled", 0, False)
    assert status_of(message) == "queued"

    delivered = send_queue(aws_stack)

    assert delivered["batchItemFailures"] == [] and delivered["delivered"] == 1
    assert smtp.messages == []
    stored = MessageModel.get(ACCOUNT, message, consistent_read=True)
    assert stored.status == "canceled" and "disabled for this Kommo account (unpaid)" in str(
        stored.last_error
    )
    assert access.account_active(ACCOUNT) is False


def test_after_a_reinstall_only_what_was_composed_since_goes_out(
    installed: AccountModel, anna: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources
) -> None:
    anna.post("/v1/mailboxes", mailbox_body(smtp_host=smtp.host, smtp_port=smtp.port, smtp_password=PASSWORD))
    before = compose(anna, subject="before")
    account_lifecycle.disable(ACCOUNT, "uninstalled", status="uninstalled", budget_seconds=0)
    # WHEN the widget is installed again (the install stores fresh tokens)
    kommo_oauth.store_account_tokens(
        ACCOUNT,
        subdomain="mailerdemo",
        domain="kommo.com",
        access="new-access",
        refresh="new-refresh",
        expires_at=2_000_000_000,
        now=datetime.now(UTC).timestamp(),
    )
    after = compose(anna, subject="after")

    for _ in range(2):
        send_queue(aws_stack)

    # THEN the email composed before the uninstall is canceled, the new one is sent
    assert [status_of(before), status_of(after)] == ["canceled", "sent"]
    assert [m.parsed()["Subject"] for m in smtp.messages] == ["after"]


def test_reinstalling_keeps_the_accounts_settings_mailboxes_templates_and_history(
    installed: AccountModel, owner: ApiClient, anna: ApiClient, aws_stack: StackResources
) -> None:
    owner.patch("/v1/settings", {"allowed_user_ids": [501], "default_daily_cap": 77, "track_opens": False})
    mailbox = anna.post("/v1/mailboxes", mailbox_body()).json()["id"]
    template = anna.post("/v1/templates", {"name": "Offer", "subject": "s", "html": "<p>x</p>"}).json()["id"]
    message = compose(anna)
    settings_before = anna.get("/v1/settings").json()

    account_lifecycle.disable(ACCOUNT, "the integration was switched off in Kommo", status="uninstalled")
    kommo_oauth.store_account_tokens(
        ACCOUNT,
        subdomain="mailerdemo",
        domain="kommo.com",
        access="new-access",
        refresh="new-refresh",
        expires_at=2_000_000_000,
        now=datetime.now(UTC).timestamp(),
    )

    assert anna.get("/v1/settings").json() == settings_before
    assert [m["id"] for m in anna.get("/v1/mailboxes").json()["items"]] == [mailbox]
    assert anna.get(f"/v1/templates/{template}").status == 200
    shown = anna.get(f"/v1/messages/{message}").json()
    assert shown["status"] == "canceled" and [h["event"] for h in shown["history"]] == ["queued", "canceled"]
    account = AccountModel.get(ACCOUNT, consistent_read=True)
    assert account.status == "active" and account.status_detail is None
    assert kms.decrypt(str(account.kommo_token_ciphertext), token_context(ACCOUNT, "access")) == "new-access"


def test_a_timer_of_a_swept_message_fires_harmlessly(
    installed: AccountModel, anna: ApiClient, aws_stack: StackResources
) -> None:
    anna.post("/v1/mailboxes", mailbox_body())
    scheduled = compose(anna, send_at=(datetime.now(UTC) + timedelta(days=1)).isoformat())
    name = f"send-{ACCOUNT}-{scheduled}"
    payload = json.loads(
        boto3.client("scheduler").get_schedule(Name=name, GroupName=aws_stack.refs["ScheduleGroup"])[
            "Target"
        ]["Input"]
    )
    account_lifecycle.disable(ACCOUNT, "unpaid")
    assert load_handler("timers").lambda_handler(payload, LambdaContext()) == {"result": "ignored"}
    assert status_of(scheduled) == "canceled"


def _reinstall(access_token: str) -> None:
    kommo_oauth.store_account_tokens(
        ACCOUNT,
        subdomain="mailerdemo",
        domain="kommo.com",
        access=access_token,
        refresh="new-refresh",
        expires_at=2_000_000_000,
        now=datetime.now(UTC).timestamp(),
    )


def test_a_reinstall_does_not_undo_an_operators_disabling(installed: AccountModel, anna: ApiClient) -> None:
    # GIVEN an operator switched the account off
    account_lifecycle.disable(ACCOUNT, "unpaid", budget_seconds=0)
    version = AccountModel.get(ACCOUNT, consistent_read=True).token_version or 0
    # WHEN the widget is installed again
    _reinstall("reinstall-access")
    # THEN the new tokens are kept, and the account stays off until the operator says otherwise
    account = AccountModel.get(ACCOUNT, consistent_read=True)
    assert account.status == "disabled" and "unpaid" in str(account.status_detail)
    assert account.token_version == version + 1
    assert (
        kms.decrypt(str(account.kommo_token_ciphertext), token_context(ACCOUNT, "access"))
        == "reinstall-access"
    )
    reply = anna.get("/v1/mailboxes")
    assert reply.status == 403 and reply.json()["reason"] == "account_disabled"


def test_a_reinstall_switches_an_uninstalled_account_on_again(
    installed: AccountModel, anna: ApiClient
) -> None:
    account_lifecycle.disable(ACCOUNT, "switched off in Kommo", status="uninstalled", budget_seconds=0)
    _reinstall("reinstall-access")
    assert AccountModel.get(ACCOUNT, consistent_read=True).status == "active"
    assert anna.get("/v1/mailboxes").status == 200
