"""EventBridge Scheduler target (every 5 minutes): poll the mailboxes' inboxes for bounces."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.base.logs import logger
from mailer_core.bounces import poller as bounce_poller


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    polls = bounce_poller.poll_all(time_left=lambda: context.get_remaining_time_in_millis() / 1000)
    reports = sum(p.reports for p in polls)
    return {"mailboxes": len(polls), "reports": reports, "polls": [p.view() for p in polls]}
