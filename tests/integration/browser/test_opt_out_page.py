"""The opt-out page as a person meets it: a campaign email's unsubscribe link opened in
headless Chromium, the button pressed (docs/opt-out.md)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from mailer_core.accounts.actors import Actor
from mailer_core.messages import compose
from mailer_core.messages.requests import ComposeRequest
from mailer_core.store.models import SuppressionModel

from devstack.resources import StackResources
from tests.support.api_client import ApiClient, load_handler
from tests.support.browser import fresh_page, screenshot_path
from tests.support.fixtures.core import mailbox_body
from tests.support.fixtures.tracking import ACCOUNT, BASE, fresh
from tests.support.served_functions import served
from tests.support.smtp_servers import SmtpTestServer
from tests.support.sqs import deliver

pytestmark = pytest.mark.usefixtures("tracked")

CLIENT = "reader@example.com"


def sent_campaign_email(smtp: SmtpTestServer, aws_stack: StackResources, **fields: Any) -> tuple[str, str]:
    """A campaign email sent to the SMTP server; its message id and its unsubscribe path."""
    request = ComposeRequest.of(
        to=[CLIENT], subject="Autumn offer", html="<p>Our offer.</p>", lane="bulk", **fields
    )
    message_id = str(compose.compose(request, Actor.automatic(ACCOUNT, 501), campaign_id="C1")["id"])
    deliver(load_handler("send"), aws_stack.refs["BulkSendQueue"], aws_stack.attrs[("BulkSendQueue", "Arn")])
    [received] = smtp.messages
    header = str(received.parsed()["List-Unsubscribe"]).strip()
    match = re.fullmatch(r"<" + re.escape(BASE) + r"(/u/[\w-]+)>", header)
    assert match, header
    return message_id, match.group(1)


def test_a_person_opens_the_link_sees_a_button_and_is_unsubscribed_only_by_pressing_it(
    smtp: SmtpTestServer, aws_stack: StackResources, user: ApiClient, page: Any
) -> None:
    # GIVEN a campaign email sent, and the track function served on 127.0.0.1
    user.post("/v1/mailboxes", mailbox_body(smtp))
    message_id, path = sent_campaign_email(smtp, aws_stack)
    with served("track") as base:
        # WHEN a person opens the link in a browser
        page.goto(base + path)
        page.screenshot(path=screenshot_path("opt-out-page"))
        # THEN a page with a button, and nobody unsubscribed yet
        button = page.get_by_role("button")
        assert button.count() == 1 and button.is_visible()
        assert SuppressionModel.count(ACCOUNT) == 0 and fresh(message_id).opted_out_at is None
        # WHEN the button is pressed
        button.click()
        page.wait_for_load_state()
        page.screenshot(path=screenshot_path("opt-out-done"))
        # THEN the page says so, and the address is suppressed as opted out
        assert "You are unsubscribed" in page.content()
    row = SuppressionModel.get(ACCOUNT, CLIENT)
    assert (row.reason, row.message_id) == ("opted_out", message_id)
    assert fresh(message_id).opted_out_at is not None


def test_the_page_speaks_the_emails_language_in_a_russian_browser(
    smtp: SmtpTestServer, aws_stack: StackResources, user: ApiClient, browser: Any
) -> None:
    user.post("/v1/mailboxes", mailbox_body(smtp))
    _, path = sent_campaign_email(smtp, aws_stack, locale="ru_RU")
    with fresh_page(browser, locale="ru-RU") as page, served("track") as base:
        page.goto(base + path)
        assert "Отписаться" in page.get_by_role("button").inner_text()
        page.screenshot(path=screenshot_path("opt-out-page-ru"))
        page.get_by_role("button").click()
        page.wait_for_load_state()
        assert "Вы отписаны" in page.content()
