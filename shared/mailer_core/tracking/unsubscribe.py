"""A campaign email's opt-out at send time: its unsubscribe URL, the placeholder filled in, the
footer when the body has no link, and the List-Unsubscribe headers (docs/opt-out.md).

The send worker hands every rendered email to `finish` (after the tracking rewrite, which
leaves the placeholder's marker alone: it is an unsubscribe-like link). An email of a campaign
(`campaign_id` set) gets its signed URL `{MAILER_PUBLIC_BASE_URL}/u/{token}` wherever the
body, the subject or the plain-text part holds `{{ unsubscribe_url }}` / `{optOutUrl}`; when
the rendered body holds none, the footer (rendering.opt_out) unless the account turned it
off; and the URL for the RFC 2369 / RFC 8058 headers (adapters.mime). A campaign's Send
Test email (origin `store.models.CAMPAIGN_TEST_ORIGIN`) gets the same, so the manager sees
what recipients will (its link shows the same pages, but unsubscribes no one:
messages.opt_out). Any other email keeps no opt-out: the placeholder becomes `#` and no
header is added. A campaign email cannot go out without its link: with tracking not
configured (no secret or no public URL) it fails with that reason instead of being sent.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from mailer_core.accounts import access
from mailer_core.adapters import secrets
from mailer_core.adapters.mime import OutgoingEmail
from mailer_core.base.config import get_settings
from mailer_core.base.errors import Conflict
from mailer_core.rendering import opt_out
from mailer_core.store.models import CAMPAIGN_TEST_ORIGIN, MessageModel
from mailer_core.tracking import tokens


class OptOutUnavailable(Conflict):
    """A campaign email whose unsubscribe URL cannot be made: it is not sent (a permanent failure)."""

    code = "opt_out_unavailable"


def url_for(account_id: int, message_id: str, issued_at: int) -> str:
    """The email's signed one-click unsubscribe URL; OptOutUnavailable without a secret or public URL."""
    settings = get_settings()
    if not (secrets.tracking_configured() and settings.public_base_url):
        raise OptOutUnavailable(
            "a campaign email needs its unsubscribe link, and MAILER_PUBLIC_BASE_URL or "
            "MAILER_TRACKING_SECRET is not set: it was not sent"
        )
    return f"{settings.public_base_url}/u/{tokens.unsubscribe_token(account_id, message_id, issued_at)}"


def finish(message: MessageModel, email: OutgoingEmail, now: datetime) -> OutgoingEmail:
    """The rendered email with its opt-out: the URL filled in, the footer, the headers."""
    if not message.campaign_id and message.origin != CAMPAIGN_TEST_ORIGIN:
        if not any(opt_out.MARKER in part for part in (email.subject, email.html, email.text or "")):
            return email
        return _filled(email, None)
    account_id = int(message.account_id)
    url = url_for(account_id, message.message_id, int(now.timestamp()))
    in_body = opt_out.has_marker(email.html)
    email = replace(_filled(email, url), unsubscribe_url=url)
    if not in_body and access.settings_of(account_id).opt_out_footer:
        html, text = opt_out.with_footer(email.html, email.text, url, message.locale)
        email = replace(email, html=html, text=text)
    return email


def _filled(email: OutgoingEmail, url: str | None) -> OutgoingEmail:
    return replace(
        email,
        subject=opt_out.fill(email.subject, url),
        html=opt_out.fill(email.html, url),
        text=opt_out.fill(email.text, url) if email.text is not None else None,
    )
