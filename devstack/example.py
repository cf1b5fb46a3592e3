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
from typing import Any
from urllib.parse import urlencode

from mailer_core.auth import mint_widget_token
from mailer_core.models import AccountModel

from devstack import kommo_seed
from devstack.imap_server import DovecotServer, unavailable_reason
from devstack.kommo_standin import KommoStandIn
from devstack.smtp_sink import SmtpSink
from devstack.stack import LocalStack

DEV_CLIENT_ID = "mailer-local-client-id"
DEV_CLIENT_SECRET = "local-development-client-secret-not-for-production"
DEV_REDIRECT_URI = "https://mailer.localhost/oauth/kommo"
DEV_AUDIENCE = "https://mailer.localhost"
SINK_LOGIN = "manager@mailerdemo.example"
SINK_PASSWORD = "local-password"
EXPECTED_STEPS = 5  # what play_example does when everything happens
# The worked example's template: the lead's and contact's data, and Russian modifiers.
OFFER_TEMPLATE = {
    "name": "Offer",
    "subject": "{{ contact.first_name }}, коммерческое предложение по сделке «{{ lead.name }}»",
    "html": (
        "<h1>{{ contact.name|inflect('datv') }}: здравствуйте!</h1>"
        "<p>Направляем наше предложение на {{ lead.price|amount('RUB') }}"
        " ({{ lead.price|in_words(currency='RUB') }}).</p>"
        "<p>Оно действует до {{ lead.cf['Offer valid until']|date('long') }}.</p>"
        '<p><a href="https://example.com/offer.pdf">Открыть предложение</a></p>'
    ),
    "locale": "ru",
    "timezone": "Europe/Moscow",
}


@dataclass
class LocalSystem:
    """Everything `make run` starts, on 127.0.0.1."""

    stack: LocalStack = field(init=False)
    sink: SmtpSink = field(init=False)
    kommo: KommoStandIn = field(init=False)
    # The demo mailbox's IMAP server (Sent folder, bounces); None, with the reason, without Dovecot.
    imap: DovecotServer | None = field(init=False, default=None)
    imap_missing: str | None = field(init=False, default=None)

    def start(self) -> LocalSystem:
        self.sink = SmtpSink().start()
        self._start_imap()
        self.kommo = KommoStandIn().start()
        self.kommo.register_integration(DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_REDIRECT_URI)
        self.stack = LocalStack(
            parameters={
                "KommoClientId": DEV_CLIENT_ID,
                "KommoClientSecret": DEV_CLIENT_SECRET,
                "KommoRedirectUri": DEV_REDIRECT_URI,
                "TrackingSecret": "local-tracking-secret-0123456789abcdef",
            },
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
        if self.imap is not None:
            self.imap.stop(wait=False)
            self.imap = None

    def _start_imap(self) -> None:
        """Dovecot for the demo mailbox, when this machine has it: the mailbox is green then."""
        self.imap_missing = unavailable_reason()
        if self.imap_missing is not None:
            return
        try:
            self.imap = DovecotServer(special_use_sent="Sent").start()
        except (OSError, RuntimeError) as error:
            self.imap_missing = f"Dovecot did not start: {error}"
            return
        self.imap.add_user(SINK_LOGIN, SINK_PASSWORD)

    def __enter__(self) -> LocalSystem:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _install_demo_account(self) -> None:
        """Install the widget as Kommo does: a code in the redirect, exchanged in the background.

        The stand-in issues the authorization code an administrator's "Install" would; Kommo's
        redirect is played against the local gateway; the kommo_auth function (fed by its
        poller) exchanges the code at the stand-in's token endpoint and stores the account.
        """
        code = self.kommo.issue_code(DEV_CLIENT_ID)
        query = urlencode({"code": code, "referer": f"{kommo_seed.SUBDOMAIN}.kommo.com", "from_widget": "1"})
        with urllib.request.urlopen(f"{self.stack.api_url}/hooks/kommo/install?{query}", timeout=10) as page:
            if page.status != 200:
                raise RuntimeError(f"the install redirect answered {page.status}")
        self.stack.drain(timeout=30)
        account = AccountModel.get(kommo_seed.ACCOUNT_ID, consistent_read=True)
        if account.status != "active" or not account.kommo_refresh_token_ciphertext:
            raise RuntimeError(f"the demo account was not connected: {account.status_detail}")

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

    say("Worked example: a saved template, rendered with the lead's data, from compose to inbox")
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
            "smtp_password": SINK_PASSWORD,
            "is_default": True,
            "sender_phone": "+7 495 111-22-33",
            "signature": "<p>--<br>{{ manager.name }}<br>{{ manager.phone }}</p>",
            **(
                {"imap_host": system.imap.host, "imap_port": system.imap.port, "imap_security": "none"}
                if system.imap is not None
                else {}
            ),
        },
    )
    light = mailbox.get("status") if status == 201 else None
    if not record(
        "1. create a mailbox",
        status == 201 and light == ("green" if system.imap is not None else "gray"),
        f"HTTP {status}, mailbox {mailbox.get('id') if status == 201 else mailbox}, {light}"
        + (f": {mailbox['last_check']['summary']}" if status == 201 else ""),
    ):
        return steps
    if system.imap is None:
        say(
            "    (gray, not green: the demo mailbox has no IMAP server because "
            f"{system.imap_missing}. It sends, but cannot file into Sent or read bounces.)"
        )

    status, template = call("POST", f"{api}/v1/templates", token, OFFER_TEMPLATE)
    if not record(
        "2. save the template «Offer»",
        status == 201,
        f"HTTP {status}, template {template.get('id') if status == 201 else template}",
    ):
        return steps

    status, message = call(
        "POST",
        f"{api}/v1/messages",
        token,
        {"entity": {"type": "leads", "id": kommo_seed.LEAD_OFFER}, "template_id": template["id"]},
    )
    if not record(
        "3. compose it to the lead's main contact",
        status == 202,
        f"HTTP {status}, to {message.get('to') if status == 202 else message}",
    ):
        return steps

    try:
        arrived = system.sink.wait_for(lambda m: m.message_id == message["message_id_header"], timeout=30)
        record(
            "4. the SMTP server received it, rendered with the lead's data",
            "{{" not in arrived.subject,
            f"{arrived.subject!r} to {', '.join(arrived.rcpt_tos)}",
        )
    except TimeoutError:
        record("4. the SMTP server received it", False, "nothing arrived within 30 s")
        return steps

    system.stack.drain(timeout=30)
    deadline = time.monotonic() + 30
    while True:
        status, current = call("GET", f"{api}/v1/messages/{message['id']}", token)
        seen = [h["event"] for h in current.get("history", [])]
        filing_done = system.imap is None or "filed" in seen or "not_filed" in seen
        if (current.get("status") == "sent" and filing_done) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    events = " → ".join(seen)
    record(
        "5. the message is sent" + (" and filed into Sent" if system.imap is not None else ""),
        current.get("status") == "sent" and (system.imap is None or "filed" in seen),
        f"status {current.get('status')} ({events})",
    )
    return steps
