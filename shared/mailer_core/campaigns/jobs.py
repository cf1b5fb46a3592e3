"""The campaign queue's jobs: one step of one campaign each."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mailer_core.adapters import sqs
from mailer_core.base.errors import MalformedRequest

# start: the start time came (or "start now"); package: expand package `package`;
# settle: a pause, cancel or interrupt holds or cancels the emails still queued;
# chain: a chain's next step is due.
Kind = Literal["start", "package", "settle", "chain"]
KINDS: tuple[Kind, ...] = ("start", "package", "settle", "chain")


@dataclass(frozen=True)
class CampaignJob:
    account_id: int
    campaign_id: str
    kind: Kind
    package: int | None = None

    def to_body(self) -> str:
        body = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_body(cls, body: str) -> CampaignJob:
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise MalformedRequest(f"not a campaign job: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> CampaignJob:
        try:
            kind = data["kind"]
            if kind not in KINDS:
                raise ValueError(f"unknown kind {kind!r}")
            package = data.get("package")
            return cls(
                account_id=int(data["account_id"]),
                campaign_id=str(data["campaign_id"]),
                kind=kind,
                package=None if package is None else int(package),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedRequest(f"not a campaign job: {exc}") from exc


def enqueue(job: CampaignJob, delay_seconds: int = 0) -> None:
    sqs.enqueue_campaign(job.to_body(), delay_seconds)
