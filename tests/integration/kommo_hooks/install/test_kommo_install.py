"""Kommo's install redirect and the code exchange: fast answer, one exchange, encrypted tokens."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from mailer_core.adapters import kms
from mailer_core.kommo.errors import KommoError, KommoMisconfigured
from mailer_core.kommo_hooks import install as kommo_oauth
from mailer_core.kommo_hooks.install import token_context
from mailer_core.store.models import AccountModel, KommoInstallModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.fixtures.kommo_oauth import Redirect
from tests.support.kommo_accounts import CLIENT_ID, stored_tokens
from tests.support.kommo_helpers import WRONG_CLIENT_ANSWER
from tests.support.sim_clock import SimClock

REFERER = f"{seed.SUBDOMAIN}.kommo.com"


def queued(stack: StackResources) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.refs["KommoAuthQueue"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def test_the_redirect_answers_at_once_and_a_repeat_queues_nothing_more(
    standin: KommoStandIn, redirect: Redirect, aws_stack: StackResources
) -> None:
    code = standin.issue_code(CLIENT_ID)
    # WHEN Kommo redirects the install to us
    started = time.perf_counter()
    first = redirect(code=code, referer=REFERER, from_widget="1")
    elapsed = time.perf_counter() - started
    # THEN a page answers well within Kommo's 3 s, and one exchange waits on the queue
    assert first["statusCode"] == 200
    assert first["headers"]["Content-Type"].startswith("text/html")
    assert "being connected" in first["body"] and "mailerdemo.kommo.com" in first["body"]
    assert first["headers"]["Referrer-Policy"] == "no-referrer"
    assert elapsed < 3.0  # Kommo's budget, with this process's first AWS clients made on the way
    assert queued(aws_stack) == 1
    # WHEN the same redirect comes again (a retry, a reload)
    started = time.perf_counter()
    again = redirect(code=code, referer=REFERER, from_widget="1")
    elapsed = time.perf_counter() - started
    # THEN it answers the same, at once, and queues nothing more; Kommo was not called at all yet
    assert again["statusCode"] == 200 and "being connected" in again["body"]
    assert elapsed < 1.0
    assert queued(aws_stack) == 1
    assert standin.token_calls == []
    assert code not in first["body"]


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"error": "access_denied", "referer": REFERER}, 200, "declined"),
        ({"code": "def502001234567890", "referer": "evil.example.com"}, 400, "does not come from"),
        ({"code": "def502001234567890", "referer": "mailerdemo.kommo.com.evil.example"}, 400, "does not"),
        ({"referer": REFERER}, 400, "authorization code"),
        ({"code": "def50200<script>", "referer": REFERER}, 400, "authorization code"),
        ({"code": "def502001234567890", "referer": REFERER, "state": "1.forged"}, 400, "expired"),
    ],
)
def test_a_bad_or_refused_redirect_queues_nothing(
    standin: KommoStandIn,
    redirect: Redirect,
    aws_stack: StackResources,
    params: dict[str, str],
    status: int,
    words: str,
) -> None:
    answer = redirect(**params)
    assert answer["statusCode"] == status
    assert words in answer["body"]
    assert "<script>" not in answer["body"]
    assert queued(aws_stack) == 0


def test_amocrm_referers_and_signed_states_are_accepted(clock: SimClock, standin: KommoStandIn) -> None:
    assert kommo_oauth.parse_referer("https://Acme.amocrm.ru/") == ("acme", "amocrm.ru")
    assert kommo_oauth.parse_referer("acme.kommo.com") == ("acme", "kommo.com")
    state = kommo_oauth.install_state(clock.timestamp())
    assert kommo_oauth.verify_state(state, clock.timestamp() + 60)
    assert not kommo_oauth.verify_state(state, clock.timestamp() + 2 * 3600)
    page = kommo_oauth.receive_install(
        {"code": standin.issue_code(CLIENT_ID), "referer": "acme.amocrm.ru", "state": state}, clock=clock
    )
    assert page.status == 200 and "acme.amocrm.ru" in page.message


def test_the_exchange_stores_the_account_with_encrypted_tokens(
    standin: KommoStandIn, redirect: Redirect, run_exchanges: Callable[[], dict[str, Any]]
) -> None:
    code = standin.issue_code(CLIENT_ID)
    redirect(code=code, referer=REFERER, from_widget="1")
    # WHEN the kommo_auth function takes the job
    assert run_exchanges() == {"batchItemFailures": [], "delivered": 1}
    # THEN the code was exchanged once, and the account read to learn its id
    assert [c.grant_type for c in standin.token_calls] == ["authorization_code"]
    assert [r.path for r in standin.requests][-1] == "/api/v4/account"
    account = AccountModel.get(seed.ACCOUNT_ID, consistent_read=True)
    assert (account.subdomain, account.kommo_domain, account.status) == (
        seed.SUBDOMAIN,
        "kommo.com",
        "active",
    )
    assert account.token_version == 1 and account.installed_at is not None
    assert account.token_expires_at is not None and account.token_expires_at > time.time() + 23 * 3600
    # AND both tokens are stored KMS-encrypted, bound to the account and their purpose
    access, refresh = stored_tokens()
    assert refresh == standin.refresh_token
    assert standin.oauth.access_tokens[access].user_id == seed.ADMIN_USER_ID
    assert access not in str(account.kommo_token_ciphertext)
    with pytest.raises(Exception, match=r"(?i)invalid|ciphertext|context"):
        kms.decrypt(str(account.kommo_refresh_token_ciphertext), token_context(seed.ACCOUNT_ID, "access"))
    # AND the install is done, without the tokens it carried
    [install] = list(KommoInstallModel.scan())
    assert (install.state, install.account_id) == ("done", seed.ACCOUNT_ID)
    assert install.access_token_ciphertext is None and install.refresh_token_ciphertext is None
    assert code not in str(install.attribute_values)


def test_a_second_delivery_of_the_job_exchanges_nothing(
    standin: KommoStandIn,
    redirect: Redirect,
    run_exchanges: Callable[[], dict[str, Any]],
    aws_stack: StackResources,
) -> None:
    code = standin.issue_code(CLIENT_ID)
    redirect(code=code, referer=REFERER, from_widget="1")
    [message] = boto3.client("sqs").receive_message(QueueUrl=aws_stack.refs["KommoAuthQueue"])["Messages"]
    job = kommo_oauth.InstallJob.from_body(message["Body"])
    assert kommo_oauth.complete_install(job) == "connected"
    assert kommo_oauth.complete_install(job) == "duplicate"
    assert len(standin.token_calls) == 1


def test_an_exchange_that_fails_after_the_code_resumes_from_the_kept_tokens(
    standin: KommoStandIn, clock: SimClock, aws_stack: StackResources
) -> None:
    kommo_oauth.receive_install(
        {"code": standin.issue_code(CLIENT_ID), "referer": REFERER, "from_widget": "1"}, clock=clock
    )
    [message] = boto3.client("sqs").receive_message(QueueUrl=aws_stack.refs["KommoAuthQueue"])["Messages"]
    job = kommo_oauth.InstallJob.from_body(message["Body"])
    # GIVEN Kommo fails every read of the account right after the exchange
    standin.fail_next(500, count=5, path="/api/v4/account")
    # THEN the job fails (SQS will deliver it again); the tokens wait, encrypted, on the install
    with pytest.raises(KommoError):
        kommo_oauth.complete_install(job, clock=clock)
    [install] = list(KommoInstallModel.scan())
    assert install.state == "exchanged" and install.access_token_ciphertext and install.claim_until is None
    # WHEN the job comes again
    assert kommo_oauth.complete_install(job, clock=clock) == "connected"
    # THEN the account is stored without a second exchange (the code works once)
    assert [c.grant_type for c in standin.token_calls] == ["authorization_code"]
    assert AccountModel.get(seed.ACCOUNT_ID).status == "active"


def test_a_refused_code_fails_the_install_loudly(
    standin: KommoStandIn,
    redirect: Redirect,
    run_exchanges: Callable[[], dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    redirect(code="def50200-not-a-code-kommo-issued", referer=REFERER, from_widget="1")
    assert run_exchanges()["batchItemFailures"] == []  # nothing to retry: the code is bad
    [install] = list(KommoInstallModel.scan())
    assert install.state == "failed" and "Kommo answered 400" in str(install.error)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "Kommo refused the install's authorization code"
    ]
    assert AccountModel.count() == 0


def test_kommo_refusing_our_client_keeps_the_install_for_another_try(
    standin: KommoStandIn, clock: SimClock, aws_stack: StackResources, caplog: pytest.LogCaptureFixture
) -> None:
    kommo_oauth.receive_install(
        {"code": standin.issue_code(CLIENT_ID), "referer": REFERER, "from_widget": "1"}, clock=clock
    )
    [message] = boto3.client("sqs").receive_message(QueueUrl=aws_stack.refs["KommoAuthQueue"])["Messages"]
    job = kommo_oauth.InstallJob.from_body(message["Body"])
    # GIVEN Kommo refuses our client id or secret (a bad deploy), in its own words
    standin.fail_next(401, body=WRONG_CLIENT_ANSWER, path="/oauth2/access_token")
    # WHEN the exchange runs: the job fails (SQS will deliver it again), loudly
    with pytest.raises(KommoMisconfigured):
        kommo_oauth.complete_install(job, clock=clock)
    assert any("KOMMO_CLIENT_SECRET" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    # THEN the install waits for another try, rather than failing as if the code were refused
    [install] = list(KommoInstallModel.scan())
    assert install.state == "pending" and install.error is None and install.claim_until is None
    # AND once Kommo accepts our client, the next delivery connects the account
    assert kommo_oauth.complete_install(job, clock=clock) == "connected"
    assert AccountModel.get(seed.ACCOUNT_ID).status == "active"


def test_a_code_older_than_20_minutes_is_not_sent(
    standin: KommoStandIn, clock: SimClock, aws_stack: StackResources
) -> None:
    code = standin.issue_code(CLIENT_ID)
    kommo_oauth.receive_install({"code": code, "referer": REFERER, "from_widget": "1"}, clock=clock)
    [message] = boto3.client("sqs").receive_message(QueueUrl=aws_stack.refs["KommoAuthQueue"])["Messages"]
    clock.advance(21 * 60)
    assert (
        kommo_oauth.complete_install(kommo_oauth.InstallJob.from_body(message["Body"]), clock=clock)
        == "failed"
    )
    assert standin.token_calls == []


def test_reinstalling_keeps_the_account_and_replaces_its_tokens(
    standin: KommoStandIn, installed: AccountModel, clock: SimClock, aws_stack: StackResources
) -> None:
    from tests.support.fixtures.kommo_oauth import install_through_oauth

    # GIVEN the account was disconnected meanwhile
    AccountModel(seed.ACCOUNT_ID).update(
        actions=[AccountModel.status.set("disconnected"), AccountModel.status_detail.set("refused")]
    )
    first_install = installed.installed_at
    clock.advance(3600)
    # WHEN the widget is installed again
    install_through_oauth(standin, aws_stack, clock)
    # THEN the account is active again with the new grant's tokens; its first install time stays
    account = AccountModel.get(seed.ACCOUNT_ID, consistent_read=True)
    assert (account.status, account.status_detail, account.token_version) == ("active", None, 2)
    assert account.installed_at == first_install and account.connected_at != first_install
    assert stored_tokens()[1] == standin.refresh_token


def test_a_flood_of_made_up_codes_is_throttled_and_a_real_install_gets_through_a_minute_later(
    clock: SimClock, standin: KommoStandIn, aws_stack: StackResources
) -> None:
    def redirect(code: str, host: str) -> int:
        return kommo_oauth.receive_install(
            {"code": code, "referer": host, "from_widget": "1"}, clock=clock
        ).status

    # WHEN one host is hit with made-up codes: its burst passes, then it waits its turn
    statuses = [redirect(f"def50200flood{n:04d}", "victim.kommo.com") for n in range(10)]
    assert statuses == [200] * kommo_oauth.HOST_INSTALL_BURST + [429] * (10 - kommo_oauth.HOST_INSTALL_BURST)
    # WHEN made-up hosts flood the route: everyone's burst passes, then every host is refused
    flood = [redirect(f"def50200many{n:04d}", f"made-up-{n}.kommo.com") for n in range(60)]
    passed = flood.count(200)
    assert passed == kommo_oauth.INSTALL_BURST - kommo_oauth.HOST_INSTALL_BURST and flood[-1] == 429
    assert queued(aws_stack) == kommo_oauth.INSTALL_BURST
    # THEN a real administrator who tries again a minute later gets through
    page = kommo_oauth.receive_install(
        {"code": standin.issue_code(CLIENT_ID), "referer": REFERER, "from_widget": "1"}, clock=clock
    )
    assert page.status == 429 and "try again in a minute" in page.message
    clock.advance(60)
    real = standin.issue_code(CLIENT_ID)
    assert redirect(real, REFERER) == 200
    assert queued(aws_stack) == kommo_oauth.INSTALL_BURST + 1
