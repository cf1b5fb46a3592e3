"""`POST /hooks/kommo/salesbot`: a Salesbot widget step sends a template and the bot goes on."""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import jwt
import pytest
from mailer_core.store.models import AccountModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.constants import TEST_SECRET
from tests.support.fixtures.pipeline import (
    SECRET,
    TEMPLATE_ID,
    messages,
    post_hook,
    queued_jobs,
    run_pipeline,
)
from tests.support.kommo_accounts import save_account_with_token, serialize_moto
from tests.support.kommo_helpers import MANAGER_TOKEN

SALESBOT = "/hooks/kommo/salesbot"


def bot_token(*, secret: str = TEST_SECRET, algorithm: str = "HS512", ttl: int = 600, **changes: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": f"https://{seed.SUBDOMAIN}.kommo.com",
        "client_uuid": "5a4b8f4e-0000-4000-8000-000000000001",
        "subdomain": seed.SUBDOMAIN,
        "account_id": seed.ACCOUNT_ID,
        "entity_id": seed.LEAD_OFFER,
        "entity_type": 2,
        "bot_type": "salesbot",
        "iat": now,
        "exp": now + ttl,
    }
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the test secret is shorter than HS512's recommended 64 bytes
        return jwt.encode(claims, secret, algorithm=algorithm)


def continue_url(standin_url: str, continue_id: str = "a1b2c3-d4") -> str:
    return f"{standin_url}/api/v4/salesbot/7771/continue/{continue_id}"


def hook_body(return_url: str, *, token: str | None = None, data: Any = None) -> str:
    body = {
        "token": token if token is not None else bot_token(),
        "data": data if data is not None else {"template_id": TEMPLATE_ID},
        "return_url": return_url,
    }
    return json.dumps(body)


def post_step(body: str) -> tuple[int, dict[str, Any]]:
    reply = post_hook(SALESBOT, body, content_type="application/json")
    return reply.status, reply.json()


def test_given_a_bot_step_then_it_answers_200_at_once_and_the_bot_goes_on_with_the_message(
    aws_stack: StackResources, kommo: KommoStandIn, template: dict[str, Any]
) -> None:
    url = continue_url(kommo.base_url)

    status, answer = post_step(hook_body(url, data={"template_id": template["id"], "delay": "0"}))
    # Kommo waits 2 s: the answer calls neither Kommo nor SMTP, the job waits on the queue.
    asked_kommo_before_the_job = list(kommo.requests)
    jobs_before_the_job = queued_jobs(aws_stack)
    run_pipeline(aws_stack)

    assert (status, answer["status"]) == (200, "accepted")
    assert asked_kommo_before_the_job == [] and jobs_before_the_job == 1
    [message] = messages()
    assert message.message_id == answer["message_id"]
    assert (message.entity_type, int(message.entity_id)) == ("leads", seed.LEAD_OFFER)
    assert list(message.to) == ["ivan.petrov@example.com"]
    [continued] = kommo.salesbot_continues
    assert (continued["bot_id"], continued["continue_id"]) == (7771, "a1b2c3-d4")
    assert continued["body"] == {"data": {"status": "queued", "message_id": message.message_id}}


def test_given_the_same_step_twice_or_a_redelivered_job_then_one_email_and_one_continue(
    aws_stack: StackResources, kommo: KommoStandIn, template: dict[str, Any]
) -> None:
    body = hook_body(continue_url(kommo.base_url), data={"template_id": template["id"]})

    first = post_step(body)
    second = post_step(body)
    run_pipeline(aws_stack)

    assert (first[0], second[0]) == (200, 200)
    assert second[1] == {"status": "duplicate", "message_id": first[1]["message_id"]}
    assert len(messages()) == 1 and len(kommo.salesbot_continues) == 1


def test_given_a_used_token_with_a_new_continue_id_then_409_and_nothing_sent(
    aws_stack: StackResources, kommo: KommoStandIn, template: dict[str, Any]
) -> None:
    # GIVEN a bot step done with a token
    token, data = bot_token(), {"template_id": template["id"]}
    first = post_step(hook_body(continue_url(kommo.base_url, "step-1"), token=token, data=data))

    # WHEN the same token comes again for another step (a new continue id)
    replay = post_step(hook_body(continue_url(kommo.base_url, "step-2"), token=token, data=data))
    run_pipeline(aws_stack)

    # THEN the first is accepted, the replay refused naming the token, and one email goes
    assert (first[0], first[1]["status"]) == (200, "accepted")
    assert replay[0] == 409
    assert (replay[1]["error"], replay[1]["field"], replay[1]["reason"]) == (
        "conflict",
        "token",
        "token_used",
    )
    assert len(messages()) == 1
    assert [c["continue_id"] for c in kommo.salesbot_continues] == ["step-1"]


def test_given_one_token_posted_twice_at_once_for_two_steps_then_exactly_one_send(
    aws_stack: StackResources,
    kommo: KommoStandIn,
    template: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    serialize_moto(monkeypatch)  # moto's requests atomic, as DynamoDB's writes are
    token, data = bot_token(), {"template_id": template["id"]}
    bodies = [hook_body(continue_url(kommo.base_url, f"race-{i}"), token=token, data=data) for i in (1, 2)]
    post_step(hook_body(continue_url(kommo.base_url), token="not.a.jwt"))  # the handler imported: a 401
    start = Barrier(2)

    def race(body: str) -> tuple[int, dict[str, Any]]:
        start.wait()
        return post_step(body)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(race, bodies))
    run_pipeline(aws_stack)

    assert sorted(status for status, _ in answers) == [200, 409]
    assert len(messages()) == 1 and len(kommo.salesbot_continues) == 1


def test_given_the_lead_is_gone_then_the_bot_still_goes_on_and_is_told_why(
    aws_stack: StackResources, kommo: KommoStandIn, template: dict[str, Any]
) -> None:
    post_step(hook_body(continue_url(kommo.base_url), data={"template_id": template["id"]}))
    kommo.remove_entity("leads", seed.LEAD_OFFER)

    run_pipeline(aws_stack)

    assert messages() == []
    [continued] = kommo.salesbot_continues
    assert continued["body"]["data"]["status"] == "skipped"
    assert "any more" in continued["body"]["data"]["error"]


def test_given_kommo_refuses_the_continue_for_lack_of_rights_then_only_that_call_fails(
    aws_stack: StackResources, kommo: KommoStandIn, template: dict[str, Any]
) -> None:
    # GIVEN a manager installed the integration: Kommo lets only administrators continue a bot
    kommo.add_token(seed.ACCOUNT_ID, MANAGER_TOKEN, user_id=seed.MANAGER_USER_ID)
    save_account_with_token(MANAGER_TOKEN, dp_secret=SECRET)
    post_step(hook_body(continue_url(kommo.base_url), data={"template_id": template["id"]}))

    run_pipeline(aws_stack)

    # THEN the email is composed, and Kommo refused the continue with its rights 403
    assert len(messages()) == 1 and kommo.salesbot_continues == []
    assert [r.status for r in kommo.requests if "/salesbot/" in r.path] == [403]
    # AND that refusal blocks nothing: the account stays active, the job is done, not retried
    assert AccountModel.get(seed.ACCOUNT_ID, consistent_read=True).status == "active"
    assert queued_jobs(aws_stack) == 0


def test_given_a_customer_step_then_nothing_is_sent_and_the_bot_goes_on(
    aws_stack: StackResources, kommo: KommoStandIn, template: dict[str, Any]
) -> None:
    token = bot_token(entity_type=12, entity_id=90001)
    body = hook_body(continue_url(kommo.base_url), token=token, data={"template_id": template["id"]})

    assert post_step(body)[0] == 200
    run_pipeline(aws_stack)

    assert messages() == []
    assert kommo.salesbot_continues[0]["body"]["data"]["status"] == "skipped"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: bot_token(algorithm="HS256"), id="HS256, the widget token's algorithm"),
        pytest.param(lambda: bot_token(secret="another-integrations-secret-0123456789"), id="forged"),
        pytest.param(lambda: bot_token(ttl=-120), id="expired"),
        pytest.param(lambda: bot_token(account_id=None), id="no account"),
        pytest.param(lambda: bot_token(entity_id="lead"), id="entity id not a number"),
        pytest.param(lambda: bot_token()[:-4] + "AAAA", id="signature changed"),
        pytest.param(
            lambda: jwt.encode({"account_id": seed.ACCOUNT_ID}, "", algorithm="none"), id="alg none"
        ),
        pytest.param(lambda: "not.a.jwt", id="garbage"),
        pytest.param(lambda: "", id="empty"),
    ],
)
def test_given_a_token_that_kommo_did_not_sign_for_us_then_401(
    aws_stack: StackResources, kommo: KommoStandIn, token: Any
) -> None:
    status, answer = post_step(hook_body(continue_url(kommo.base_url), token=token()))

    assert status == 401, answer
    assert answer["error"] == "unauthorized"
    assert queued_jobs(aws_stack) == 0


@pytest.mark.parametrize(
    "changes",
    [{"account_id": 42000002}, {"subdomain": "othercompany"}],
    ids=["foreign account", "subdomain mismatch"],
)
def test_given_a_signed_token_of_an_account_not_installed_then_404(
    aws_stack: StackResources, kommo: KommoStandIn, changes: dict[str, Any]
) -> None:
    status, _ = post_step(hook_body(continue_url(kommo.base_url), token=bot_token(**changes)))

    assert status == 404
    assert queued_jobs(aws_stack) == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/api/v4/salesbot/7771/continue/x",  # another host gets the token: SSRF
        "http://169.254.169.254/api/v4/salesbot/7771/continue/x",
        "{standin}/api/v4/leads/24000001",  # the account's host, another method
        "{standin}/api/v4/salesbot/7771/continue/x?redirect=https://evil.example",
        "not a url",
    ],
)
def test_given_a_return_url_off_the_accounts_kommo_host_then_400_and_nothing_queued(
    aws_stack: StackResources, kommo: KommoStandIn, url: str
) -> None:
    status, answer = post_step(hook_body(url.format(standin=kommo.base_url)))

    assert status == 400, answer
    assert answer["field"] == "return_url"
    assert queued_jobs(aws_stack) == 0


def test_given_a_step_without_a_template_then_400_names_the_setting(
    aws_stack: StackResources, kommo: KommoStandIn
) -> None:
    status, answer = post_step(hook_body(continue_url(kommo.base_url), data={"delay": "10"}))

    assert status == 400
    assert answer["field"] == "data.template_id"
