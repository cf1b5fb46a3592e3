"""SQS consumer of the Kommo install queue: each record is one authorization code to exchange."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.base.logs import logger
from mailer_core.kommo_hooks.install import InstallJob, complete_install

processor = BatchProcessor(event_type=EventType.SQS)


def handle(record: SQSRecord) -> str:
    return complete_install(InstallJob.from_body(record.body))


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(
        process_partial_response(event=event, record_handler=handle, processor=processor, context=context)
    )
