"""SQS consumer of the pipeline queue: each record is one email Kommo's automation asked for.

A digital pipeline event (`kind: dp`) or a Salesbot step (`kind: salesbot`), queued by the
webhook function; the work is in mailer_core.kommo_hooks (digital_pipeline, salesbot). A
record that raises stays on the queue (partial batch failure) and is tried again.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from mailer_core.base.config import get_settings
from mailer_core.base.logs import logger
from mailer_core.events import shares
from mailer_core.kommo_hooks.jobs import AutoSendJob

# A batch whose every record failed (Kommo down) is reported record by record like any other,
# not raised: the invocation did its job, and SQS retries the records.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def handle(record: SQSRecord, batch: shares.FairBatch) -> str:
    # Within the account's share of the workers; a busy account's job goes back to the queue.
    return batch.run_record(record.raw_event, lambda: work(record.body))


def work(body: str) -> str:
    job = AutoSendJob.from_body(body)
    if job.kind == "salesbot":
        from mailer_core.kommo_hooks import salesbot

        return salesbot.process(job)
    from mailer_core.kommo_hooks import digital_pipeline

    return digital_pipeline.process(job)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The batch's leases of the accounts' shares are let go when it is done.
    with shares.FairBatch("pipeline", get_settings().pipeline_queue_url) as batch:
        return dict(
            process_partial_response(
                event=event,
                record_handler=lambda record: handle(record, batch),
                processor=processor,
                context=context,
            )
        )
