"""Tracked links and the pixel in real emails sent by the send worker, and the rewrite rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mailer_core.base.clock import FakeClock
from mailer_core.tracking import rewrite as tracking
from mailer_core.tracking import routes as tracking_routes
from mailer_core.tracking import tokens as tracking_tokens

from devstack.resources import StackResources
from tests.support.api_client import ApiClient, load_handler
from tests.support.fixtures.core import mailbox_body
from tests.support.fixtures.tracking import ACCOUNT, BASE, fresh, hit
from tests.support.smtp_servers import SmtpTestServer
from tests.support.sqs import deliver

pytestmark = pytest.mark.usefixtures("tracked")

BODY = (
    "<html><body><p>Hello</p>"
    "<a href='https://shop.example.com/offer?a=1&amp;b=2'>Offer</a> "
    '<a href="https://shop.example.com/offer?a=1&b=2">Again</a> '
    '<a href="mailto:anna@example.com">Write</a> <a href="tel:+123">Call</a> <a href="#top">Top</a> '
    '<a href="https://example.com/unsubscribe?u=1">Unsubscribe</a> '
    '<a data-mailer-notrack href="https://docs.example.com/">Docs</a> '
    '<A HREF="http://blog.example.com/post">Blog</A>'
    "</body></html>"
)


def rewritten(track_opens: bool = True) -> tracking.TrackedHtml:
    return tracking.rewrite(
        BODY, account_id=ACCOUNT, message_id="R1", sent_at=1_700_000_000, track_opens=track_opens
    )


def test_rewrite_tracks_web_links_once_each_and_leaves_the_rest() -> None:
    out = rewritten()
    assert out.links == ["https://shop.example.com/offer?a=1&b=2", "http://blog.example.com/post"]
    hrefs = re.findall(r"""href\s*=\s*["']([^"']*)""", out.html, flags=re.IGNORECASE)
    tracked = [h for h in hrefs if h.startswith(BASE + "/c/")]
    assert len(tracked) == 3 and tracked[0] == tracked[1]  # the same URL twice is one link
    for kept in ("mailto:anna@example.com", "tel:+123", "#top", "https://example.com/unsubscribe?u=1"):
        assert kept in hrefs
    assert "https://docs.example.com/" in hrefs
    token = tracking_tokens.verify(tracked[2].rsplit("/", 1)[1], kind=tracking_tokens.CLICK)
    assert token is not None and token.link_index == 1 and token.matches("http://blog.example.com/post")
    # the pixel is the last thing before </body>
    assert re.search(r'<img src="' + re.escape(BASE) + r'/o/[\w-]+"[^>]*/></body>', out.html)


def test_rewrite_without_open_tracking_adds_no_pixel() -> None:
    out = rewritten(track_opens=False)
    assert "/o/" not in out.html and out.links


def test_a_sent_email_carries_tracked_links_and_the_pixel_and_clicks_work(
    smtp: SmtpTestServer, aws_stack: StackResources, user: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a mailbox on a real SMTP server and a message with links
    user.post("/v1/mailboxes", mailbox_body(smtp))
    reply = user.post("/v1/messages", {"to": ["client@example.com"], "subject": "Offer", "html": BODY})
    assert reply.status == 202, reply.body
    message_id = reply.json()["id"]
    # WHEN the send function sends it
    result = deliver(load_handler("send"), aws_stack.refs["SendQueue"], aws_stack.attrs[("SendQueue", "Arn")])
    assert result["delivered"] == 1
    # THEN the HTML part has tracked links and the pixel; the text part keeps the real links
    [received] = smtp.messages
    parsed = received.parsed()
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    clicks = re.findall(re.escape(BASE) + r"(/c/[\w-]+)", html)
    [pixel] = re.findall(re.escape(BASE) + r"(/o/[\w-]+)", html)
    assert len(clicks) == 3 and "https://shop.example.com/offer" not in html
    assert "https://shop.example.com/offer?a=1&b=2" in text and BASE not in text
    assert "mailto:anna@example.com" in html
    stored = fresh(message_id)
    assert list(stored.tracked_links) == [
        "https://shop.example.com/offer?a=1&b=2",
        "http://blog.example.com/post",
    ]
    # AND a click right after delivery (a link scanner's) redirects but counts as a machine
    click = hit(clicks[2])
    assert click.status == 302 and click.headers["location"] == "http://blog.example.com/post"
    # AND a person's click a minute later counts as a person; the pixel counts
    later = FakeClock(current=datetime.now(UTC) + timedelta(minutes=1))
    monkeypatch.setattr(load_handler("track"), "clock", later)
    assert hit(clicks[2]).headers["location"] == "http://blog.example.com/post"
    assert hit(pixel).body == tracking_routes.PIXEL_GIF
    view = user.get(f"/v1/messages/{message_id}").json()
    assert view["opens"] == {"people": 1, "machines": 0} and view["first_open_at"]
    assert view["clicks"][1] == {"url": "http://blog.example.com/post", "people": 1, "machines": 1}
    assert view["clicks"][0]["people"] == view["clicks"][0]["machines"] == 0


def test_a_message_with_open_tracking_off_has_no_pixel(
    smtp: SmtpTestServer, aws_stack: StackResources, user: ApiClient
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp))
    reply = user.post(
        "/v1/messages", {"to": ["client@example.com"], "subject": "Quiet", "html": BODY, "track_opens": False}
    )
    assert reply.status == 202, reply.body
    deliver(load_handler("send"), aws_stack.refs["SendQueue"], aws_stack.attrs[("SendQueue", "Arn")])
    [received] = smtp.messages
    html: Any = received.parsed().get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "/o/" not in html and BASE + "/c/" in html
    assert user.get(f"/v1/messages/{reply.json()['id']}").json()["track_opens"] is False


def test_track_opens_must_be_a_boolean(
    aws_stack: StackResources, user: ApiClient, smtp: SmtpTestServer
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp))
    reply = user.post("/v1/messages", {"to": ["c@example.com"], "html": "<p>x</p>", "track_opens": "no"})
    assert reply.status == 422 and reply.json()["field"] == "track_opens"


def test_a_template_can_turn_open_tracking_off_and_a_compose_can_turn_it_back_on(
    aws_stack: StackResources, user: ApiClient, smtp: SmtpTestServer
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp))
    made = user.post(
        "/v1/templates", {"name": "Quiet", "subject": "Hi", "html": "<p>Hi</p>", "track_opens": False}
    )
    assert made.status == 201, made.body
    assert made.json()["track_opens"] is False
    template_id = made.json()["id"]
    plain = user.post("/v1/messages", {"to": ["c@example.com"], "template_id": template_id})
    loud = user.post(
        "/v1/messages", {"to": ["c@example.com"], "template_id": template_id, "track_opens": True}
    )
    assert plain.status == loud.status == 202, (plain.body, loud.body)
    assert user.get(f"/v1/messages/{plain.json()['id']}").json()["track_opens"] is False
    assert user.get(f"/v1/messages/{loud.json()['id']}").json()["track_opens"] is True
