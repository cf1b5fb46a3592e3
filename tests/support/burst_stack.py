"""A local stack for bursts of digital pipeline posts (the burst test and bench/hook_burst.py).

Everything runs in this one process (moto, the gateway, the pollers, the SMTP sink, the Kommo
stand-in at a high rate), with an installed account, a manager's mailbox and a template.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mailer_core.accounts import pipeline_secret
from mailer_core.accounts.auth import mint_widget_token

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.pipeline_post import post_stage_change
from devstack.smtp_sink import SmtpSink
from devstack.stack import DevStack
from devstack.system import DEV_AUDIENCE, DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_REDIRECT_URI, call
from tests.support.fixtures.pipeline import SECRET, TOKEN
from tests.support.kommo_accounts import save_account_with_token


@dataclass
class Stack:
    stack: DevStack
    kommo: KommoStandIn
    sink: SmtpSink
    template_id: str
    first_event_time: int  # distinct recent events from here on: the hook ignores older ones


@contextmanager
def burst_stack(extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """The stack; `extra_env` adds to (or overrides) the functions' environment."""
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
                **(extra_env or {}),
            },
        )
        with stack:
            save_account_with_token(TOKEN, dp_secret_hash=pipeline_secret.digest(SECRET))
            template_id = _mailbox_and_template(stack.api_url, sink)
            yield Stack(stack, kommo, sink, template_id, first_event_time=int(time.time()) - 1800)


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


def post(local: Stack, n: int) -> tuple[int, dict[str, Any], float]:
    """Post the n-th distinct stage change (the lead re-entering the stage); status, body, seconds."""
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
        event_time=local.first_event_time + n,
    )
    return status, body, time.perf_counter() - started
