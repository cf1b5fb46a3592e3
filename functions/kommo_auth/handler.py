"""SQS consumer of the Kommo install queue: each record is one authorization code to exchange."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.base.config import get_settings
from mailer_core.base.logs import logger
from mailer_core.events import shares
from mailer_core.kommo_hooks.install import InstallJob, complete_install

processor = BatchProcessor(event_type=EventType.SQS)


def handle(record: SQSRecord, batch: shares.FairBatch) -> str:
    # Within the Kommo account's share of the workers (by subdomain: no account id yet).
    return batch.run_record(
        record.raw_event,
        lambda: complete_install(InstallJob.from_body(record.body)),
        account_fields=("subdomain", "domain"),
    )


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The batch's leases of the accounts' shares are let go when it is done.
    with shares.FairBatch("install", get_settings().kommo_auth_queue_url) as batch:
        return dict(
            process_partial_response(
                event=event,
                record_handler=lambda record: handle(record, batch),
                processor=processor,
                context=context,
            )
        )
