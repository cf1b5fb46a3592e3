"""SQS consumer of the actions queue: email events fanned out into trigger runs, and the runs."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.automation import runner as automation
from mailer_core.base.config import get_settings
from mailer_core.base.logs import logger
from mailer_core.events import shares

# A batch whose every record failed is reported like any partial failure: each failed job is
# already set to come back after its own backoff.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def handle(record: SQSRecord, batch: shares.FairBatch) -> str:
    # Within the account's share of the workers; a busy account's job goes back to the queue.
    return batch.run_record(
        record.raw_event,
        lambda: automation.process(
            record.body,
            attempt=int(record.attributes.approximate_receive_count or 1),
            receipt_handle=record.receipt_handle,
        ),
    )


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The batch's leases of the accounts' shares are let go when it is done.
    with shares.FairBatch("actions", get_settings().actions_queue_url) as batch:
        return dict(
            process_partial_response(
                event=event,
                record_handler=lambda record: handle(record, batch),
                processor=processor,
                context=context,
            )
        )
