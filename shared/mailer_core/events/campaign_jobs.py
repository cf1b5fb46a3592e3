"""The campaign queue's jobs: one step of one campaign each (worked by `campaigns.worker`;
here, low, because a campaign's events queue some: its end starts the chain's next step)."""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mailer_core.adapters import sqs
from mailer_core.base.errors import MalformedRequest

# start: the start time came (or "start now"); package: expand package `package`;
# settle: after a resume or a cancel, the held emails released or canceled;
# chain: the campaign finished, stopped or was canceled: the chain's steps after it follow;
# purge_list: the next package of a deleted target list's members removed (`campaign_id` holds
# the list's id; audiences.lists_api.purge_members).
Kind = Literal["start", "package", "settle", "chain", "purge_list"]
KINDS: tuple[Kind, ...] = ("start", "package", "settle", "chain", "purge_list")


@dataclass(frozen=True)
class CampaignJob:
    account_id: int
    campaign_id: str
    kind: Kind
    package: int | None = None
    offset: int | None = None
    # Set when queued: the part that moves the campaign's position on records it there, so a
    # redelivery of that very job (it died before queuing the next part) queues the next part.
    job_id: str | None = None

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
            package, offset, job_id = data.get("package"), data.get("offset"), data.get("job_id")
            return cls(
                account_id=int(data["account_id"]),
                campaign_id=str(data["campaign_id"]),
                kind=kind,
                package=None if package is None else int(package),
                offset=None if offset is None else int(offset),
                job_id=None if job_id is None else str(job_id),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedRequest(f"not a campaign job: {exc}") from exc


def enqueue(job: CampaignJob, delay_seconds: int = 0) -> None:
    """Queue the job (one that is queued again, to wait for its time, keeps its id)."""
    if job.job_id is None:
        job = dataclasses.replace(job, job_id=secrets.token_hex(8))
    sqs.enqueue_campaign(job.to_body(), delay_seconds)
