"""The installation's pipeline secret: stored hashed, derived again for an administrator's every
read (each stage's action dialog needs it), rotated by an administrator, checked by the hook; an
account's plain secret from before keeps working and is hashed."""

from __future__ import annotations

from typing import Any

from mailer_core.accounts import pipeline_secret
from mailer_core.kommo_hooks import install as kommo_oauth
from mailer_core.store.models import AccountModel

from devstack.kommo_standin import seed
from devstack.resources import StackResources
from tests.support.api_client import Reply
from tests.support.fixtures.pipeline import (
    EVENT_TIME,
    SECRET,
    TEMPLATE_ID,
    TOKEN,
    caller,
    form_fields,
    post_hook,
    queued_jobs,
)
from tests.support.kommo_accounts import save_account_with_token

SETTINGS = "/v1/pipeline/settings"
ROTATE = "/v1/pipeline/secret/rotate"
DP = "/hooks/kommo/dp"


def _hook(secret: str, *, event_time: int = EVENT_TIME) -> Reply:
    changes = {"action[settings][widget][settings][secret]": secret, "event[time]": str(event_time)}
    return post_hook(DP, "&".join(f"{k}={v}" for k, v in form_fields(TEMPLATE_ID, **changes)))


def _stored() -> dict[str, Any]:
    return dict(AccountModel.get(seed.ACCOUNT_ID, consistent_read=True).attribute_values)


def test_given_an_administrator_then_the_settings_give_the_hook_urls_and_no_stored_secret(
    installed: StackResources,
) -> None:
    reply = caller(seed.ADMIN_USER_ID, admin=True).get(SETTINGS)

    assert reply.status == 200, reply.body
    body = reply.json()
    # the fixture's account holds a hash no derived secret matches (as after a change of the
    # client secret): nothing to show until an administrator rotates
    assert body["secret"] is None
    assert body["webhook_url"].endswith("/hooks/kommo/dp")
    assert body["salesbot_url"].endswith("/hooks/kommo/salesbot")
    assert body["rotate_url"].endswith(ROTATE)
    assert {f["name"] for f in body["action_fields"] if f["required"]} == {"template_id", "secret"}


def test_given_a_user_who_is_not_an_administrator_then_403_and_no_secret(installed: StackResources) -> None:
    reply = caller(seed.MANAGER_USER_ID).get(SETTINGS)

    assert reply.status == 403
    assert SECRET not in reply.body


def test_given_an_account_without_a_secret_then_every_read_shows_the_same_one_and_only_its_hash_is_kept(
    aws_stack: StackResources,
) -> None:
    save_account_with_token(TOKEN)  # no secret
    admin = caller(seed.ADMIN_USER_ID, admin=True)

    first = admin.get(SETTINGS).json()["secret"]
    second = admin.get(SETTINGS).json()["secret"]
    reply = _hook(first)

    assert len(first) >= 40 and second == first  # the dialog of every stage's action gets it
    stored = _stored()
    assert stored["dp_secret_hash"] == pipeline_secret.digest(first)
    assert first not in str(stored) and "dp_secret" not in stored
    assert reply.status == 202, reply.body


def test_given_an_account_that_is_not_installed_then_409(aws_stack: StackResources) -> None:
    reply = caller(seed.ADMIN_USER_ID, admin=True).get(SETTINGS)

    assert reply.status == 409
    assert AccountModel.count() == 0  # nothing half-written


def test_installing_stores_no_secret_and_installing_again_keeps_the_one_made_since(
    aws_stack: StackResources,
) -> None:
    def install() -> dict[str, Any]:
        kommo_oauth.store_account_tokens(
            seed.ACCOUNT_ID,
            subdomain=seed.SUBDOMAIN,
            domain="kommo.com",
            access="access-token",
            refresh="refresh-token",
            expires_at=2_000_000_000,
            now=1_800_000_000,
        )
        return _stored()

    first = install()
    secret = pipeline_secret.ensure(seed.ACCOUNT_ID)
    again = install()

    assert "dp_secret" not in first and "dp_secret_hash" not in first
    assert secret and again["dp_secret_hash"] == pipeline_secret.digest(secret)


# ---------------------------------------------------------------- rotation


def test_an_administrator_rotates_the_secret_the_new_one_is_shown_once_and_the_old_one_refused(
    installed: StackResources,
) -> None:
    admin = caller(seed.ADMIN_USER_ID, admin=True)

    reply = admin.post(ROTATE, {})

    assert reply.status == 200, reply.body
    new = reply.json()["secret"]
    assert len(new) >= 40 and new != SECRET and reply.json()["rotated_at"].endswith("Z")
    assert admin.get(SETTINGS).json()["secret"] == new  # the dialogs from now on give the new one
    assert _hook(SECRET).status == 404
    assert _hook(new).status == 202
    stored = _stored()
    assert stored["dp_secret_hash"] == pipeline_secret.digest(new) and new not in str(stored)
    assert queued_jobs(installed) == 1


def test_a_second_rotation_refuses_the_first_ones_secret(installed: StackResources) -> None:
    admin = caller(seed.ADMIN_USER_ID, admin=True)

    first = admin.post(ROTATE, {}).json()["secret"]
    second = admin.post(ROTATE, {}).json()["secret"]

    assert first != second
    assert _hook(first).status == 404
    assert _hook(second).status == 202


def test_a_user_who_is_not_an_administrator_cannot_rotate(installed: StackResources) -> None:
    reply = caller(seed.MANAGER_USER_ID).post(ROTATE, {})

    assert reply.status == 403
    assert _stored()["dp_secret_hash"] == pipeline_secret.digest(SECRET)


def test_rotating_for_an_account_that_is_not_installed_is_409(aws_stack: StackResources) -> None:
    reply = caller(seed.ADMIN_USER_ID, admin=True).post(ROTATE, {})

    assert reply.status == 409
    assert AccountModel.count() == 0


# ---------------------------------------------------------------- accounts from before


def test_an_accounts_plain_secret_from_before_still_opens_the_hook_and_is_then_kept_hashed(
    aws_stack: StackResources,
) -> None:
    save_account_with_token(TOKEN, dp_secret=SECRET)

    first = _hook(SECRET)
    stored = _stored()
    later = _hook(SECRET, event_time=EVENT_TIME + 1)

    assert first.status == 202, first.body
    assert "dp_secret" not in stored and stored["dp_secret_hash"] == pipeline_secret.digest(SECRET)
    assert later.status == 202, later.body
    assert _hook("a-wrong-secret", event_time=EVENT_TIME + 2).status == 404


def test_an_accounts_plain_secret_is_shown_one_last_time_by_the_settings_then_hashed(
    aws_stack: StackResources,
) -> None:
    save_account_with_token(TOKEN, dp_secret=SECRET)
    admin = caller(seed.ADMIN_USER_ID, admin=True)

    first = admin.get(SETTINGS).json()["secret"]
    second = admin.get(SETTINGS).json()["secret"]

    assert first == SECRET and second is None
    assert "dp_secret" not in _stored()
    assert _hook(SECRET).status == 202


def test_a_rotation_is_not_undone_by_a_hook_that_read_the_plain_secret_before_it(
    aws_stack: StackResources,
) -> None:
    save_account_with_token(TOKEN, dp_secret=SECRET)
    read_before = AccountModel.get(seed.ACCOUNT_ID, consistent_read=True)
    new = caller(seed.ADMIN_USER_ID, admin=True).post(ROTATE, {}).json()["secret"]

    pipeline_secret.matches(read_before, SECRET)  # its conditional write finds the plain secret gone

    assert _stored()["dp_secret_hash"] == pipeline_secret.digest(new)
    assert _hook(SECRET).status == 404
