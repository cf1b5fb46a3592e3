"""The jobs on the actions queue: an event that happened to a message, and one trigger's run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from mailer_core.base.errors import MalformedRequest

EVENTS = ("sent", "opened", "not_opened", "failed", "replied", "link", "opted_out", "downloaded")


@dataclass(frozen=True)
class EventJob:
    """Something happened to a message; `source` names the run ids' event part."""

    account_id: int
    message_id: str
    event: str
    at: str
    source: str = ""  # "link8" or "link8.<click id>" for trigger links; the event otherwise
    trigger_ids: tuple[str, ...] = ()  # a trigger link's triggers (events read the message's)
    kind: str = "event"

    def to_body(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


@dataclass(frozen=True)
class RunJob:
    """One trigger to run for one message's event; `run_id` is what makes it happen once."""

    account_id: int
    message_id: str
    trigger_id: str
    event: str
    run_id: str
    created_ms: int
    kind: str = "run"

    def to_body(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def parse_job(body: str | dict[str, Any]) -> EventJob | RunJob:
    try:
        data = json.loads(body) if isinstance(body, str) else dict(body)
        kind = data.get("kind")
        if kind == "event":
            if data["event"] not in EVENTS:
                raise ValueError(f"unknown event {data['event']!r}")
            return EventJob(
                account_id=int(data["account_id"]),
                message_id=str(data["message_id"]),
                event=str(data["event"]),
                at=str(data["at"]),
                source=str(data.get("source") or ""),
                trigger_ids=tuple(str(t) for t in data.get("trigger_ids") or ()),
            )
        if kind == "run":
            return RunJob(
                account_id=int(data["account_id"]),
                message_id=str(data["message_id"]),
                trigger_id=str(data["trigger_id"]),
                event=str(data["event"]),
                run_id=str(data["run_id"]),
                created_ms=int(data["created_ms"]),
            )
        raise ValueError(f"unknown kind {kind!r}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MalformedRequest(f"not an automation job: {exc}") from exc
