"""A campaign paced by each sender mailbox's daily cap: a mailbox at its cap gets none of the
campaign's emails while the others share them; with every sender at its cap the campaign
waits, saying why and until when, with nothing failed or lost (moto, a real SMTP server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailer_core.base.clock import SYSTEM_CLOCK
from mailer_core.store import rate_buckets

from devstack.resources import StackResources
from tests.integration.campaigns.test_campaign_sending import (
    delivered_to,
    fast_mailbox,
    new_campaign,
    status_of,
)
from tests.support.api_client import ApiClient
from tests.support.campaigns import PagedAudience, work_queues
from tests.support.fixtures.core import ACCOUNT, LOGIN
from tests.support.smtp_servers import SmtpTestServer


def use_up_daily_cap(mailbox_id: str, cap: int) -> None:
    """The mailbox sent `cap` emails today (its rate bucket says so), e.g. a manager's."""
    key = rate_buckets.mailbox_key(ACCOUNT, mailbox_id)
    now = SYSTEM_CLOCK.timestamp()
    for n in range(cap):
        assert rate_buckets.take(key, rate_per_second=1000, daily_cap=cap, now=now + n).allowed


def test_a_mailbox_at_its_daily_cap_leaves_the_campaigns_emails_to_the_others(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    # GIVEN two sender mailboxes, one of which reached its daily cap of 2 today
    capped = fast_mailbox(
        user, smtp, sender_email="capped@example.com", smtp_login=LOGIN, daily_cap=2, is_default=False
    )
    free = fast_mailbox(user, smtp, sender_email="free@example.com", smtp_login=LOGIN, is_default=False)
    use_up_daily_cap(capped, 2)
    addresses = [f"k{n}@example.com" for n in range(8)]
    campaign_id = new_campaign(user, [capped, free], [addresses])
    # WHEN the campaign is started and worked
    assert user.post(f"/v1/campaigns/{campaign_id}/start", {}).status == 200
    work_queues(aws_stack, until=lambda: status_of(user, campaign_id) == "sent", timeout=60)
    # THEN every recipient got one email, all from the mailbox with room left
    assert delivered_to(smtp) == addresses
    assert {m.parsed()["From"].addresses[0].addr_spec for m in smtp.messages} == {"free@example.com"}
    log = user.get(f"/v1/campaigns/{campaign_id}/log").json()["items"]
    assert {line["mailbox_id"] for line in log} == {free}


def test_with_every_sender_at_its_daily_cap_the_campaign_waits_saying_why_until_midnight(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, paged_audience: PagedAudience
) -> None:
    # GIVEN a campaign whose only sender mailbox reached its daily cap of 3 today
    mailbox = fast_mailbox(user, smtp, daily_cap=3)
    use_up_daily_cap(mailbox, 3)
    campaign_id = new_campaign(user, [mailbox], [[f"w{n}@example.com" for n in range(4)]])
    # WHEN it is started and its queues worked
    assert user.post(f"/v1/campaigns/{campaign_id}/start", {}).status == 200
    work_queues(aws_stack, timeout=10)
    # THEN it is still Sending, nothing was sent, composed or failed, and it says why and
    # when it goes on: the mailbox's cap counts UTC days
    view = user.get(f"/v1/campaigns/{campaign_id}").json()
    assert smtp.messages == []
    assert view["status"] == "sending"
    assert view["progress"]["recipients"] == 0 and view["progress"]["failed"] == 0
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert view["waiting"]["reason"] == "daily_cap"
    assert "daily cap" in view["waiting"]["detail"]
    assert datetime.fromisoformat(view["waiting"]["next_try_at"]) == midnight
