"""Campaigns: expansion time and memory, Kommo requests per email, mailboxes' rates, crash/resume.

    .venv/bin/python bench/campaign.py [--recipients 100000] [--quick]

moto (server mode, two processes: DynamoDB and the rest) and the SMTP server run in their own
processes (bench/servers.py), so memory and CPU measured here are this process's alone.

1. Expansion: a target list of N plain addresses (imported with
   `mailer_core.audiences.lists_api.add_members`; setup, not measured) is the audience of a
   campaign started through `campaigns.lifecycle.start`; then its parts are worked one after
   the other through `campaigns.worker.process` (the Expander: the package read from the list
   and kept in S3, the part's emails read and written in rounds of 100 side by side, the send
   jobs queued on the bulk queue in bundles, the position moved on). The jobs are driven
   directly with a fake clock moved on by each part's duration: the queue's delays are the
   campaign's pace, not expansion. Peak memory is the
   process's peak resident set (`resource.getrusage`, ru_maxrss), printed at 10 % of the
   audience and at the end: equal figures mean memory does not grow with the audience.
2. Kommo requests per email: a campaign to 1,000 leads of the Kommo stand-in (its limit lifted),
   worked through the campaigns and send functions' handlers (SQS as Lambda delivers it) to the
   SMTP server; the stand-in counts the requests; divided by the emails the server received.
3. Mailboxes: bench/campaign_mailboxes.py, when it exists, run as a subprocess; its last line.
4. Crash/resume: 10,000 recipients, paced to 15 emails/s; a campaign worker process (the
   campaigns handler, SQS polled as Lambda does) is SIGKILLed 20 times: at random moments inside
   its steps (two of them during a pause, resumed after), and twice at each of three named
   points (between one round of the part's email writes and the next; between composing a part and moving the
   position on; after moving on and before queueing the next part); a new one is started
   each time, and SQS delivers the killed worker's batch again once its visibility timeout
   passes. Two send worker processes send to the SMTP server, which counts the emails each
   address received: repeated = emails beyond the first, skipped = addresses with none.

Its last lines, for the record (bench/README.md explains them):
`campaign expansion: …`, `campaign Kommo requests per email: …`, `campaign mailboxes: …`,
`campaign crash/resume: repeated N, skipped M`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(BENCH), str(ROOT / "shared"), str(ROOT)]  # this checkout's core, not an installed one
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # the core's log lines stay off the screen
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # and its metrics

from send_throughput import (  # noqa: E402  (bench/: the moto and SMTP processes, the stack)
    ACCOUNT_ID,
    LOGIN,
    PASSWORD,
    USER_ID,
    Child,
    Servers,
    create_mailbox,
    create_stack,
    point_at_moto,
    smtp_stats,
)

TRACKING = {
    "MAILER_TRACKING_SECRET": "bench-tracking-secret-0123456789abcdef",
    "MAILER_PUBLIC_BASE_URL": "https://track.bench.example",
}
KOMMO_TOKEN = "bench-campaign-token"
SECTIONS = ("expansion", "kommo", "mailboxes", "crash")
SUBJECT = "Winter sale for {{ 'you' }}"
HTML = "<p>Hello! Our winter sale starts today. <a href='https://shop.example/sale'>See the offers</a></p>"


# -- shared setup ----------------------------------------------------------------------------


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    """As send_throughput's, but DynamoDB's moto serves one request at a time (`--serial`):
    several workers update one campaign item at once here, and moto, unlike DynamoDB, can
    lose one of two concurrent ADDs."""
    started: list[Child] = []
    try:
        started.append(Child("moto"))
        started.append(Child("moto", "--serial", name="moto-dynamodb"))
        started.append(Child("smtp", "--delay-ms", "0", "--login", LOGIN, "--password", PASSWORD))
        yield Servers(*started)
    finally:
        for child in reversed(started):
            child.stop()


@contextlib.contextmanager
def local_stack() -> Iterator[Servers]:
    """moto (two processes) and the SMTP server (no delay), the template's resources in moto,
    this process's clients pointed at them, tracking configured (campaigns need it)."""
    with servers() as started:
        point_at_moto(f"http://127.0.0.1:{started.moto.port}", f"http://127.0.0.1:{started.dynamodb.port}")
        create_stack()
        os.environ.update(TRACKING)
        from mailer_core.base.config import reset_settings

        reset_settings()
        yield started


def caller(account_id: int = ACCOUNT_ID, subdomain: str = "mailerbench") -> Any:
    from mailer_core.accounts.auth import Caller

    return Caller(account_id, subdomain, USER_ID, True)


def target_list(count: int, prefix: str) -> str:
    """A target list of `count` plain addresses, imported through `add_members` (streamed)."""
    from mailer_core.audiences import lists_api

    made = lists_api.create(caller(), {"name": f"Bench {prefix} audience"})
    done = lists_api.add_members(ACCOUNT_ID, str(made["id"]), (address(prefix, n) for n in range(count)))
    assert done.added == count, done
    return str(made["id"])


def address(prefix: str, n: int) -> str:
    return f"{prefix}{n:06d}@example.com"


def new_campaign(mailbox_ids: list[str], audience: dict[str, Any], **content: Any) -> str:
    from mailer_core.campaigns import api

    body = {"name": "Winter sale", "subject": SUBJECT, "html": HTML, **content}
    made = api.create(caller(), {**body, "mailbox_ids": mailbox_ids, "audience": audience})
    return str(made["campaign_id"])


def campaign_item(account_id: int, campaign_id: str) -> Any:
    from mailer_core.store.models import CampaignModel

    return CampaignModel.get(account_id, campaign_id, consistent_read=True)


def counts_of(campaign: Any) -> dict[str, int]:
    raw = campaign.counts.as_dict() if hasattr(campaign.counts, "as_dict") else campaign.counts or {}
    return {k: int(v) for k, v in raw.items()}


def queue_urls() -> dict[str, str]:
    from mailer_core.base.config import get_settings

    settings = get_settings()
    return {"campaigns": settings.campaign_queue_url, "bulk": settings.bulk_queue_url}


def queue_depth(url: str) -> int:
    """Messages in the queue: visible, delayed and in flight."""
    import boto3

    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesDelayed",
            "ApproximateNumberOfMessagesNotVisible",
        ],
    )["Attributes"]
    return sum(int(v) for v in attrs.values())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def poll(
    handler: Any, url: str, *, visibility: int | None = None, on_batch: Callable[[], None] | None = None
) -> int:
    """One poll as Lambda's event source makes it: a batch of up to 10 to the handler, the
    records that succeeded deleted. The number of records delivered."""
    import boto3

    from tests.support.api_client import LambdaContext
    from tests.support.sqs import sqs_event

    sqs = boto3.client("sqs")
    extra: dict[str, Any] = {"VisibilityTimeout": visibility} if visibility is not None else {}
    got: list[dict[str, Any]] = sqs.receive_message(  # type: ignore[assignment]
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0, **extra
    ).get("Messages", [])
    if not got:
        return 0
    if on_batch:
        on_batch()
    result = handler.lambda_handler(
        sqs_event(got, "arn:aws:sqs:us-east-1:123456789012:bench"), LambdaContext()
    )
    failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures") or []}
    done = [m for m in got if m["MessageId"] not in failed]
    if done:
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(done)],
        )
    return len(got)


def work_until(done: Callable[[], bool], *, timeout: float, send: bool = True) -> None:
    """Deliver the campaign queue and the bulk send queue to their handlers until `done`."""
    from tests.support.api_client import load_handler

    campaigns, sender, urls = load_handler("campaigns"), load_handler("send"), queue_urls()
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not done within {timeout:.0f} s")
        got = poll(campaigns, urls["campaigns"])
        if send:
            got += poll(sender, urls["bulk"])
        if not got:
            time.sleep(0.2)


# -- 1. expansion ----------------------------------------------------------------------------


class AwsMeter:
    """AWS calls counted and timed (botocore's `_make_api_call`, which every client and
    PynamoDB go through), and the send jobs put on the bulk queue."""

    def __init__(self, bulk_url: str) -> None:
        from botocore.client import BaseClient
        from mailer_core.adapters.sqs import send_bodies

        self.calls = 0
        self.seconds = 0.0  # wall time with at least one call waiting for its answer
        self.send_jobs = 0
        self.by_operation: dict[str, list[float]] = {}  # operation: [calls, seconds summed]
        self._lock = threading.Lock()
        self._waiting = 0
        self._since = 0.0
        original = getattr(BaseClient, "_make_api_call")  # noqa: B009
        meter = self

        def counted(client: Any, operation: str, params: Any) -> Any:
            jobs = 0
            if operation == "SendMessageBatch" and "BulkSend" in str(params.get("QueueUrl")):
                entries = params.get("Entries") or []
                jobs = sum(len(send_bodies(e["MessageBody"])) for e in entries)
            began = meter._begin(jobs)
            try:
                return original(client, operation, params)
            finally:
                meter._end(operation, began)

        setattr(BaseClient, "_make_api_call", counted)  # noqa: B010

    def _begin(self, jobs: int) -> float:
        with self._lock:
            self.calls += 1
            self.send_jobs += jobs
            began = time.perf_counter()
            if self._waiting == 0:
                self._since = began
            self._waiting += 1
            return began

    def _end(self, operation: str, began: float) -> None:
        with self._lock:
            now = time.perf_counter()
            self._waiting -= 1
            if self._waiting == 0:
                self.seconds += now - self._since
            seen = self.by_operation.setdefault(operation, [0, 0.0])
            seen[0] += 1
            seen[1] += now - began


def expansion(args: argparse.Namespace) -> str:
    import boto3
    from mailer_core.base.clock import FakeClock
    from mailer_core.base.config import reset_settings
    from mailer_core.campaigns import lifecycle, worker
    from mailer_core.events.campaign_jobs import CampaignJob

    n = args.recipients
    with local_stack() as started:
        mailbox_id = create_mailbox(started.smtp.port)  # 100 emails/s: parts of 250, one a package
        setup = time.perf_counter()
        list_id = target_list(n, "r")
        print(
            f"  setup: a target list of {n} addresses imported with add_members in "
            f"{time.perf_counter() - setup:.1f} s (not measured)",
            flush=True,
        )
        campaign_id = new_campaign([mailbox_id], {"target_lists": [list_id]})
        urls = queue_urls()
        sqs = boto3.client("sqs")
        meter = AwsMeter(urls["bulk"])
        clock = FakeClock(current=datetime.now(UTC))
        marks = sorted({max(1, n // 10), n})
        print(f"  before the start: resident {rss_mb():.0f} MB, peak so far {peak_rss_mb():.0f} MB")
        measured = 0.0  # time inside the start and the parts only: not the bench's own reads
        in_aws = 0.0  # of which waiting for moto's answers
        aws_before = (meter.calls, meter.seconds)
        began, waited = time.perf_counter(), meter.seconds
        lifecycle.start(caller(), campaign_id, {}, clock=clock)
        measured += time.perf_counter() - began
        in_aws += meter.seconds - waited
        parts = 0
        while True:
            campaign = campaign_item(ACCOUNT_ID, campaign_id)
            composed = counts_of(campaign).get("composed", 0)
            while marks and composed >= marks[0]:
                at = marks.pop(0)
                print(
                    f"  {at:>7} recipients composed after {measured:6.1f} s: resident {rss_mb():.0f} MB, "
                    f"peak {peak_rss_mb():.0f} MB",
                    flush=True,
                )
            if campaign.expanded:
                break
            if campaign.next_at and campaign.next_at > clock.now():
                clock.current = campaign.next_at  # the pace: the next part's time has come
            job = CampaignJob(ACCOUNT_ID, campaign_id, "package", int(campaign.package), int(campaign.offset))
            began, waited = time.perf_counter(), meter.seconds
            result = worker.process(job, clock=clock)
            measured += time.perf_counter() - began
            in_aws += meter.seconds - waited
            if result != "part composed":
                raise RuntimeError(f"part {parts} ended {result!r}")
            parts += 1
            # moto's SQS slows down with every message a queue holds (SendMessageBatch reads
            # them all), and purges only once a minute: the jobs were counted on their way in,
            # and the next part sends to a fresh bulk queue (unmeasured).
            fresh = sqs.create_queue(QueueName=f"bench-BulkSendQueue-{parts}")["QueueUrl"]
            os.environ["MAILER_BULK_QUEUE_URL"] = fresh
            reset_settings()
        calls = meter.calls - aws_before[0] - 2 * parts - 1  # less the bench's reads and new queues
        counts = counts_of(campaign)
        if counts.get("composed") != n or meter.send_jobs != n:
            raise RuntimeError(f"{counts} composed, {meter.send_jobs} send jobs queued; expected {n}")
        print(
            f"  {parts} parts, {meter.send_jobs} send jobs queued, {n / measured:.0f} recipients/s; "
            f"{calls / n:.2f} AWS requests per recipient"
        )
        print("  by operation (the time each waited, summed: a part's rounds wait side by side):")
        for operation, (number, seconds) in sorted(meter.by_operation.items(), key=lambda kv: -kv[1][1]):
            print(f"    {operation:<22} {int(number):>7} requests, {seconds:6.1f} s")
        print(
            f"  of the {measured:.1f} s, {in_aws:.1f} s with a request to AWS (moto) waiting for its "
            f"answer and {measured - in_aws:.1f} s without (the Expander's work, the requests' making "
            "and reading)"
        )
    return f"campaign expansion: {n} recipients in {measured:.1f} s, peak memory {peak_rss_mb():.0f} MB"


# -- 2. Kommo requests per email ------------------------------------------------------------


def kommo(args: argparse.Namespace) -> str:
    from mailer_core.base.config import reset_settings
    from mailer_core.campaigns import lifecycle
    from mailer_core.rendering import variables

    from devstack.kommo_standin import seed
    from devstack.kommo_standin.server import KommoStandIn
    from tests.support.fixtures.audiences import bulk_address, bulk_lead, bulk_seed
    from tests.support.kommo_accounts import save_account_with_token

    leads = 200 if args.quick else 1000
    with local_stack() as started:
        variables.forget_account_data()
        with KommoStandIn(bulk_seed(leads), rate_limit=100_000) as standin:
            standin.add_token(seed.ACCOUNT_ID, KOMMO_TOKEN)
            os.environ["MAILER_KOMMO_REQUESTS_PER_SECOND"] = "1000"  # counted here, not paced
            os.environ["MAILER_KOMMO_BASE_URL"] = standin.base_url
            reset_settings()
            save_account_with_token(KOMMO_TOKEN)
            mailbox_id = create_mailbox(started.smtp.port)
            campaign_id = new_campaign(
                [mailbox_id],
                {"entity_type": "leads", "ids": [bulk_lead(k) for k in range(leads)]},
                subject="{{ contact.first_name }} {{ contact.last_name }}: {{ lead.name }}",
                html="<p>Dear {{ contact.name }}, about {{ lead.name }} of {{ company.name }}.</p>",
            )
            started.smtp.ask("reset")
            before = len(standin.requests)
            began = time.perf_counter()
            lifecycle.start(caller(seed.ACCOUNT_ID, seed.SUBDOMAIN), campaign_id, {})
            work_until(
                lambda: campaign_item(seed.ACCOUNT_ID, campaign_id).status == "sent", timeout=600 + 3 * leads
            )
            wall = time.perf_counter() - began
            made = standin.requests[before:]
        emails = smtp_stats(started.smtp).messages
        with tempfile.NamedTemporaryFile("r", suffix=".json") as dump:
            started.smtp.ask(f"recipients {dump.name}")
            received = json.load(dump)
        expected = {bulk_address(k) for k in range(leads)}
        if set(received) != expected or emails != leads:
            raise RuntimeError(
                f"{emails} emails to {len(received)} addresses; expected one to each of {leads}"
            )
        kinds: dict[str, int] = {}
        for request in made:
            kinds[f"{request.method} {request.path}"] = kinds.get(f"{request.method} {request.path}", 0) + 1
        print(f"  {leads} leads, {emails} emails sent in {wall:.1f} s; Kommo requests: {len(made)}")
        for kind, number in sorted(kinds.items(), key=lambda kv: -kv[1]):
            print(f"    {number:>4}  {kind}")
    return f"campaign Kommo requests per email: {len(made) / emails:.3f}"


# -- 4. crash and resume --------------------------------------------------------------------

# Where a worker is killed: at a random moment inside a step, or (the worker kills itself) at
# a point the exactly-once argument names: between one round of email writes and the next, between
# composing a part and moving the position on, after moving on and before queueing the next part.
POINTS = ("moment", "between writes", "before moving on", "before queueing the next part")
CRASH_VISIBILITY = 10  # seconds: what a killed worker held is delivered again after this
# The part's lease runs out before that (the template's 330 s outlast the function's Timeout,
# and its queue's visibility timeout is 1,800 s): a killed holder's job can take its part over.
CRASH_LEASE = 8
WORKER_ERRORS: list[str] = []  # the workers' error log lines


class Worker:
    """A process that works one queue through its function's handler (`--worker`), as Lambda
    would; it says `busy` on stdout when it takes a batch and `idle` when the batch is done."""

    def __init__(self, function: str, point: str = "moment", nth: int = 1) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", function],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env={
                **os.environ,
                "BENCH_CRASH_POINT": point,
                "BENCH_CRASH_NTH": str(nth),
                "MAILER_CAMPAIGN_PART_LEASE_SECONDS": str(CRASH_LEASE),
            },
        )
        self.point = point
        self.busy = False
        self.done = 0  # batches finished
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            said = line.strip()
            if said in ("busy", "idle"):
                self.busy = said == "busy"
                self.done += said == "idle"
            elif '"level":"ERROR"' in said.replace(" ", "") or "Traceback" in said:
                WORKER_ERRORS.append(said[:400])

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no cleanup, no finally, as a Lambda that dies
        self.proc.wait()


def arm_crash_point(point: str, nth: int) -> None:
    """In a campaign worker: SIGKILL this process when the step reaches `point` (the nth time)."""
    import signal

    from mailer_core.campaigns import expansion

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    seen = [0]

    def wrap(owner: Any, name: str, when: Callable[[tuple[Any, ...]], bool] = lambda a: True) -> None:
        original = getattr(owner, name)

        def wrapped(*a: Any, **k: Any) -> Any:
            if when(a):
                seen[0] += 1
                if seen[0] >= nth:
                    die()
            return original(*a, **k)

        setattr(owner, name, wrapped)

    if point == "between writes":
        wrap(expansion, "_write")
    elif point == "before moving on":
        wrap(expansion.Expander, "_advance")
    elif point == "before queueing the next part":
        advancing = [False]  # the next part's job is the one `_advance` queues
        original_advance = expansion.Expander._advance

        def marked(*a: Any, **k: Any) -> Any:
            advancing[0] = True
            try:
                return original_advance(*a, **k)
            finally:
                advancing[0] = False

        setattr(expansion.Expander, "_advance", marked)  # noqa: B010
        wrap(expansion, "enqueue", lambda a: advancing[0])


def work_forever(function: str) -> None:
    """`--worker campaigns|send`: poll the function's queue until killed or stdin closes."""
    from tests.support.api_client import load_handler

    if function == "campaigns":
        arm_crash_point(
            os.environ.get("BENCH_CRASH_POINT", "moment"), int(os.environ.get("BENCH_CRASH_NTH", "1"))
        )
    handler = load_handler(function)
    url = queue_urls()["campaigns" if function == "campaigns" else "bulk"]
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    while True:
        got = poll(handler, url, visibility=CRASH_VISIBILITY, on_batch=lambda: print("busy", flush=True))
        if got:
            print("idle", flush=True)
        else:
            time.sleep(0.2)


def crash(args: argparse.Namespace) -> str:
    from mailer_core.campaigns import lifecycle

    n, kills, each = (2000, 5, 1) if args.quick else (10_000, 20, 2)
    rng = random.Random(args.seed)
    # `each` kills at each named point, the rest at random moments; two of those in a pause.
    plan = [point for point in POINTS[1:] for _ in range(each)]
    plan += ["moment"] * (kills - len(plan))
    rng.shuffle(plan)
    pauses = {k for k, point in enumerate(plan) if point == "moment"}
    pauses = set(rng.sample(sorted(pauses), min(2, len(pauses))))
    with local_stack() as started:
        mailbox_id = create_mailbox(started.smtp.port)
        list_id = target_list(n, "c")
        # Paced at 15 emails/s: parts of 1,000 every 67 s, so that the kills fall all along the
        # expansion and the send workers keep up (moto's SQS slows down as a queue fills).
        campaign_id = new_campaign([mailbox_id], {"target_lists": [list_id]}, options={"per_hour": 54_000})
        started.smtp.ask("reset")
        began = time.perf_counter()
        lifecycle.start(caller(), campaign_id, {})
        senders = [Worker("send"), Worker("send")]
        worker = next_worker(plan[0], rng)
        happened: dict[str, int] = {}
        try:
            for k, point in enumerate(plan):
                what = kill_once(worker, point, k in pauses, rng, campaign_id, settled=k % 2 == 1)
                if what is None:
                    print(f"  kill {k + 1}: the campaign worker had no step to work for 90 s; no more kills")
                    break
                happened[what] = happened.get(what, 0) + 1
                worker = next_worker(plan[k + 1] if k + 1 < len(plan) else "moment", rng)
            if worker.point != "moment":  # the kills are over: the last worker works to the end
                worker.kill()
                worker = next_worker("moment", rng)
            for what, times in happened.items():
                print(f"  killed {times} x at {what}", flush=True)
            took = time.perf_counter() - began
            print(f"  {sum(happened.values())} kills in {took:.0f} s; now worked to the end", flush=True)
            stalled = wait_until_settled(campaign_id, n)
        finally:
            worker.kill()
            for sender in senders:
                sender.kill()
        wall = time.perf_counter() - began
        with tempfile.NamedTemporaryFile("r", suffix=".json") as dump:
            started.smtp.ask(f"recipients {dump.name}")
            received: dict[str, int] = json.load(dump)
        campaign = campaign_item(ACCOUNT_ID, campaign_id)
        dead = dead_letters()
        statuses, odd = email_statuses(campaign_id)
    expected = {address("c", k) for k in range(n)}
    repeated = sum(count - 1 for count in received.values() if count > 1)
    skipped = len(expected - set(received))
    print(
        f"  {n} recipients, {wall:.0f} s; campaign {campaign.status} at package {campaign.package} "
        f"offset {campaign.offset}, counts {counts_of(campaign)}; dead letters {dead}"
    )
    print(f"  the campaign's emails by status: {statuses}")
    print(f"  error lines in the workers' logs: {len(WORKER_ERRORS)}")
    for line in WORKER_ERRORS[:5]:
        print(f"    {line}")
    for line in odd:
        print(f"    {line}")
    if stalled:
        print(f"  STALLED: {stalled}")
    if repeated or skipped:
        twice = sorted(a for a, c in received.items() if c > 1)[:3]
        missing = sorted(expected - set(received))[:3]
        print(f"  repeated e.g. {twice}; skipped e.g. {missing}")
    return f"campaign crash/resume: repeated {repeated}, skipped {skipped}"


def next_worker(point: str, rng: random.Random) -> Worker:
    """A campaign worker that kills itself at `point` (between writes: before the nth of its
    BatchWriteItem rounds of up to 100 emails, n random; a part of 250 makes three)."""
    return Worker("campaigns", point, rng.randint(2, 6) if point == "between writes" else 1)


def kill_once(
    worker: Worker, point: str, paused: bool, rng: random.Random, campaign_id: str, *, settled: bool
) -> str | None:
    """Kill `worker` at `point` (`settled`: once it has finished a step, so that no one job is
    killed over and over: SQS dead-letters a job after 5 receives); what happened, or None
    when it got no step to work."""
    from mailer_core.campaigns import lifecycle

    if settled and not wait_for(lambda: worker.done >= 1 or worker.proc.poll() is not None, 90):
        return None
    if point != "moment":
        if wait_for(lambda: worker.proc.poll() is not None, 60):
            return point
        worker.kill()
        return f"{point} (not reached in 60 s: killed)"
    if paused:
        lifecycle.pause(caller(), campaign_id)
    # A random moment inside a step (a paused campaign may have none: 5 s at most).
    deadline = time.monotonic() + (5 if paused else 30)
    while time.monotonic() < deadline:
        if not wait_for(lambda: worker.busy, deadline - time.monotonic()):
            break
        time.sleep(rng.uniform(0.0, 1.0))
        if worker.busy:
            break
    inside = worker.busy
    worker.kill()
    what = f"a random moment ({'inside a step' if inside else 'between steps'})"
    if paused:
        time.sleep(rng.uniform(0.0, 2.0))
        lifecycle.resume(caller(), campaign_id)
        what += ", paused and resumed"
    return what


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def wait_until_settled(campaign_id: str, n: int) -> str | None:
    """Until the campaign is Sent; None, or why it stopped short: no progress for a minute."""
    from mailer_core.events import campaign_state as cs

    last, since = None, time.monotonic()
    while True:
        campaign = campaign_item(ACCOUNT_ID, campaign_id)
        if campaign.status == cs.SENT:
            return None
        now = (
            campaign.status,
            int(campaign.package),
            int(campaign.offset),
            tuple(sorted(counts_of(campaign).items())),
        )
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > 60:
            return (
                f"no progress for 60 s: {campaign.status}, package {campaign.package}, {counts_of(campaign)}"
            )
        time.sleep(1)


def email_statuses(campaign_id: str) -> tuple[dict[str, int], list[str]]:
    """The campaign's emails by status, and the story of a few that are not sent."""
    from mailer_core.events import campaign_state as cs
    from mailer_core.store.models import MessageModel

    statuses: dict[str, int] = {}
    odd: list[str] = []
    for message in MessageModel.by_campaign.query(cs.campaign_key(ACCOUNT_ID, campaign_id)):
        status = str(message.status)
        counted = set(message.stats_counted or [])
        if status == "sent" and "c:sent" not in counted:
            status = "sent (not counted by the campaign)"
        statuses[status] = statuses.get(status, 0) + 1
        if status != "sent" and len(odd) < 5:
            story = "; ".join(f"{e.event} {e.detail or ''}".strip() for e in (message.history or [])[-6:])
            odd.append(f"{message.to[0]} {status}: {story} (counted {sorted(counted)})")
    return statuses, odd


def dead_letters() -> dict[str, int]:
    import boto3

    sqs = boto3.client("sqs")
    found = {}
    for url in sqs.list_queues().get("QueueUrls", []):
        if "DeadLetter" in url and (depth := queue_depth(url)):
            found[url.rsplit("/", 1)[1]] = depth
    return found


# -- main ------------------------------------------------------------------------------------


def run_section(args: argparse.Namespace) -> None:
    """One section in this process (the parent runs each in a process of its own)."""
    sections = {"expansion": expansion, "kommo": kommo, "crash": crash}
    print(sections[args.section](args), flush=True)


def relay(command: list[str]) -> str | None:
    """Run a section (or a script) in a process of its own, its output shown as it comes;
    its last line, or None when it failed."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        last = None
        for line in proc.stdout:
            if line.startswith("{"):  # a stray log or metrics record: not a figure
                continue
            print(line, end="", flush=True)
            last = line.strip() or last
    return last if proc.returncode == 0 else None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipients", type=int, help="the expansion's audience (default 100000; 10000 with --quick)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller runs: 10,000 expanded, 200 leads, 2,000 crashed 5 times"
    )
    parser.add_argument("--seed", type=int, default=12, help="the crash/resume run's random moments")
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=("campaigns", "send"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.recipients is None:
        args.recipients = 10_000 if args.quick else 100_000
    if args.recipients < 1:
        parser.error("--recipients must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        work_forever(args.worker)
        return
    if args.section:
        run_section(args)
        return
    me = [sys.executable, str(Path(__file__).resolve())]
    options = ["--recipients", str(args.recipients), "--seed", str(args.seed), *(["--quick"] * args.quick)]
    lines = []
    for section, what in (
        ("expansion", "campaign expansion"),
        ("kommo", "campaign Kommo requests per email"),
        ("mailboxes", "campaign mailboxes"),
        ("crash", "campaign crash/resume"),
    ):
        print(f"{what}:", flush=True)
        if section == "mailboxes":
            script = BENCH / "campaign_mailboxes.py"
            if not script.exists():
                lines.append("campaign mailboxes: not measured (bench/campaign_mailboxes.py missing)")
                print("  bench/campaign_mailboxes.py is missing", flush=True)
                continue
            last = relay([sys.executable, str(script)])
        else:
            last = relay([*me, "--section", section, *options])
        lines.append(last if last and last.startswith(what) else f"{what}: failed (see above)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
