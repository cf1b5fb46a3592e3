"""The local system in one object, and the worked example played against it over HTTP.

`LocalSystem` starts what `make run` shows: the local AWS stack (moto, gateway, pollers,
scheduler loop), the SMTP sink, the Kommo stand-in, and the demo account. `play_example`
walks a newcomer through the example step by step, over the same HTTP API the widget uses,
and says for each step whether it happened.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailer_core import secrets
from mailer_core.auth import mint_widget_token
from mailer_core.models import AccountModel

from devstack import kommo_seed
from devstack.kommo_standin import KommoStandIn
from devstack.smtp_sink import SmtpSink
from devstack.stack import LocalStack

DEV_CLIENT_SECRET = "local-development-client-secret-not-for-production"
DEV_REDIRECT_URI = "https://mailer.localhost/oauth/kommo"
DEV_AUDIENCE = "https://mailer.localhost"
SINK_LOGIN = "manager@mailerdemo.example"


@dataclass
class LocalSystem:
    """Everything `make run` starts, on 127.0.0.1."""

    stack: LocalStack = field(init=False)
    sink: SmtpSink = field(init=False)
    kommo: KommoStandIn = field(init=False)

    def start(self) -> LocalSystem:
        self.sink = SmtpSink().start()
        self.kommo = KommoStandIn().start()
        self.stack = LocalStack(
            parameters={"KommoClientSecret": DEV_CLIENT_SECRET, "KommoRedirectUri": DEV_REDIRECT_URI},
            extra_env={
                "MAILER_ALLOW_PLAINTEXT_SMTP": "1",
                "MAILER_KOMMO_BASE_URL": self.kommo.base_url,
                "POWERTOOLS_LOG_LEVEL": "WARNING",
            },
        ).start()
        self._install_demo_account()
        return self

    def stop(self) -> None:
        for part in ("stack", "kommo", "sink"):
            if hasattr(self, part):
                getattr(self, part).stop()

    def __enter__(self) -> LocalSystem:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _install_demo_account(self) -> None:
        """What the Kommo install will do (a later issue): store the account and its token."""
        account_id = kommo_seed.ACCOUNT_ID
        ciphertext = secrets.encrypt(
            kommo_seed.DEMO_ACCESS_TOKEN, {"account_id": str(account_id), "purpose": "kommo_access_token"}
        )
        AccountModel(
            account_id,
            subdomain=kommo_seed.SUBDOMAIN,
            kommo_token_ciphertext=ciphertext,
            installed_at=datetime.now(UTC),
        ).save()
        self.kommo.add_token(account_id, kommo_seed.DEMO_ACCESS_TOKEN)

    def widget_token(self, *, user_id: int = kommo_seed.MANAGER_USER_ID, ttl: int = 12 * 3600) -> str:
        return mint_widget_token(
            secret=DEV_CLIENT_SECRET,
            audience=DEV_AUDIENCE,
            account_id=kommo_seed.ACCOUNT_ID,
            subdomain=kommo_seed.SUBDOMAIN,
            user_id=user_id,
            is_admin=user_id == kommo_seed.ADMIN_USER_ID,
            now=time.time(),
            ttl=ttl,
        )


def call(method: str, url: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    """One HTTP call to the local API; returns the status and the decoded JSON body."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    return status, (json.loads(raw) if raw else None)


@dataclass
class Step:
    title: str
    ok: bool
    detail: str


def play_example(system: LocalSystem, say: Callable[[str], None] = print) -> list[Step]:
    """Create a mailbox, email a lead's contact, see it arrive and turn `sent`."""
    api = system.stack.api_url
    token = system.widget_token()
    steps: list[Step] = []

    def record(title: str, ok: bool, detail: str) -> bool:
        steps.append(Step(title, ok, detail))
        say(f"  {'✓' if ok else '✗'} {title}: {detail}")
        return ok

    say("Worked example: one email from compose to inbox")
    status, mailbox = call(
        "POST",
        f"{api}/v1/mailboxes",
        token,
        {
            "sender_name": "Мария Менеджер",
            "sender_email": SINK_LOGIN,
            "smtp_host": "127.0.0.1",
            "smtp_port": system.sink.smtp_port,
            "smtp_security": "none",
            "smtp_password": "local-password",
            "is_default": True,
        },
    )
    if not record(
        "1. create a mailbox",
        status == 201,
        f"HTTP {status}, mailbox {mailbox.get('id') if status == 201 else mailbox}",
    ):
        return steps

    lead = system.kommo.lead(kommo_seed.LEAD_OFFER) or {"name": "lead"}
    status, message = call(
        "POST",
        f"{api}/v1/messages",
        token,
        {
            "entity": {"type": "leads", "id": kommo_seed.LEAD_OFFER},
            "subject": f"Коммерческое предложение: {lead['name']}",
            "html": "<h1>Здравствуйте!</h1><p>Направляем наше предложение.</p>"
            '<p><a href="https://example.com/offer.pdf">Открыть предложение</a></p>',
        },
    )
    if not record(
        "2. compose an email to the lead's main contact",
        status == 202,
        f"HTTP {status}, to {message.get('to') if status == 202 else message}",
    ):
        return steps

    try:
        arrived = system.sink.wait_for(lambda m: m.message_id == message["message_id_header"], timeout=30)
        record(
            "3. the SMTP server received it", True, f"{arrived.subject!r} to {', '.join(arrived.rcpt_tos)}"
        )
    except TimeoutError:
        record("3. the SMTP server received it", False, "nothing arrived within 30 s")
        return steps

    system.stack.drain(timeout=30)
    deadline = time.monotonic() + 30
    while True:
        status, current = call("GET", f"{api}/v1/messages/{message['id']}", token)
        if current.get("status") == "sent" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    events = " → ".join(h["event"] for h in current.get("history", []))
    record(
        "4. the message is sent",
        current.get("status") == "sent",
        f"status {current.get('status')} ({events})",
    )
    return steps
