"""SQS consumer of the campaign queue: each record is one step of one campaign.

A package of the audience to expand, a start, a pause or cancel to settle, a chain's next
step; the work is in mailer_core.campaigns.worker. A record that raises stays on the queue
(partial batch failure) and is tried again: every step is safe to repeat.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.base.logs import logger
from mailer_core.campaigns import worker

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def handle(record: SQSRecord) -> str:
    return worker.process_body(record.body)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(
        process_partial_response(event=event, record_handler=handle, processor=processor, context=context)
    )
