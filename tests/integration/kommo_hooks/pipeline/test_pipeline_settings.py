"""The installation's pipeline secret: made at install, shown to administrators, checked by the hook."""

from __future__ import annotations

from mailer_core.kommo_hooks import install as kommo_oauth
from mailer_core.store.models import AccountModel

from devstack.kommo_standin import seed
from devstack.resources import StackResources
from tests.support.fixtures.pipeline import SECRET, TEMPLATE_ID, TOKEN, caller, form_fields, post_hook
from tests.support.kommo_accounts import save_account_with_token

SETTINGS = "/v1/pipeline/settings"


def test_given_an_administrator_then_the_settings_give_the_hook_urls_and_the_secret(
    installed: StackResources,
) -> None:
    reply = caller(seed.ADMIN_USER_ID, admin=True).get(SETTINGS)

    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["secret"] == SECRET
    assert body["webhook_url"].endswith("/hooks/kommo/dp")
    assert body["salesbot_url"].endswith("/hooks/kommo/salesbot")
    assert {f["name"] for f in body["action_fields"] if f["required"]} == {"template_id", "secret"}


def test_given_a_user_who_is_not_an_administrator_then_403_and_no_secret(installed: StackResources) -> None:
    reply = caller(seed.MANAGER_USER_ID).get(SETTINGS)

    assert reply.status == 403
    assert SECRET not in reply.body


def test_given_an_account_installed_before_secrets_existed_then_the_first_read_makes_one_the_hook_takes(
    aws_stack: StackResources,
) -> None:
    save_account_with_token(TOKEN)  # no dp_secret
    admin = caller(seed.ADMIN_USER_ID, admin=True)

    first = admin.get(SETTINGS).json()["secret"]
    second = admin.get(SETTINGS).json()["secret"]
    changes = {"action[settings][widget][settings][secret]": first}
    reply = post_hook("/hooks/kommo/dp", "&".join(f"{k}={v}" for k, v in form_fields(TEMPLATE_ID, **changes)))

    assert len(first) >= 40 and first == second
    assert AccountModel.get(seed.ACCOUNT_ID).dp_secret == first
    assert reply.status == 202, reply.body


def test_given_an_account_that_is_not_installed_then_409(aws_stack: StackResources) -> None:
    reply = caller(seed.ADMIN_USER_ID, admin=True).get(SETTINGS)

    assert reply.status == 409
    assert AccountModel.count() == 0  # nothing half-written


def test_installing_makes_a_secret_and_installing_again_keeps_it(aws_stack: StackResources) -> None:
    def install() -> str:
        kommo_oauth.store_account_tokens(
            seed.ACCOUNT_ID,
            subdomain=seed.SUBDOMAIN,
            domain="kommo.com",
            access="access-token",
            refresh="refresh-token",
            expires_at=2_000_000_000,
            now=1_800_000_000,
        )
        return str(AccountModel.get(seed.ACCOUNT_ID, consistent_read=True).dp_secret)

    first = install()
    again = install()

    assert len(first) >= 40 and again == first
