"""Where a message's events hand over to the automation: the one place the triggers hook in.

Every path that records an event calls its hook exactly once per event, after the fact is
stored with a conditional write (the "sent" transition, the first open, the "failed"
transition, a bounce recorded once), so a repeated delivery of the same event never calls
it twice. A hook only announces the event on the actions queue (`automation`): it never calls
Kommo or SMTP, so the pixel route and the send worker stay fast. An announcement that cannot
be queued is logged as an error and does not undo the event: the event happened.

The "sent" and "failed" hooks also count the email on its template (`template_stats`, each
email once; a person's first open is counted by the actions function). A counter that cannot
be written is logged and never fails the send.
"""

from __future__ import annotations

from datetime import datetime

from mailer_core.base import metrics
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.logs import logger
from mailer_core.events import announce, campaign_state, template_counters
from mailer_core.store.models import MessageModel

COMPLAINED_PREFIX = "complained:"  # how bounces.reports words a complaint it hands to on_message_failed


def _logged(event: str, account_id: float, message_id: str) -> dict[str, object]:
    return {"event": event, "account_id": int(account_id), "message_id": message_id}


def _failure_metric(reason: str) -> metrics.Event | None:
    """A permanent bounce counts as bounced; a complaint is no failure to send; the rest failed."""
    if reason.startswith(template_counters.BOUNCED_PREFIX):
        return "bounced"
    return None if reason.startswith(COMPLAINED_PREFIX) else "failed"


def _campaign_kind(reason: str) -> str:
    """A bounce or a complaint comes after "sent": the campaign counts it apart, not as failed."""
    if reason.startswith(template_counters.BOUNCED_PREFIX):
        return "bounced"
    return "complained" if reason.startswith(COMPLAINED_PREFIX) else "failed"


def on_message_sent(message: MessageModel, when: datetime) -> None:
    """The message was sent: its "sent" triggers run and its not-opened timer is set."""
    try:
        announce.announce_sent(message, when)
    except Exception:
        logger.exception(
            "could not queue the sent event", extra=_logged("sent", message.account_id, message.message_id)
        )
    template_counters.on_sent(message, when)  # never raises: a counter never fails the send
    campaign_state.count_safely(message, "sent", when)  # never raises either
    metrics.count("sent", int(message.account_id), message.mailbox_id)  # never raises either


def on_message_failed(message: MessageModel, reason: str, *, clock: Clock = SYSTEM_CLOCK) -> None:
    """The message failed (or bounced for a recipient): its "failed" triggers run."""
    logger.info(
        "message failed",
        extra={**_logged("failed", message.account_id, message.message_id), "reason": reason},
    )
    try:
        announce.announce_failed(message, clock.now())
    except Exception:
        logger.exception(
            "could not queue the failed event",
            extra=_logged("failed", message.account_id, message.message_id),
        )
    template_counters.on_failed(message, reason, clock.now())  # never raises
    campaign_state.count_safely(message, _campaign_kind(reason), clock.now())  # never raises
    metric = _failure_metric(reason)
    if metric:
        metrics.count(metric, int(message.account_id), message.mailbox_id)


def on_mailbox_login_refused(message: MessageModel, reason: str, *, clock: Clock = SYSTEM_CLOCK) -> None:
    """A campaign's email failed because its mailbox's SMTP login was refused (the mailbox is
    red now): the campaign is paused with the reason, so nothing more is tried with a password
    the provider refuses (its queued emails are held; a resume after the mailbox is fixed sends
    them). Called by the send worker for a bulk message with a `campaign_id`, once per failed
    email; the pause is a conditional write, so the second email's call changes nothing."""
    logger.warning(
        "campaign email failed: the mailbox's login was refused",
        extra={
            **_logged("mailbox_login_refused", message.account_id, message.message_id),
            "campaign_id": message.campaign_id,
            "mailbox_id": message.mailbox_id,
            "reason": reason,
        },
    )
    if message.campaign_id:
        words = f"the mailbox {message.mailbox_id} refused the login: {reason}"
        campaign_state.pause_safely(int(message.account_id), str(message.campaign_id), words, clock.now())


def on_message_replied(message: MessageModel, when: datetime) -> None:
    """The recipient answered (the first reply, recorded once): its "replied" triggers run and
    its not-opened timer is deleted. Called from the bounce poller, which reads the inbox."""
    try:
        announce.announce_replied(message, when)
    except Exception:
        logger.exception(
            "could not queue the replied event",
            extra=_logged("replied", message.account_id, message.message_id),
        )


def on_message_opened(message_key: tuple[int, str], when: datetime) -> None:
    """A person opened the message for the first time (recorded once, by a conditional write):
    its "opened" triggers run and its not-opened timer is deleted. Called from the track route."""
    account_id, message_id = message_key
    try:
        announce.announce(account_id, message_id, "opened", when)
    except Exception:
        logger.exception("could not queue the opened event", extra=_logged("opened", account_id, message_id))


def on_message_opted_out(message: MessageModel, when: datetime) -> None:
    """The recipient unsubscribed through the email's link (recorded once, by the conditional
    write that set `opted_out_at`; the address is already suppressed). Called from the track
    function's unsubscribe route, so it only announces: the actions function puts the account's
    opt-out tag or note on the contact when the account wants them (docs/opt-out.md). A
    campaign's email is counted on its campaign here as well (mailer_core.campaigns)."""
    try:
        announce.announce(int(message.account_id), message.message_id, "opted_out", when)
    except Exception:
        logger.exception(
            "could not queue the opted-out event",
            extra=_logged("opted_out", message.account_id, message.message_id),
        )
    campaign_state.count_safely(message, "opted_out", when)  # never raises
