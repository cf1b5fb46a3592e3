"""Feed SQS messages to their functions as Lambda's event source mappings do.

moto stores event source mappings but does not run our code from them, so each `Type: SQS`
event of the template gets a poller here: it long-polls the queue, hands batches to the
handler in this process with at most `ScalingConfig.MaximumConcurrency` invocations at a time,
and deletes what succeeded. With `ReportBatchItemFailures` only the records the handler lists
in `batchItemFailures` stay on the queue; without it a failing invocation leaves the whole
batch. What stays becomes visible again after the queue's visibility timeout. Moving a
message to the dead-letter queue after `maxReceiveCount` receives is done by moto itself (on
the next receive of the source queue), as SQS does.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devstack.functions import FunctionRegistry, LocalFunction
from devstack.template import SqsEventSource

log = logging.getLogger(__name__)

DEFAULT_MAXIMUM_CONCURRENCY = 5
MAX_MESSAGES_PER_RECEIVE = 10  # SQS's limit for one ReceiveMessage
# The attributes Lambda puts in a record's "attributes" when SQS returns them.
LAMBDA_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)
_COUNT_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """SQS API shape ({"StringValue", "DataType"}) to the shape Lambda's records use."""
    shaped: dict[str, Any] = {}
    if "StringValue" in value:
        shaped["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        raw = value["BinaryValue"]
        shaped["binaryValue"] = base64.b64encode(raw).decode() if isinstance(raw, bytes) else raw
    shaped["stringListValues"] = list(value.get("StringListValues") or [])
    shaped["binaryListValues"] = [
        base64.b64encode(v).decode() if isinstance(v, bytes) else v
        for v in value.get("BinaryListValues") or []
    ]
    shaped["dataType"] = value["DataType"]
    return shaped


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One record of the SQS event Lambda sends, from one ReceiveMessage message."""
    attributes = message.get("Attributes") or {}
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {k: attributes[k] for k in LAMBDA_RECORD_ATTRIBUTES if k in attributes},
        "messageAttributes": {
            name: _lambda_message_attribute(value)
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record["eventSource"] = "aws:sqs"
    record["eventSourceARN"] = queue_arn
    record["awsRegion"] = queue_arn.split(":")[3]
    return record


def failed_message_ids(result: Any, message_ids: set[str]) -> set[str]:
    """Which records a ReportBatchItemFailures response leaves on the queue.

    Lambda's rules: no response, no or an empty `batchItemFailures` is complete success; an
    item without an `itemIdentifier`, or with one that is not in the batch, or a response that
    is not an object, fails the whole batch.
    """
    if result is None:
        return set()
    if not isinstance(result, dict):
        log.warning("batch response is not an object (%r): the whole batch failed", type(result).__name__)
        return set(message_ids)
    failed: set[str] = set()
    for item in result.get("batchItemFailures") or []:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in message_ids:
            log.warning("invalid batchItemFailures item %r: the whole batch failed", item)
            return set(message_ids)
        failed.add(identifier)
    return failed


class SqsPoller:
    """One event source mapping: a queue, a function and how to call it."""

    def __init__(
        self,
        source: SqsEventSource,
        function: LocalFunction,
        sqs: Any,
        *,
        wait_seconds: int = 1,
    ) -> None:
        self.source = source
        self.function = function
        self.sqs = sqs
        self.wait_seconds = wait_seconds
        self.concurrency = source.maximum_concurrency or DEFAULT_MAXIMUM_CONCURRENCY
        self.queue_url = sqs.get_queue_url(QueueName=source.queue_arn.split(":")[5])["QueueUrl"]
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"sqs-{self.name}")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def name(self) -> str:
        return f"{self.source.function_id}.{self.source.event_name}"

    @property
    def in_flight(self) -> int:
        """Invocations running or about to run."""
        with self._lock:
            return self._in_flight

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"poller-{self.name}", daemon=True)
        self._thread.start()

    def signal_stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for running invocations, and up to `timeout` s for a receive in progress.

        A long poll cannot be interrupted; one still waiting when `timeout` ends finishes in
        the background (within about two seconds) and gives back anything it received.
        """
        self._executor.shutdown(wait=True)
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self, timeout: float | None = 0.1) -> None:
        self.signal_stop()
        self.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=0.2):
                continue
            try:
                messages = self._receive()
            except Exception:
                self._slots.release()
                if not self._stop.is_set():
                    log.exception("%s: receiving from %s failed", self.name, self.queue_url)
                    self._stop.wait(1.0)
                continue
            if not messages or self._stop.is_set():
                self._slots.release()
                self._release(messages)
                continue
            with self._lock:
                self._in_flight += 1
            try:
                self._executor.submit(self._process, messages)
            except RuntimeError:  # stopped between the check above and here
                with self._lock:
                    self._in_flight -= 1
                self._slots.release()
                self._release(messages)

    def _receive(self) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(self.source.batch_size, MAX_MESSAGES_PER_RECEIVE),
            WaitTimeSeconds=self.wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages") or [])

    def _release(self, messages: list[dict[str, Any]]) -> None:
        """Make messages received while stopping visible again at once."""
        for message in messages:
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            except Exception:
                log.debug("could not release %s", message["MessageId"], exc_info=True)

    def _process(self, messages: list[dict[str, Any]]) -> None:
        try:
            self._invoke(messages)
        except Exception:
            log.exception("%s: settling a batch failed", self.name)
        finally:
            with self._lock:
                self._in_flight -= 1
            self._slots.release()

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        event = {"Records": [sqs_record(m, self.source.queue_arn) for m in messages]}
        ids = {m["MessageId"] for m in messages}
        try:
            result = self.function.invoke(event)
        except Exception:
            log.exception("%s failed on a batch of %d: the batch stays on the queue", self.name, len(ids))
            return
        failed = failed_message_ids(result, ids) if self.source.report_batch_item_failures else set()
        if failed:
            log.info("%s: %d of %d records failed and stay on the queue", self.name, len(failed), len(ids))
        self._delete([m for m in messages if m["MessageId"] not in failed])

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), MAX_MESSAGES_PER_RECEIVE):
            chunk = messages[start : start + MAX_MESSAGES_PER_RECEIVE]
            response = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
            for failure in response.get("Failed") or []:
                log.warning("%s: could not delete a message: %s", self.name, failure)


class Pollers:
    """Every SQS event source of the template, started and stopped together."""

    def __init__(
        self,
        sources: Iterable[SqsEventSource],
        functions: FunctionRegistry,
        sqs: Any,
        *,
        wait_seconds: int = 1,
    ) -> None:
        self.sqs = sqs
        self.pollers = [
            SqsPoller(source, functions.get(source.function_id), sqs, wait_seconds=wait_seconds)
            for source in sources
            if source.enabled
        ]

    def start(self) -> None:
        for poller in self.pollers:
            poller.start()

    def stop(self, timeout: float | None = 0.1) -> None:
        """Stop polling; see `SqsPoller.join` for what `timeout` bounds."""
        for poller in self.pollers:
            poller.signal_stop()
        for poller in self.pollers:
            poller.join(timeout)

    def _queue_counts(self) -> int:
        total = 0
        for url in {p.queue_url for p in self.pollers}:
            attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=_COUNT_ATTRIBUTES)
            total += sum(int(attributes["Attributes"].get(name, 0)) for name in _COUNT_ATTRIBUTES)
        return total

    def is_idle(self) -> bool:
        """No invocation running and no message (visible, in flight or delayed) in a source queue.

        A message a handler failed on stays "in flight" until its visibility timeout ends, so
        a stack with such a message is not idle until it has been retried or dead-lettered.
        """
        if any(p.in_flight for p in self.pollers):
            return False
        return self._queue_counts() == 0 and not any(p.in_flight for p in self.pollers)

    def drain(self, timeout: float = 30.0, *, interval: float = 0.05) -> bool:
        """Wait until idle (seen twice in a row); False if `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        idle_seen = 0
        while True:
            idle_seen = idle_seen + 1 if self.is_idle() else 0
            if idle_seen >= 2:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)
