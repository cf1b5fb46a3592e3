"""One mailbox's IMAP server cannot stall bounce polling for the others, nor come first forever."""

from __future__ import annotations

from datetime import timedelta

from mailer_core.base.clock import FakeClock
from mailer_core.bounces import poller
from mailer_core.store.models import MailboxModel

from devstack.imap_server import DovecotServer
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.bounce_helpers import CLOCK, green_mailbox, report, sent_message
from tests.support.fixtures.imap import ACCOUNT
from tests.support.hostile_servers import dripping_server
from tests.support.imap_helpers import mailbox
from tests.support.imap_servers import ImapUser, append, new_user
from tests.support.smtp_servers import SmtpTestServer


def test_a_dripping_server_costs_its_mailbox_one_second_and_the_next_mailbox_is_still_read(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    special_user: ImapUser,
    aws_stack: StackResources,
) -> None:
    slow = green_mailbox(user, smtp, imap_special, new_user(imap_special, "slow"))
    good = green_mailbox(user, smtp, imap_special, special_user)
    _, header = sent_message(user, aws_stack, to=["gone@client.example"], mailbox_id=good)
    append(
        imap_special,
        special_user,
        "INBOX",
        report("postfix-hard-5.1.1", message_id=header, recipient="gone@client.example"),
    )
    with dripping_server(interval=0.2) as drip:
        MailboxModel(ACCOUNT, slow).update(
            actions=[MailboxModel.imap_port.set(drip.port), MailboxModel.imap_security.set("none")]
        )
        # the slow one was never polled: it comes first
        polls = {p.mailbox_id: p for p in poller.poll_all(clock=CLOCK, seconds=1.0)}

    assert "did not finish within 1 s" in str(polls[slow].error)
    assert polls[good].error is None and polls[good].outcomes == {"bounced": 1}
    stored = mailbox(slow)
    assert stored.imap_poll_failures == 1 and stored.imap_polled_at == CLOCK.now()
    assert stored.imap_next_poll_at == CLOCK.now() + timedelta(minutes=5)
    assert stored.imap_poll_lease_until is None
    shown = user.get(f"/v1/mailboxes/{slow}").json()["bounce_polling"]
    assert shown["failures"] == 1 and not shown["quarantined"] and "1 s" in shown["error"]
    # backing off: not due for 5 minutes, then due again (behind the good one, polled as long ago)
    assert [m.mailbox_id for m in poller.due(CLOCK.now() + timedelta(minutes=4))] == [good]
    assert slow in [m.mailbox_id for m in poller.due(CLOCK.now() + timedelta(minutes=5))]


def test_failures_back_off_doubling_then_quarantine_and_a_success_clears_them(
    user: ApiClient,
    smtp: SmtpTestServer,
    imap_special: DovecotServer,
    aws_stack: StackResources,
) -> None:
    box = green_mailbox(user, smtp, imap_special, new_user(imap_special, "flaky"))
    waits = []
    now = CLOCK.now()
    port, security = mailbox(box).imap_port, mailbox(box).imap_security
    with dripping_server(interval=0.5) as drip:
        MailboxModel(ACCOUNT, box).update(
            actions=[MailboxModel.imap_port.set(drip.port), MailboxModel.imap_security.set("none")]
        )
        for _ in range(poller.QUARANTINE_AFTER):
            poller.poll_mailbox(mailbox(box), clock=FakeClock(now), seconds=0.2)
            waits.append((mailbox(box).imap_next_poll_at - now).total_seconds())  # type: ignore[operator]
    assert waits == [300, 600, 1200, 2400, 4800, 9600, 19200, 86400]  # 6 h cap, then once a day
    assert user.get(f"/v1/mailboxes/{box}").json()["bounce_polling"]["quarantined"]

    MailboxModel(ACCOUNT, box).update(
        actions=[MailboxModel.imap_port.set(port), MailboxModel.imap_security.set(security)]
    )
    assert poller.poll_mailbox(mailbox(box), clock=FakeClock(now)).error is None
    assert user.get(f"/v1/mailboxes/{box}").json()["bounce_polling"] is None
    assert mailbox(box).imap_next_poll_at is None
