"""SQS consumer of the send queues: each record names a message to send, or a bundle of them."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.adapters.smtp import SmtpPool
from mailer_core.base.logs import logger
from mailer_core.sending.worker import SendWorker

processor = BatchProcessor(event_type=EventType.SQS)
# SMTP sessions outlive one batch: a warm container keeps its mailboxes' connections.
smtp_pool = SmtpPool()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    time_left = lambda: context.get_remaining_time_in_millis() / 1000  # noqa: E731
    records = event.get("Records", [])
    with SendWorker(pool=smtp_pool, close_pool=False, time_left=time_left) as worker:
        # Each mailbox's jobs in a lane of their own, side by side; the outcomes by record.
        outcomes = worker.process_batch([str(record.get("body", "")) for record in records])
    done = {str(record.get("messageId")): outcome for record, outcome in zip(records, outcomes, strict=True)}

    def handle(record: SQSRecord) -> str:
        outcome = done[record.message_id]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return dict(
        process_partial_response(event=event, record_handler=handle, processor=processor, context=context)
    )
