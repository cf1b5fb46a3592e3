"""A campaign's audience turned into emails, one part of one package at a time.

Exactly once, however often a step is repeated or wherever it crashes:

1. One execution at a time works the part at the campaign's position: it first takes the
   part's lease, a conditional write on the campaign (the position, still Sending, no lease
   or an expired one) that records a random token, the job and until when
   (`campaign_part_lease_seconds`, longer than the function's Timeout, so a holder that
   died is gone before anyone else may take the part). A part that fails with an error gives
   the lease back; the position moving on removes it. Another job meeting a held lease is
   dropped (the holder's own job carries the campaign on: SQS delivers it again if the holder
   dies); the holder's own job delivered again waits on the queue until the lease runs out.
   Before each write of emails the holder checks it still has half of its lease left, and
   renews it (conditionally on its token) when not.
2. Package `n` is one page of the audience. Its first step reads the page (Kommo: 250
   entities to a request) and keeps it in S3 (`{n}.json`: the recipients and their CRM
   data); a repeated step reads that object, never the audience again, so it works on the
   same recipients.
3. A recipient's email has an id derived from the campaign and the address, so the same
   address always meets the same item. Under the lease, a part reads its emails' items (one
   consistent BatchGetItem per 100) and writes the missing ones (BatchWriteItem, 25 to a
   request), in rounds of 100 worked four at a time: no conditional put per email, and no
   one else can write those items meanwhile (parts are worked one after another, and only
   the lease holder writes a part's emails). An email found tells a retry of the same part
   (the email's `campaign_slot` is this part: it is ours, and is queued again if still
   queued; the send claim sends it once) from the same address met earlier in the audience
   (a duplicate, never written again).
4. The campaign's position (package, offset, the page's cursor) moves on with the part's
   counts in one conditional write on the position it started from, which also records the
   job that wrote it (`advanced_by`); only then is the next part queued. A crash before the
   write repeats the part (3 makes that harmless). A crash after it and before the next part
   is queued: SQS delivers the same job again, which finds the position moved on by itself
   and queues the next part. Any other job for a position the campaign has left is dropped,
   so a duplicate never starts a second chain of parts.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.adapters import s3, sqs
from mailer_core.adapters.mime import make_message_id
from mailer_core.audiences.pages import AudiencePage, Recipient
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.config import get_settings
from mailer_core.base.errors import InvalidInput
from mailer_core.base.logs import logger
from mailer_core.base.validation import email_address
from mailer_core.campaigns import chains, pacing
from mailer_core.events import campaign_state as cs
from mailer_core.events.campaign_jobs import CampaignJob, enqueue
from mailer_core.mailboxes import check as mailbox_check
from mailer_core.mailboxes import connection as mailbox_connection
from mailer_core.messages import suppressions
from mailer_core.store import message_state as state
from mailer_core.store import rate_buckets, timeline
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import CampaignModel, MailboxModel, MessageModel, entity_key, plain_map

Reader = Callable[[int, dict[str, Any], "str | None"], AudiencePage]
Excluder = Callable[[int, list[str], list[Recipient]], set[str]]


def read_audience(account_id: int, audience: dict[str, Any], cursor: str | None) -> AudiencePage:
    from mailer_core.audiences import reader, spec  # cold start: the Kommo reader

    return reader.read_page(account_id, spec.Audience.from_json(audience), cursor, clock=SYSTEM_CLOCK)


def excluded_by_lists(account_id: int, list_ids: list[str], recipients: list[Recipient]) -> set[str]:
    if not list_ids:
        return set()
    from mailer_core.audiences import exclusions  # cold start: target list lookups

    return exclusions.excluded(account_id, list_ids, recipients)


@dataclass
class Expander:
    """Works one part; `read` and `exclude` are the audience's (tests give their own)."""

    clock: Clock = field(default_factory=lambda: SYSTEM_CLOCK)
    read: Reader | None = None  # None: `read_audience`
    exclude: Excluder | None = None  # None: `excluded_by_lists`

    def part(self, job: CampaignJob) -> str:
        campaign = _sending(job.account_id, job.campaign_id)
        if isinstance(campaign, str):
            return campaign
        now = self.clock.now()
        if (job.package, job.offset or 0) != (int(campaign.package), int(campaign.offset)):
            return self._behind(campaign, job, now)
        if campaign.expanded:
            return "expanded"
        if campaign.next_at and campaign.next_at - now > timedelta(seconds=1):
            enqueue(job, pacing.seconds_until(campaign.next_at, now))
            return "waiting"
        return self._work(campaign, job, now)

    def _behind(self, campaign: CampaignModel, job: CampaignJob, now: datetime) -> str:
        """A job for a position the campaign has left: a duplicate (dropped), or the very job
        that moved it on and died before queuing the next part (point 3): that one queues it
        again (a second copy of the next part is then a duplicate, dropped in turn)."""
        if not job.job_id or campaign.advanced_by != job.job_id:
            return "stale"
        if campaign.expanded:
            cs.settle(campaign, now)
            return "expanded"
        enqueue(
            CampaignJob(
                job.account_id, job.campaign_id, "package", int(campaign.package), int(campaign.offset)
            )
        )
        return "next part queued again"

    def _work(self, campaign: CampaignModel, job: CampaignJob, now: datetime) -> str:
        options = plain_map(campaign.options)
        senders = self._senders(campaign)
        if not senders:
            cs.change_status(
                campaign, cs.INTERRUPTED, now, allowed_from=(cs.SENDING,), reason="no sender mailbox can send"
            )
            return "interrupted"
        zone = plain_map(options.get("frozen")).get("timezone")  # the template's, else UTC
        day = pacing.day_of(now, zone)
        sent_today = int(campaign.day_count or 0) if campaign.day == day else 0
        per_day = options.get("per_day")
        allowance = int(per_day) - sent_today if per_day else pacing.MAX_PART
        if allowance <= 0:
            return self._wait_for(campaign, job, pacing.next_day_start(now, zone), now, reason="per_day")
        paced = _paced(senders, now)
        room = pacing.room(paced)
        if room is not None and room <= 0:  # every sender's daily cap (UTC days) is reached
            return self._wait_for(campaign, job, pacing.next_day_start(now, "UTC"), now, reason="daily_cap")
        lease = self._take(campaign, job, now)
        if isinstance(lease, str):
            return lease
        try:
            return self._compose_part(
                campaign, job, lease, senders, paced, allowance, room, day, sent_today, now
            )
        except BaseException:
            lease.give_back()
            raise

    def _compose_part(
        self,
        campaign: CampaignModel,
        job: CampaignJob,
        lease: PartLease,
        senders: dict[str, MailboxModel],
        paced: list[pacing.Sender],
        allowance: int,
        room: int | None,
        day: str,
        sent_today: int,
        now: datetime,
    ) -> str:
        options = plain_map(campaign.options)
        data = self._package(campaign)
        offset = int(campaign.offset)
        size = min(pacing.part_size(paced, options.get("per_hour")), allowance, room or pacing.MAX_PART)
        chosen = data["recipients"][offset : offset + size]
        counts, duration = self._compose(campaign, chosen, senders, paced, offset, now, lease)
        end = offset + len(chosen) >= len(data["recipients"])
        if offset == 0:  # what the reader left out, counted once: with the package's first part
            for why, number in (data.get("skipped") or {}).items():
                counts[f"excluded_{why}"] = counts.get(f"excluded_{why}", 0) + int(number)
        moved = self._advance(
            campaign, job, data, counts, offset + len(chosen), end, day, sent_today, duration, now
        )
        if not moved:
            return "stale"
        return "part composed"

    def _take(self, campaign: CampaignModel, job: CampaignJob, now: datetime) -> PartLease | str:
        """The part's lease (point 1), or what became of the job when someone else holds it."""
        seconds = get_settings().campaign_part_lease_seconds
        lease = PartLease(
            campaign, secrets.token_hex(8), now + timedelta(seconds=seconds), seconds, self.clock
        )
        free = CampaignModel.part_lease_until.does_not_exist() | (CampaignModel.part_lease_until < now)
        try:
            campaign.update(
                actions=[
                    CampaignModel.part_lease.set(lease.token),
                    CampaignModel.part_lease_job.set(job.job_id or ""),
                    CampaignModel.part_lease_until.set(lease.until),
                ],
                condition=_at(campaign) & (CampaignModel.status == cs.SENDING) & free,
            )
            return lease
        except UpdateError as exc:
            if not is_condition_failure(exc):
                raise
        current = _sending(int(campaign.account_id), campaign.campaign_id)
        if isinstance(current, str):
            return current
        if (int(current.package), int(current.offset)) != (int(campaign.package), int(campaign.offset)):
            return "stale"  # moved on meanwhile: by another copy of this job, which carries on
        if job.job_id and current.part_lease_job == job.job_id and current.part_lease_until:
            # This very job again while its lease holds (its holder died, or SQS gave it twice):
            # it waits on the queue until the lease runs out, then takes the part over.
            enqueue(job, pacing.seconds_until(current.part_lease_until, now) + 1)
            return "waiting for the part's lease"
        return "busy"  # another job works this part; SQS gives that one again if it dies

    # -- the package's recipients ----------------------------------------------------------

    def first_package(self, campaign: CampaignModel) -> dict[str, Any]:
        """Package 0 read and kept (a start checks the audience is not empty with it)."""
        return self._package(campaign)

    def _package(self, campaign: CampaignModel) -> dict[str, Any]:
        key = package_key(campaign, int(campaign.package))
        stored = s3.get_text_if_any(key)
        if stored is not None:
            return json.loads(stored)  # type: ignore[no-any-return]
        if campaign.parent_id:  # a chain's step: the step before's recipients without the event
            page = chains.read_page(campaign, campaign.cursor)
        else:
            read = self.read or read_audience
            page = read(int(campaign.account_id), plain_map(campaign.audience), campaign.cursor)
        data = {
            "recipients": [[r.address, *(r.entity or (None, None)), r.name] for r in page.recipients],
            "cursor": page.cursor,
            "skipped": dict(page.skipped),
            "entities": {
                kind: {str(k): v for k, v in found.items()} for kind, found in page.entities.items()
            },
        }
        s3.put_text(key, json.dumps(data, separators=(",", ":")), "application/json")
        return data

    def _senders(self, campaign: CampaignModel) -> dict[str, MailboxModel]:
        """The campaign's mailboxes that can send (a deleted or refused one is left out)."""
        senders = {}
        for mailbox_id in campaign.mailbox_ids or []:
            mailbox = mailbox_connection.find(int(campaign.account_id), str(mailbox_id))
            if mailbox is not None and not mailbox_check.refused_login_reason(mailbox):
                senders[mailbox.mailbox_id] = mailbox
        return senders

    # -- composing ---------------------------------------------------------------------------

    def _compose(
        self,
        campaign: CampaignModel,
        chosen: list[list[Any]],
        senders: dict[str, MailboxModel],
        paced: list[pacing.Sender],
        offset: int,
        now: datetime,
        lease: PartLease | None = None,
    ) -> tuple[dict[str, int], float]:
        account_id = int(campaign.account_id)
        counts: dict[str, int] = {}
        wanted: list[tuple[str, Recipient]] = []
        seen: set[str] = set()
        for address, entity_type, entity_id, name in chosen:
            try:
                clean = email_address(address, "address").lower()
            except InvalidInput:
                _add(counts, "excluded_bad_address")
                continue
            if clean in seen:
                _add(counts, "excluded_duplicate")
                continue
            seen.add(clean)
            entity = (str(entity_type), int(entity_id)) if entity_type else None
            wanted.append((clean, Recipient(address.strip(), entity, name)))
        suppressed = suppressions.suppressed(account_id, [a for a, _ in wanted]) if wanted else {}
        excluded = (self.exclude or excluded_by_lists)(
            account_id, plain_map(campaign.audience).get("exclude_lists") or [], [r for _, r in wanted]
        )
        kept = []
        for clean, recipient in wanted:
            if clean in suppressed:
                _add(counts, "excluded_suppressed")
            elif clean in excluded:
                _add(counts, "excluded_excluded_list")
            else:
                kept.append((clean, recipient))
        planned, duration = pacing.plan(len(kept), paced, plain_map(campaign.options).get("per_hour"))
        slot = f"{int(campaign.package)}:{offset}"
        jobs: list[tuple[sqs.SendJob, int]] = []
        messages = [
            self._message(campaign, clean, recipient, senders[mailbox_id], slot, now)
            for (clean, recipient), (mailbox_id, _) in zip(kept, planned, strict=True)
        ]
        fates = _save_all(messages, lease)
        for message, fate, (_, delay) in zip(messages, fates, planned, strict=True):
            if fate == "duplicate":
                _add(counts, "excluded_duplicate")
                continue
            _add(counts, "composed")
            if fate == "queued":
                jobs.append((_send_job(message), int(delay)))
        if jobs:
            sqs.enqueue_send_bundles(bundled(jobs, {s.mailbox_id: s.rate for s in paced}))
        return counts, duration

    def _message(
        self,
        campaign: CampaignModel,
        address: str,
        recipient: Recipient,
        mailbox: MailboxModel,
        slot: str,
        now: datetime,
    ) -> MessageModel:
        frozen = plain_map(plain_map(campaign.options).get("frozen"))
        account_id = int(campaign.account_id)
        message_id = recipient_message_id(campaign, address)
        entity = recipient.entity
        return MessageModel(
            account_id,
            message_id,
            status=state.QUEUED,
            status_key=state.status_key(account_id, state.QUEUED),
            user_id=int(campaign.user_id),
            mailbox_id=mailbox.mailbox_id,
            lane="bulk",
            to=[recipient.address],
            entity_type=entity[0] if entity else None,
            entity_id=entity[1] if entity else None,
            entity_key=entity_key(account_id, entity),
            subject=str(frozen.get("subject") or ""),
            html_s3_key=str(frozen["html_key"]),
            header_message_id=make_message_id(message_id, mailbox.sender_email),
            created_at=now,
            updated_at=now,
            history=[timeline.entry(now, state.QUEUED, f"by campaign {campaign.campaign_id}")],
            attachments=list(frozen.get("attachments") or []),
            attachment_links=list(frozen.get("attachment_links") or []),
            template_id=frozen.get("template_id"),
            machine_open_template=frozen.get("template_id"),
            locale=frozen.get("locale"),
            timezone=frozen.get("timezone"),
            disable_signature=frozen.get("disable_signature"),
            track_opens=None if frozen.get("track_opens", True) else False,
            origin="campaign",
            triggers=frozen.get("triggers") or None,
            not_opened_after=frozen.get("not_opened_after"),
            campaign_id=campaign.campaign_id,
            campaign_key=cs.campaign_key(account_id, campaign.campaign_id),
            crm_snapshot=package_key(campaign, int(campaign.package)) if entity else None,
            campaign_slot=slot,
        )

    # -- moving on ---------------------------------------------------------------------------

    def _advance(
        self,
        campaign: CampaignModel,
        job: CampaignJob,
        data: dict[str, Any],
        counts: dict[str, int],
        offset: int,
        end: bool,
        day: str,
        sent_today: int,
        duration: float,
        now: datetime,
    ) -> bool:
        """Move the position on with the part's counts (one conditional write), then queue the
        next part at its time, or settle a campaign whose audience is all read."""
        package = int(campaign.package) + 1 if end else int(campaign.package)
        expanded = end and data.get("cursor") is None
        next_at = now + timedelta(seconds=duration)
        actions: list[Any] = [
            CampaignModel.package.set(package),
            CampaignModel.offset.set(0 if end else offset),
            CampaignModel.next_at.set(next_at),
            CampaignModel.day.set(day),
            CampaignModel.day_count.set(sent_today + counts.get("composed", 0)),
            CampaignModel.updated_at.set(now),
            CampaignModel.waiting_reason.remove(),
            CampaignModel.part_lease.remove(),
            CampaignModel.part_lease_job.remove(),
            CampaignModel.part_lease_until.remove(),
        ]
        if job.job_id:
            actions.append(CampaignModel.advanced_by.set(job.job_id))
        if end:
            actions.append(
                CampaignModel.cursor.set(data["cursor"])
                if data.get("cursor")
                else CampaignModel.cursor.remove()
            )
        if expanded:
            actions.append(CampaignModel.expanded.set(True))
        actions.extend(cs.counter_add(name, delta) for name, delta in counts.items())
        try:
            campaign.update(actions=actions, condition=_at(campaign))
        except UpdateError as exc:
            if is_condition_failure(exc):
                return False
            raise
        if expanded:
            cs.settle(campaign, now)  # the update refreshed it: everything may be done already
        else:
            next_job = CampaignJob(job.account_id, job.campaign_id, "package", package, 0 if end else offset)
            enqueue(next_job, int(duration))
        logger.info("campaign part composed", extra={"campaign_id": campaign.campaign_id, "counts": counts})
        return True

    def _wait_for(
        self, campaign: CampaignModel, job: CampaignJob, moment: datetime, now: datetime, *, reason: str
    ) -> str:
        """The next part waits until `moment`, the campaign noting why (its view's `waiting`)."""
        try:
            campaign.update(
                actions=[CampaignModel.next_at.set(moment), CampaignModel.waiting_reason.set(reason)],
                condition=(CampaignModel.package == int(campaign.package))
                & (CampaignModel.offset == int(campaign.offset)),
            )
        except UpdateError as exc:
            if is_condition_failure(exc):
                return "stale"
            raise
        enqueue(job, pacing.seconds_until(moment, now))
        return "daily portion reached" if reason == "per_day" else "every sender's daily cap reached"


def package_key(campaign: CampaignModel, package: int) -> str:
    return s3.campaign_object_key(int(campaign.account_id), campaign.campaign_id, f"{package}.json")


def recipient_message_id(campaign: CampaignModel, address: str) -> str:
    """A ULID of its own per campaign and address: the campaign's start time, then 80 bits of
    a hash, so the same recipient's email always has the same id."""
    from ulid import ULID  # cold start: the ULID type

    started = campaign.started_at or campaign.created_at
    millis = int(started.timestamp() * 1000)
    digest = hashlib.sha256(f"{campaign.campaign_id}|{address}".encode()).digest()
    return str(ULID.from_bytes(millis.to_bytes(6, "big") + digest[:10]))


GET_BATCH = 100  # BatchGetItem's most keys
# A part's rounds of GET_BATCH emails worked at once: each is a few round trips to DynamoDB
# (one BatchGetItem, up to four BatchWriteItems), so a part of 1,000 waits for three rounds'
# trips, not ten.
PART_ROUNDS = 4


class PartLeaseLost(RuntimeError):
    """The part's lease ran out and someone else took it: this execution must write nothing more."""


@dataclass
class PartLease:
    """One execution's hold on the part at the campaign's position (point 1)."""

    campaign: CampaignModel
    token: str
    until: datetime
    seconds: float
    clock: Clock
    _renewing: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def hold(self) -> None:
        """Before a write of emails: at least half the lease left, or renewed; else PartLeaseLost.
        The part's rounds call it from their threads: one renewal at a time."""
        with self._renewing:
            self._hold()

    def _hold(self) -> None:
        now = self.clock.now()
        if self.until - now > timedelta(seconds=self.seconds / 2):
            return
        until = now + timedelta(seconds=self.seconds)
        try:
            self.campaign.update(
                actions=[CampaignModel.part_lease_until.set(until)],
                condition=_at(self.campaign) & (CampaignModel.part_lease == self.token),
            )
        except UpdateError as exc:
            if is_condition_failure(exc):
                raise PartLeaseLost(
                    f"campaign {self.campaign.campaign_id}: the part's lease was lost"
                ) from exc
            raise
        self.until = until

    def give_back(self) -> None:
        """The part failed: its lease removed at once (only if still ours), so that SQS's next
        delivery of the job works the part again without waiting for the lease to run out."""
        try:
            self.campaign.update(
                actions=[
                    CampaignModel.part_lease.remove(),
                    CampaignModel.part_lease_job.remove(),
                    CampaignModel.part_lease_until.remove(),
                ],
                condition=CampaignModel.part_lease == self.token,
            )
        except Exception:  # the lease then runs out by itself
            logger.warning(
                "campaign part lease not given back", extra={"campaign_id": self.campaign.campaign_id}
            )


def _sending(account_id: int, campaign_id: str) -> CampaignModel | str:
    """The campaign read afresh, or what becomes of a job when it is gone or not Sending."""
    try:
        campaign = CampaignModel.get(account_id, campaign_id, consistent_read=True)
    except DoesNotExist:
        return "no campaign"
    if campaign.status != cs.SENDING:
        return f"not sending ({campaign.status})"
    return campaign


def _at(campaign: CampaignModel) -> Any:
    """The condition: the campaign is still at the position this step read."""
    return (CampaignModel.package == int(campaign.package)) & (CampaignModel.offset == int(campaign.offset))


def _save_all(messages: list[MessageModel], lease: PartLease | None = None) -> list[str]:
    """The fate of each email of the part (point 3; in order of `messages`): "queued" (stored
    now, or by an earlier try of this part and still queued), "done" (ours, already on its way
    or past it) or "duplicate" (composed by another part: the address came earlier in the
    audience). In rounds of 100, `PART_ROUNDS` at a time: one consistent BatchGetItem, then the
    missing ones written with BatchWriteItem, the lease checked first. A round that raises
    fails the part (the rounds not begun are dropped), which SQS then delivers again (all of
    it is idempotent)."""
    rounds = [messages[start : start + GET_BATCH] for start in range(0, len(messages), GET_BATCH)]
    fates: dict[str, str] = {}
    if len(rounds) <= 1:
        for chunk in rounds:
            fates.update(_save_round(chunk, lease))
        return [fates[m.message_id] for m in messages]
    pool = ThreadPoolExecutor(max_workers=min(PART_ROUNDS, len(rounds)), thread_name_prefix="part")
    try:
        for done in [pool.submit(_save_round, chunk, lease) for chunk in rounds]:
            fates.update(done.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [fates[m.message_id] for m in messages]


def _save_round(chunk: list[MessageModel], lease: PartLease | None) -> dict[str, str]:
    """One round of `_save_all`: up to 100 emails read, the missing ones written."""
    found = {
        str(stored.message_id): stored
        for stored in MessageModel.batch_get(
            [(m.account_id, m.message_id) for m in chunk],
            consistent_read=True,
            attributes_to_get=["message_id", "campaign_slot", "status"],
        )
    }
    fates: dict[str, str] = {}
    missing = []
    for message in chunk:
        stored = found.get(str(message.message_id))
        if stored is None:
            missing.append(message)
            fates[message.message_id] = "queued"
        elif stored.campaign_slot != message.campaign_slot:
            fates[message.message_id] = "duplicate"
        else:
            fates[message.message_id] = "queued" if stored.status == state.QUEUED else "done"
    if missing:
        if lease is not None:
            lease.hold()
        _write(missing)
    return fates


def _write(messages: list[MessageModel]) -> None:
    """Store emails no one else may be writing (BatchWriteItem, 25 to a request)."""
    with MessageModel.batch_write() as batch:
        for message in messages:
            batch.save(message)


def _send_job(message: MessageModel) -> sqs.SendJob:
    entity = f"{message.entity_type}:{int(message.entity_id)}" if message.entity_type else None
    return sqs.SendJob(
        int(message.account_id),
        message.message_id,
        message.mailbox_id,
        "bulk",
        entity=entity,
        recipients=tuple(str(a) for a in message.to),
        campaign=message.campaign_id,
        snapshot=message.crm_snapshot,
    )


def bundled(
    jobs: list[tuple[sqs.SendJob, int]], rates: dict[str, float]
) -> list[tuple[list[sqs.SendJob], int]]:
    """The part's send jobs in SQS messages: the jobs of one mailbox due in the same second
    share one, at most what that mailbox sends in a second (its rate, rounded down; at most
    `sqs.BUNDLE_MOST`), so a bundle is about a second's work of its mailbox's lane."""
    groups: dict[tuple[str, int], list[sqs.SendJob]] = {}
    for job, delay in jobs:
        groups.setdefault((job.mailbox_id, int(delay)), []).append(job)
    bundles: list[tuple[list[sqs.SendJob], int]] = []
    for (mailbox_id, delay), mine in groups.items():
        most = max(1, min(sqs.BUNDLE_MOST, int(rates.get(mailbox_id, 1.0))))
        bundles.extend((mine[start : start + most], delay) for start in range(0, len(mine), most))
    return bundles


def _paced(senders: dict[str, MailboxModel], now: datetime) -> list[pacing.Sender]:
    """The senders with the room their daily caps leave today (their rate buckets' count, one
    BatchGetItem): a mailbox at its cap gets none of the part, the others share it."""
    keys = {m.mailbox_id: rate_buckets.mailbox_key(int(m.account_id), m.mailbox_id) for m in senders.values()}
    used = rate_buckets.used_today(list(keys.values()), now=now.timestamp()) if keys else {}
    return [
        pacing.Sender(
            m.mailbox_id, float(m.rate_per_second), max(0, int(m.daily_cap) - used[keys[m.mailbox_id]])
        )
        for m in senders.values()
    ]


def _add(counts: dict[str, int], name: str) -> None:
    counts[name] = counts.get(name, 0) + 1
