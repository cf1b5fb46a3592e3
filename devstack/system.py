"""The local system in one object, and how to call it over HTTP.

`LocalSystem` starts what `make run` shows: the local AWS stack (moto, gateway, pollers,
scheduler loop), the SMTP sink, the Kommo stand-in, and the demo account.
`worked_example.play_example` walks a newcomer through the example step by step, over the
same HTTP API and webhooks Kommo and the widget use, and says for each step whether it happened.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from mailer_core.accounts.auth import mint_widget_token
from mailer_core.store.models import AccountModel

from devstack.imap_server import DovecotServer, unavailable_reason
from devstack.kommo_standin import seed as kommo_seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.smtp_sink import SmtpSink
from devstack.stack import DevStack
from devstack.widget_host.server import WidgetHost

DEV_CLIENT_ID = "mailer-local-client-id"
DEV_CLIENT_SECRET = "local-development-client-secret-not-for-production"
DEV_REDIRECT_URI = "https://mailer.localhost/oauth/kommo"
DEV_AUDIENCE = "https://mailer.localhost"
SINK_LOGIN = "manager@mailerdemo.example"
SINK_PASSWORD = "local-password"


@dataclass
class LocalSystem:
    """Everything `make run` starts, on 127.0.0.1."""

    stack: DevStack = field(init=False)
    sink: SmtpSink = field(init=False)
    kommo: KommoStandIn = field(init=False)
    # The demo mailbox's IMAP server (Sent folder, bounces); None, with the reason, without Dovecot.
    imap: DovecotServer | None = field(init=False, default=None)
    imap_missing: str | None = field(init=False, default=None)
    # The worked example's public page and web version (docs/pages.md), for the banner.
    page_urls: dict[str, str] = field(init=False, default_factory=dict)
    # The Kommo-like page that hosts the built widget (devstack/widget_host, docs/widget.md).
    host: WidgetHost = field(init=False)

    def start(self) -> LocalSystem:
        self.sink = SmtpSink().start()
        # Bound first: the API must allow its origin (CORS), as it allows Kommo's account pages.
        self.host = WidgetHost()
        self._start_imap()
        # Kommo's 429 asks for up to 300 s; the local stack asks for 5, so that a demo on a
        # loaded machine, whose requests may bunch up, does not stand still for minutes.
        # The demo data holds the worked example's leads and the local campaign's audience.
        self.kommo = KommoStandIn(kommo_seed.campaign_seed(), rate_limit_wait=5).start()
        self.kommo.register_integration(DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_REDIRECT_URI)
        self.stack = DevStack(
            parameters={
                "KommoClientId": DEV_CLIENT_ID,
                "KommoClientSecret": DEV_CLIENT_SECRET,
                "KommoRedirectUri": DEV_REDIRECT_URI,
                "TrackingSecret": "local-tracking-secret-0123456789abcdef",
            },
            extra_env={
                "MAILER_ALLOW_PLAINTEXT_SMTP": "1",
                "MAILER_ALLOW_LOOPBACK_MAILBOXES": "1",  # the SMTP sink and Dovecot are on 127.0.0.1
                "MAILER_KOMMO_BASE_URL": self.kommo.base_url,
                "MAILER_EXTRA_CORS_ORIGINS": self.host.origin,
                "POWERTOOLS_LOG_LEVEL": "WARNING",
                # No CloudWatch here: base.metrics' EMF lines would only fill the console.
                "POWERTOOLS_METRICS_DISABLED": "true",
            },
        ).start()
        self._install_demo_account()
        self.host.attach(
            api_url=self.stack.api_url,
            kommo=self.kommo,
            mint_token=lambda user_id: self.widget_token(user_id=user_id),
            sink_url=self.sink.web_url,
        )
        self.host.start()
        return self

    def stop(self) -> None:
        for part in ("host", "stack", "kommo", "sink"):
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
