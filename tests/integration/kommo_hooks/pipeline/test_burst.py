"""A burst of digital pipeline posts through the local stack's HTTP gateway, as Kommo makes them
when many leads reach a stage at once: every answer within Kommo's deadline, every email once.

The stack runs every handler in this one process (moto, the gateway, the pollers, the SMTP
sink), so the bound is generous for what the hook does (three DynamoDB/SQS calls, tens of
milliseconds in AWS): `DEADLINE_SECONDS`, the 2 s Kommo documents for its hooks, for every
answer, measured by the client from the request's start to the answer's last byte, while the
pipeline and send functions work through the queue in the same process. The stack is warmed
with one email first (see the test). The Kommo stand-in and Mailer's Kommo limiter run at a
high rate here: the burst tests the hook and the exactly-once path, not the 7 requests/s
pacing (tests/integration/kommo covers that).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from mailer_core.accounts.auth import mint_widget_token
from mailer_core.store.models import MessageModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.pipeline_post import post_stage_change
from devstack.smtp_sink import SmtpSink
from devstack.stack import DevStack
from devstack.system import DEV_AUDIENCE, DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_REDIRECT_URI, call
from tests.support.fixtures.pipeline import SECRET, TOKEN
from tests.support.kommo_accounts import save_account_with_token

pytestmark = pytest.mark.e2e

BURST = 200
CLIENTS = 25  # posts in flight at once
DEADLINE_SECONDS = 2.0
FIRST_EVENT_TIME = 1_795_000_000


@dataclass
class Stack:
    stack: DevStack
    kommo: KommoStandIn
    sink: SmtpSink
    template_id: str


@pytest.fixture(scope="module")
def local() -> Iterator[Stack]:
    with SmtpSink() as sink, KommoStandIn(rate_limit=100_000) as kommo:
        kommo.add_token(seed.ACCOUNT_ID, TOKEN)
        stack = DevStack(
            parameters={
                "KommoClientId": DEV_CLIENT_ID,
                "KommoClientSecret": DEV_CLIENT_SECRET,
                "KommoRedirectUri": DEV_REDIRECT_URI,
                "TrackingSecret": "local-tracking-secret-0123456789abcdef",
            },
            extra_env={
                "MAILER_ALLOW_PLAINTEXT_SMTP": "1",
                "MAILER_ALLOW_LOOPBACK_MAILBOXES": "1",
                "MAILER_KOMMO_BASE_URL": kommo.base_url,
                "MAILER_KOMMO_REQUESTS_PER_SECOND": "100000",
                "POWERTOOLS_LOG_LEVEL": "WARNING",
            },
        )
        with stack:
            save_account_with_token(TOKEN, dp_secret=SECRET)
            yield Stack(stack, kommo, sink, _mailbox_and_template(stack.api_url, sink))


def _mailbox_and_template(api: str, sink: SmtpSink) -> str:
    token = mint_widget_token(
        secret=DEV_CLIENT_SECRET,
        audience=DEV_AUDIENCE,
        account_id=seed.ACCOUNT_ID,
        subdomain=seed.SUBDOMAIN,
        user_id=seed.MANAGER_USER_ID,
        is_admin=False,
        now=time.time(),
    )
    mailbox = {
        "sender_name": "Мария Менеджер",
        "sender_email": "maria.manager@example.com",
        "smtp_host": "127.0.0.1",
        "smtp_port": sink.smtp_port,
        "smtp_security": "none",
        "smtp_password": "local-password",
        "is_default": True,
        "rate_per_second": 100,
        "daily_cap": 10_000,
    }
    status, created = call("POST", f"{api}/v1/mailboxes", token, mailbox)
    assert status == 201, created
    offer = {"name": "Offer", "subject": "Предложение: {{ lead.name }}", "html": "<p>{{ contact.name }}</p>"}
    status, template = call("POST", f"{api}/v1/templates", token, offer)
    assert status == 201, template
    return str(template["id"])


def test_given_200_distinct_posts_in_parallel_then_each_is_answered_in_time_and_sent_exactly_once(
    local: Stack,
) -> None:
    def post(n: int) -> tuple[int, dict[str, Any], float]:
        started = time.perf_counter()
        status, body = post_stage_change(
            local.stack.api_url,
            account_id=seed.ACCOUNT_ID,
            subdomain=seed.SUBDOMAIN,
            secret=SECRET,
            lead_id=seed.LEAD_OFFER,
            pipeline_id=seed.PIPELINE_ID,
            status_id=seed.STATUS_QUALIFIED,
            template_id=local.template_id,
            event_time=FIRST_EVENT_TIME + n,  # 200 distinct events: the lead re-entering the stage
        )
        return status, body, time.perf_counter() - started

    # Warm the stack first: the first email imports the renderer and its dictionaries, which
    # holds this one process (and so the hook) for seconds; in AWS that happens elsewhere.
    status, first, _ = post(-1)
    assert status == 202 and local.stack.drain(timeout=60)
    warm_up = first["message_id"]
    local.sink.clear()

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(post, range(BURST)))
    replays = [post(n) for n in range(0, BURST, 20)]  # Kommo sending some of them again
    assert local.stack.drain(timeout=180), "the stack did not settle"

    assert Counter(status for status, _, _ in answers) == {202: BURST}
    slowest = max(seconds for _, _, seconds in answers)
    assert slowest < DEADLINE_SECONDS, f"the slowest answer took {slowest:.2f} s"
    assert {status for status, _, _ in replays} == {200}
    accepted = {body["message_id"] for _, body, _ in answers}
    assert len(accepted) == BURST
    stored = [m for m in MessageModel.query(seed.ACCOUNT_ID) if m.message_id != warm_up]
    assert sorted(m.message_id for m in stored) == sorted(accepted)  # each composed once
    assert {m.status for m in stored} == {"sent"}
    received = local.sink.wait_for_count(BURST, timeout=30)
    assert len(received) == BURST  # each sent once: one email per stored message, none twice
    assert sorted(m.message_id for m in received) == sorted(str(m.header_message_id) for m in stored)
    assert {m.rcpt_tos for m in received} == {("ivan.petrov@example.com",)}
