"""Through Kommo's own flows: the uninstall hook switches the account off, installing again
switches it back on with everything it had."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from mailer_core.accounts import access
from mailer_core.store.models import AccountModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.api_client import ApiClient, LambdaContext, http_event, load_handler
from tests.support.constants import TEST_AUDIENCE, TEST_SECRET
from tests.support.fixtures.kommo_oauth import install_through_oauth
from tests.support.kommo_accounts import CLIENT_ID, stored_tokens
from tests.support.sim_clock import SimClock


def uninstall_hook(account_id: int) -> int:
    """Kommo's GET with client_uuid, account_id and the HMAC-SHA256 signature of "client_id|account_id"."""
    signature = hmac.new(
        TEST_SECRET.encode(), f"{CLIENT_ID}|{account_id}".encode(), hashlib.sha256
    ).hexdigest()
    query = urlencode({"client_uuid": CLIENT_ID, "account_id": account_id, "signature": signature})
    event = http_event("GET", f"https://mailer.test.example/hooks/kommo/uninstall?{query}")
    return int(load_handler("webhook").lambda_handler(event, LambdaContext())["statusCode"])


def test_uninstalling_and_installing_again_keeps_the_accounts_data(
    standin: KommoStandIn, installed: AccountModel, clock: SimClock, aws_stack: StackResources
) -> None:
    admin = ApiClient(
        secret=TEST_SECRET,
        audience=TEST_AUDIENCE,
        account_id=seed.ACCOUNT_ID,
        subdomain=seed.SUBDOMAIN,
        user_id=seed.ADMIN_USER_ID,
        is_admin=True,
    )
    access.forget()
    admin.patch("/v1/settings", {"admin_user_ids": [seed.MANAGER_USER_ID], "default_daily_cap": 321})
    template = admin.post("/v1/templates", {"name": "Offer", "subject": "s", "html": "<p>x</p>"}).json()["id"]
    settings = admin.get("/v1/settings").json()

    # WHEN Kommo reports the integration switched off
    assert uninstall_hook(seed.ACCOUNT_ID) == 200
    # THEN the account is switched off and its tokens are gone
    account = AccountModel.get(seed.ACCOUNT_ID, consistent_read=True)
    assert account.status == "uninstalled" and account.kommo_token_ciphertext is None
    assert admin.get("/v1/templates").json()["reason"] == "account_uninstalled"

    # WHEN an administrator installs the widget again (redirect, queued exchange, stored tokens)
    clock.advance(3600)
    install_through_oauth(standin, aws_stack, clock)

    # THEN it serves again with the new grant and everything it had
    assert admin.get("/v1/settings").json() == settings
    assert admin.get(f"/v1/templates/{template}").status == 200
    again = AccountModel.get(seed.ACCOUNT_ID, consistent_read=True)
    assert again.status == "active" and again.installed_at == installed.installed_at
    assert stored_tokens()[1] == standin.refresh_token
