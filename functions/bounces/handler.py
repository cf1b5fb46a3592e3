"""The bounce function: the schedule queues a poll job per due mailbox; each job polls one."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.base.logs import logger
from mailer_core.bounces import poller as bounce_poller


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" not in event:  # EventBridge Scheduler, every 5 minutes
        return {"queued": bounce_poller.dispatch()}
    failures = []
    polls = []
    for record in event["Records"]:
        try:
            poll = bounce_poller.poll_job(record["body"])
        except Exception:  # a store failure: the job comes back, its lease keeps others off
            logger.exception("a bounce poll job failed")
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        if poll is not None:
            polls.append(poll.view())
    return {"batchItemFailures": failures, "polls": polls}
