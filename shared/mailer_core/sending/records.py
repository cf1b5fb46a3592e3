"""Results recorded in the background while the next email is being sent.

Only writes after SMTP go here: a write lost with the container leaves the message `sending`,
which the claim lease resolves (the worker's guarantee, point 4), never a duplicate. A record
starts once the next email's data is out (`start`), or at once when no next email is about to
get there: its CPU then overlaps the server's answer, not the next email's envelope, where
every reply waited for is on the critical path. One writer thread keeps the records in order.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mailer_core.base.logs import logger


@dataclass
class BackgroundRecords:
    _writer: ThreadPoolExecutor | None = None
    _pending: list[Future[None]] = field(default_factory=list)
    # Records handed in, not yet given to the writer.
    _waiting: list[tuple[dict[str, Any], Callable[..., None], tuple[object, ...]]] = field(
        default_factory=list
    )

    def add(self, work: Callable[..., None], *args: object) -> None:
        """Keep `work(*args)` for the writer, with the log keys of the email it records."""
        keys = logger.get_current_keys()  # the ids of this email, not of the one sent meanwhile
        ids: dict[str, Any] = {k: keys[k] for k in ("account_id", "message_id", "mailbox_id") if k in keys}
        self._waiting.append((ids, work, args))

    def start(self) -> None:
        """Hand the waiting records to the writer."""
        if not self._waiting:
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="send-record")
        waiting, self._waiting = self._waiting, []
        for ids, work, args in waiting:
            self._pending.append(self._writer.submit(_with_log_keys, ids, work, *args))

    def flush(self) -> None:
        """Start every waiting record and wait until all are stored (a failure raises)."""
        self.start()
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None


def _with_log_keys(keys: dict[str, Any], work: Callable[..., None], *args: object) -> None:
    logger.thread_safe_append_keys(**keys)
    try:
        work(*args)
    finally:
        logger.thread_safe_clear_keys()
