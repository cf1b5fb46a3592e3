"""Through Kommo's own flows: the uninstall hook switches the account off (once Kommo confirms
it: a replayed hook while the integration is on changes nothing), installing again switches it
back on with everything it had."""

from __future__ import annotations

import hashlib
import hmac

from mailer_core.accounts import access
from mailer_core.base.errors import MailerError
from mailer_core.kommo_hooks import uninstall as account_lifecycle
from mailer_core.store.models import AccountModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.constants import TEST_AUDIENCE, TEST_SECRET
from tests.support.fixtures.kommo_oauth import install_through_oauth
from tests.support.kommo_accounts import CLIENT_ID, stored_tokens
from tests.support.sim_clock import SimClock


def uninstall_hook(account_id: int, clock: SimClock) -> int:
    """Kommo's GET with client_uuid, account_id and the HMAC-SHA256 signature of "client_id|account_id".

    Called on the core with the test's clock (the confirming request to Kommo takes rate tokens
    at that time); tests/integration/accounts covers the webhook function's route.
    """
    signature = hmac.new(
        TEST_SECRET.encode(), f"{CLIENT_ID}|{account_id}".encode(), hashlib.sha256
    ).hexdigest()
    params = {"client_uuid": CLIENT_ID, "account_id": str(account_id), "signature": signature}
    try:
        account_lifecycle.receive_uninstall_hook(params, clock=clock)
    except MailerError as refused:
        return refused.status
    return 200


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

    # WHEN a captured hook URL is replayed while the integration is on: Kommo still takes the token
    assert uninstall_hook(seed.ACCOUNT_ID, clock) == 409
    assert AccountModel.get(seed.ACCOUNT_ID, consistent_read=True).status == "active"
    # WHEN the administrator switches the integration off in Kommo, and Kommo calls the hook
    standin.switch_off_integration(CLIENT_ID)
    assert uninstall_hook(seed.ACCOUNT_ID, clock) == 200
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
