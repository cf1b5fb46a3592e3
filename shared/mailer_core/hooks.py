"""What happens to a message's automation when it fails: the one place the triggers hook in.

Triggers ("on failure: move the lead, set a task …") are built by a later piece of work.
Until then the hooks only log; every path that fails a message after it was composed calls
them exactly once per failure (the send worker when a message is failed, the bounce poller
when a recipient's address bounced for good), after the fact is stored with a conditional
write, so a repeated delivery of the same event never calls them twice.
"""

from __future__ import annotations

from datetime import datetime

from mailer_core.logs import logger
from mailer_core.models import MessageModel


def on_message_failed(message: MessageModel, reason: str) -> None:
    """The message failed (or bounced for a recipient): run its "failed" triggers.

    TODO(triggers): enqueue the message's "failed" trigger runs on the actions queue.
    """
    logger.info(
        "failed triggers would run",
        extra={"account_id": int(message.account_id), "message_id": message.message_id, "reason": reason},
    )


def on_message_opened(message_key: tuple[int, str], when: datetime) -> None:
    """A person opened the message for the first time (recorded once, by a conditional write):
    run its "opened" triggers. Called from the track route: it must never call Kommo or SMTP.

    TODO(triggers): enqueue the message's "opened" trigger runs on the actions queue.
    """
    account_id, message_id = message_key
    logger.info(
        "opened triggers would run",
        extra={"account_id": int(account_id), "message_id": message_id, "at": when.isoformat()},
    )
