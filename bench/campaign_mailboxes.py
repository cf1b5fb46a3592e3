"""Campaign mailboxes: many sender mailboxes, each at its own rate and daily cap, one bulk queue.

    .venv/bin/python bench/campaign_mailboxes.py [--emails 5000] [--mailboxes 50] [--fast-every 5]
                                                 [--capped 2] [--concurrency N] [--smtp-delay-ms 50]

A campaign's emails are ordinary messages on the bulk lane. This puts `--emails` of them (from
`--mailboxes` mailboxes, shuffled) on the bulk queue and lets the send function work them as
Lambda would: `--concurrency` containers (separate processes, each with its own
functions/send/handler.py, SMTP pool and what it learns of the rate buckets), each polling the
queue for batches of 10, invoking the handler and deleting what succeeded. moto (two processes:
DynamoDB apart) and an SMTP server (bench/servers.py, answering each email after
`--smtp-delay-ms`, noting when each arrived and from which mailbox) run in processes of
their own.

Every mailbox sends at 1/s but every `--fast-every`-th at 2/s; each gets emails in proportion
to its rate, so all would finish together at their full rates. `--capped` mailboxes have a
daily cap below their share: they must stop at it, and their other emails must say they wait
for the daily cap. The run ends when every email that may go out today has reached the
server (or at `--timeout`).

It prints, per mailbox, the rate achieved (emails − 1 over the time between its first and last
arrival at the server) against its rate, the most arrivals any one second held against its
rate, emails per mailbox against the daily cap, the jobs that went back to the queue to wait,
and the send function's billed seconds per 1,000 emails; last
`campaign mailboxes: X of the summed rate` (the achieved rates summed over the set rates
summed). bench/README.md explains each figure. `--emails 600 --mailboxes 10` is a quick run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import send_throughput as base

ACCOUNT_ID = base.ACCOUNT_ID
USER_ID = base.USER_ID
FUNCTION_TIMEOUT = 60.0  # the send function's Timeout in the template


@dataclass(frozen=True)
class Mailbox:
    mailbox_id: str
    sender: str
    rate: float
    daily_cap: int
    emails: int  # emails queued for it


# -- setup -----------------------------------------------------------------------------------


def create_stack() -> dict[str, str]:
    """The template's resources in moto and the functions' environment; the bulk queue."""
    import boto3
    from mailer_core.base.config import reset_settings
    from mailer_core.store import models

    from devstack.resources import create_stack as create
    from devstack.resources import function_environment

    stack = create(
        boto3.session.Session(),
        parameters={
            "KommoClientSecret": "bench-client-secret-0123456789abcdef",
            "KommoRedirectUri": "https://mailer.bench.example/oauth/callback",
        },
    )
    os.environ.update(function_environment(stack))
    os.environ["MAILER_ALLOW_PLAINTEXT_SMTP"] = "1"
    os.environ["MAILER_ALLOW_LOOPBACK_MAILBOXES"] = "1"
    reset_settings()
    models.reset_connections()
    return {"url": stack.refs["BulkSendQueue"], "arn": stack.attrs[("BulkSendQueue", "Arn")]}


def template_concurrency() -> int:
    """The bulk queue's MaximumConcurrency in infra/template.yaml."""
    from devstack.resources import load_template

    resources = load_template()["Resources"]
    for event in resources["SendFunction"]["Properties"]["Events"].values():
        queue = (event.get("Properties") or {}).get("Queue")
        if isinstance(queue, dict) and "BulkSendQueue" in str(queue):
            return int(event["Properties"]["ScalingConfig"]["MaximumConcurrency"])
    raise RuntimeError("no bulk queue event on SendFunction")


def plan_mailboxes(args: argparse.Namespace) -> list[tuple[str, float, int, int]]:
    """(sender, rate, daily cap, emails) per mailbox: emails in proportion to the rate."""
    rates = [
        args.rate * (2 if args.fast_every and (k + 1) % args.fast_every == 0 else 1)
        for k in range(args.mailboxes)
    ]
    total_rate = sum(rates)
    shares = [int(args.emails * r / total_rate) for r in rates]
    for k in range(args.emails - sum(shares)):
        shares[k % len(shares)] += 1
    plan = []
    for k, (rate, share) in enumerate(zip(rates, shares, strict=True)):
        cap = share * 3 // 5 if k < args.capped else 10_000  # the capped ones stop at 60 % of their share
        plan.append((f"sender{k:02d}@example.com", rate, cap, share))
    return plan


def create_mailboxes(smtp_port: int, plan: list[tuple[str, float, int, int]]) -> list[Mailbox]:
    from mailer_core.accounts.auth import Caller
    from mailer_core.mailboxes import api as mailboxes

    caller = Caller(ACCOUNT_ID, "mailerbench", USER_ID, False)
    made = []
    for sender, rate, cap, emails in plan:
        view = mailboxes.create(
            caller,
            {
                "sender_name": base.SENDER_NAME,
                "sender_email": sender,
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp_port,
                "smtp_security": "none",
                "smtp_login": base.LOGIN,
                "smtp_password": base.PASSWORD,
                "rate_per_second": rate,
                "daily_cap": cap,
                "is_default": False,
            },
        )
        made.append(Mailbox(str(view["id"]), sender, rate, cap, emails))
    return made


def compose_all(mailboxes: list[Mailbox], seed: int) -> tuple[dict[str, str], list[Any]]:
    """Every email composed on the bulk lane, mailboxes shuffled together: message id -> mailbox
    id, and the send jobs compose would have queued, in order, held back for `feed`."""
    from mailer_core.accounts.auth import Caller
    from mailer_core.adapters import sqs
    from mailer_core.messages import compose as messages

    caller = Caller(ACCOUNT_ID, "mailerbench", USER_ID, False)
    order = [m for m in mailboxes for _ in range(m.emails)]
    random.Random(seed).shuffle(order)
    held: dict[str, Any] = {}
    enqueue = sqs.enqueue_send
    sqs.enqueue_send = lambda job, delay_seconds=0: held.__setitem__(job.message_id, job)  # type: ignore[assignment]

    def one(i: int) -> tuple[str, str]:
        mailbox = order[i]
        body = {"mailbox_id": mailbox.mailbox_id, "lane": "bulk", **base.message_content(i)}
        return str(messages.compose_json(caller, body)["id"]), mailbox.mailbox_id

    try:
        with ThreadPoolExecutor(max_workers=4) as threads:
            composed = dict(threads.map(one, range(len(order))))
    finally:
        sqs.enqueue_send = enqueue  # type: ignore[assignment]
    return composed, [held[message_id] for message_id in composed]


def feed(jobs: list[Any], queue_url: str, stop: Any, backlog: int) -> None:
    """Put the jobs on the bulk queue as a campaign does, package by package: whenever fewer
    than `backlog` are waiting, the next ones. (moto's ReceiveMessage reads its whole queue
    for each message it returns: 5,000 waiting jobs would make moto the bottleneck.)"""
    import boto3
    from mailer_core.adapters.sqs import enqueue_bulk_sends

    sqs = boto3.session.Session().client("sqs")
    sent = 0
    while sent < len(jobs) and not stop.is_set():
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        room = backlog - int(attributes["ApproximateNumberOfMessages"])
        if room >= 50:
            package = jobs[sent : sent + room]
            enqueue_bulk_sends([(job, 0) for job in package])
            sent += len(package)
        time.sleep(0.5)


PACED_HORIZON = 30.0  # seconds: how far ahead --paced puts jobs on the queue


def feed_paced(jobs: list[Any], rates: dict[str, float], queue_url: str, stop: Any) -> None:
    """Put the jobs on the bulk queue as a campaign's parts plan them (`--paced`): each
    mailbox's k-th email due k / rate seconds after the start, queued with an SQS delay until
    then once it is due within `PACED_HORIZON` seconds (the Expander gives a part's emails
    their delays the same way)."""
    from mailer_core.adapters.sqs import enqueue_bulk_sends

    seen: Counter[str] = Counter()
    due = []
    for job in jobs:
        due.append((seen[job.mailbox_id] / rates[job.mailbox_id], job))
        seen[job.mailbox_id] += 1
    due.sort(key=lambda d: d[0])
    start, sent = time.monotonic(), 0
    while sent < len(due) and not stop.is_set():
        now = time.monotonic() - start
        ready = []
        while sent < len(due) and due[sent][0] <= now + PACED_HORIZON:
            at, job = due[sent]
            ready.append((job, max(0, int(at - now))))
            sent += 1
        if ready:
            enqueue_bulk_sends(ready)
        time.sleep(0.5)


# -- the containers (processes of their own, as Lambda's are) --------------------------------


def container(number: int, queue: dict[str, str], stop: Any, results: Any, log_dir: str, ready: Any) -> None:
    """One Lambda container: poll the bulk queue, invoke the send function, delete what
    succeeded. `ready` is told once its cold start (imports, clients) is over."""
    import boto3

    with open(Path(log_dir) / f"container{number}.log", "w") as log_file:
        os.dup2(log_file.fileno(), 1)  # the metric lines too (printed, not logged)
        handler = base.load_send_handler(log_file)
        sqs = boto3.session.Session().client("sqs")
        ready.put(number)
        invocations, billed, records = 0, 0.0, 0
        while not stop.is_set():
            got = sqs.receive_message(
                QueueUrl=queue["url"], MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1
            ).get("Messages", [])
            if not got:
                continue
            event = {"Records": [base._record(m, queue["arn"]) for m in got]}
            start = time.monotonic()
            result = handler.lambda_handler(event, _Context(start)) or {}
            billed += time.monotonic() - start
            invocations += 1
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures") or []}
            done = [m for m in got if m["MessageId"] not in failed]
            records += len(done)
            if done:
                sqs.delete_message_batch(
                    QueueUrl=queue["url"],
                    Entries=[{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(done)],
                )
        results.put({"invocations": invocations, "billed": billed, "records": records})


class _Context:
    """Lambda's context as the send function uses it: the time left of a 60 s invocation."""

    function_name = "mailer-send"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mailer-send"
    memory_limit_in_mb = 1024
    aws_request_id = "bench"

    def __init__(self, start: float) -> None:
        self._deadline = start + FUNCTION_TIMEOUT

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


# -- the run and its figures -----------------------------------------------------------------


def arrivals(smtp: base.Child) -> list[tuple[str, float]]:
    line = smtp.ask("arrivals", timeout=30)
    if not line.startswith("ARRIVALS "):
        raise RuntimeError(f"the SMTP server said {line[:80]!r}")
    return [(str(sender), float(at)) for sender, at in json.loads(line.split(" ", 1)[1])]


def limit_of(rate: float) -> tuple[float, int]:
    """What a mailbox's rate allows: (window in seconds, most arrivals in it). One second and
    the rate (whole) from 1/s up; below it, one arrival in 1/rate seconds."""
    return (1.0, int(rate)) if rate >= 1 else (1.0 / rate, 1)


def most_in_a_window(times: list[float], seconds: float) -> int:
    """The most arrivals any window [t, t + seconds) holds (two pointers over the sorted times)."""
    times, most, left = sorted(times), 0, 0
    for right, t in enumerate(times):
        while times[left] <= t - seconds:
            left += 1
        most = max(most, right - left + 1)
    return most


def tightest_span(times: list[float], rate: float) -> float:
    """The shortest time any `most` + 1 consecutive arrivals took, against the window: more than
    1.0 means never above the rate."""
    seconds, step = limit_of(rate)
    times = sorted(times)
    return min((times[k + step] - times[k] for k in range(len(times) - step)), default=float("inf")) / seconds


def windows_above(times: list[float], rate: float) -> int:
    """How many arrivals have more than the rate allows in the window that ends with them."""
    seconds, step = limit_of(rate)
    times = sorted(times)
    return sum(1 for k in range(len(times) - step) if times[k + step] - times[k] < seconds)


REQUEUED = "waiting for the mailbox; re-queued"  # the send worker's log line


def late_tokens(log_dir: str) -> int:
    return sum(p.read_text().count("rate token too late to use") for p in Path(log_dir).glob("*.log"))


def requeued_jobs(log_dir: str) -> int:
    return sum(line.count(REQUEUED) for p in Path(log_dir).glob("*.log") for line in open(p))


def returns_waited(log_dir: str) -> list[float]:
    """For each job sent back to wait: the seconds from when it was visible again (its re-queue
    plus the delay) to when a container had worked it next, from the containers' log lines."""
    events: dict[str, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    for path in Path(log_dir).glob("*.log"):
        for line in path.read_text().splitlines():
            if not line.startswith('{"level"'):
                continue
            entry = json.loads(line)
            if "message_id" in entry and entry.get("message") in ("send job done", REQUEUED):
                at = datetime.strptime(entry["timestamp"], "%Y-%m-%d %H:%M:%S,%f%z").timestamp()
                events[entry["message_id"]].append((at, entry))
    waited = []
    for entries in events.values():
        entries.sort(key=lambda e: e[0])
        for n, (at, entry) in enumerate(entries):
            if entry["message"] != REQUEUED:
                continue
            visible = at + float(entry["delay"])
            # (the deferral's own line comes at once; the job's next try at least a second later)
            worked = [t for t, e in entries[n + 1 :] if e["message"] == "send job done" and t > at + 0.5]
            if worked:
                waited.append(worked[0] - visible)
    return sorted(waited)


def held_reasons(message_to_mailbox: dict[str, str], capped: set[str]) -> Counter[str]:
    """What the capped mailboxes' unsent emails say: status and waiting reason."""
    from mailer_core.store.models import MessageModel

    keys = [(ACCOUNT_ID, m) for m, mb in message_to_mailbox.items() if mb in capped]
    return Counter(
        f"{m.status}/{m.waiting_reason}" for m in MessageModel.batch_get(keys) if m.status != "sent"
    )


@contextlib.contextmanager
def servers(delay_ms: float) -> Iterator[base.Servers]:
    """moto twice (DynamoDB apart, one request at a time as in the local stack: concurrent
    containers race for the same tokens, and moto alone would let two conditional writes both
    win) and the SMTP server."""
    started: list[base.Child] = []
    try:
        started.append(base.Child("moto"))
        started.append(base.Child("moto", "--serial-dynamodb", name="moto-dynamodb"))
        started.append(
            base.Child(
                "smtp", "--delay-ms", str(delay_ms), "--login", base.LOGIN, "--password", base.PASSWORD
            )
        )
        yield base.Servers(*started)
    finally:
        for child in reversed(started):
            child.stop()


def run(args: argparse.Namespace) -> None:
    with servers(args.smtp_delay_ms) as started, tempfile.TemporaryDirectory() as scratch:
        log_dir = args.log_dir or scratch
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        base.point_at_moto(
            f"http://127.0.0.1:{started.moto.port}", f"http://127.0.0.1:{started.dynamodb.port}"
        )
        queue = create_stack()
        concurrency = args.concurrency or template_concurrency()
        plan = plan_mailboxes(args)
        mailboxes = create_mailboxes(started.smtp.port, plan)
        setup = time.perf_counter()
        composed, jobs = compose_all(mailboxes, args.seed)
        print(
            f"setup: {len(mailboxes)} mailboxes, {len(composed)} emails composed on the bulk lane "
            f"in {time.perf_counter() - setup:.0f} s; {concurrency} containers",
            flush=True,
        )
        expected = sum(min(m.emails, m.daily_cap) for m in mailboxes)
        started.smtp.ask("reset")

        spawn = multiprocessing.get_context("spawn")
        stop, results, ready = spawn.Event(), spawn.Queue(), spawn.Queue()
        workers = [
            spawn.Process(target=container, args=(n, queue, stop, results, log_dir, ready), daemon=True)
            for n in range(concurrency)
        ]
        for worker in workers:
            worker.start()
        cold = time.perf_counter()
        for _ in workers:  # the cold starts (imports, clients) stay out of the figures, as in Lambda
            ready.get(timeout=300)
        print(f"containers started in {time.perf_counter() - cold:.0f} s; the feed starts now", flush=True)
        if args.paced:
            rates = {m.mailbox_id: m.rate for m in mailboxes}
            feeder = threading.Thread(target=feed_paced, args=(jobs, rates, queue["url"], stop), daemon=True)
        else:
            feeder = threading.Thread(target=feed, args=(jobs, queue["url"], stop, args.backlog), daemon=True)
        feeder.start()
        start = time.monotonic()
        deadline = start + args.timeout
        while time.monotonic() < deadline:
            time.sleep(2.0)
            got = base.smtp_stats(started.smtp).messages
            if got >= expected:
                break
            if args.progress:
                print(f"  {time.monotonic() - start:5.0f} s: {got} of {expected} at the server", flush=True)
        wall = time.monotonic() - start
        stop.set()
        totals: Counter[str] = Counter()
        billed = 0.0
        for _ in workers:
            figures = results.get(timeout=120)
            totals.update({k: v for k, v in figures.items() if k != "billed"})
            billed += figures["billed"]
        for worker in workers:
            worker.join(timeout=30)
        report(args, mailboxes, composed, started, log_dir, wall, expected, concurrency, totals, billed)


def report(
    args: argparse.Namespace,
    mailboxes: list[Mailbox],
    composed: dict[str, str],
    started: Any,
    log_dir: str,
    wall: float,
    expected: int,
    concurrency: int,
    totals: Counter[str],
    billed: float,
) -> None:
    stats = base.smtp_stats(started.smtp)
    by_sender: defaultdict[str, list[float]] = defaultdict(list)
    for sender, at in arrivals(started.smtp):
        by_sender[sender].append(at)
    achieved_sum, rate_sum, worst_window, over_cap, worst = 0.0, 0.0, 0.0, [], []
    tightest, above = float("inf"), 0
    for m in mailboxes:
        times = sorted(by_sender.get(m.sender, []))
        achieved = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
        achieved_sum += achieved
        rate_sum += m.rate
        seconds, most = limit_of(m.rate)
        window = most_in_a_window(times, seconds)
        worst_window = max(worst_window, window / most)
        if len(times) > m.daily_cap:
            over_cap.append(m.sender)
        worst.append((achieved / m.rate, m, len(times), window))
        tightest = min(tightest, tightest_span(times, m.rate))
        above += windows_above(times, m.rate)
    worst.sort(key=lambda w: w[0])
    print(
        f"emails: {stats.messages} of {expected} that may go out today reached the server in {wall:.1f} s "
        f"({stats.distinct_ids} distinct Message-IDs); {len(composed)} composed"
    )
    print(
        f"mailboxes: {len(mailboxes)}, summed rate {rate_sum:g}/s, achieved {achieved_sum:.1f}/s; "
        f"containers: {concurrency}, SMTP reply delay {args.smtp_delay_ms:g} ms"
    )
    print("slowest mailboxes (achieved / rate, emails, most in the rate's window):")
    for fraction, m, count, window in worst[:5]:
        seconds = limit_of(m.rate)[0]
        print(f"  {m.sender}  {m.rate:g}/s  {fraction:6.1%}  {count:4d} emails  {window} in {seconds:g} s")
    print(
        f"most arrivals in any window of the rate (1 s; 1/rate below 1/s), against what it allows: "
        f"{worst_window:.2f} (1.00 or less: never above it); the shortest time that many + 1 arrivals "
        f"of a mailbox took, in windows: {tightest:.3f}; arrivals that made a window hold more than the "
        f"rate allows: {above}"
    )
    capped = [m for m in mailboxes if m.daily_cap < m.emails]
    if capped:
        held = held_reasons(composed, {m.mailbox_id for m in capped})
        sent = {m.sender: len(by_sender.get(m.sender, [])) for m in capped}
        print(
            f"daily caps: {len(over_cap)} mailboxes above theirs; capped mailboxes sent "
            f"{', '.join(f'{s} {n}/{m.daily_cap}' for (s, n), m in zip(sent.items(), capped, strict=True))}; "
            f"their other emails: {dict(held)}"
        )
    else:
        print(f"daily caps: {len(over_cap)} mailboxes above theirs")
    requeued = requeued_jobs(log_dir)
    sent = max(stats.messages, 1)
    print(
        f"jobs sent back to wait for their turn: {requeued} ({requeued / sent:.2f} per email); "
        f"invocations {totals['invocations']}, records {totals['records']}; "
        f"tokens given back, too late to use: {late_tokens(log_dir)}"
    )
    waited = returns_waited(log_dir)
    if waited:
        print(
            "jobs sent back, from visible again to worked (the queue's lag): median "
            f"{waited[len(waited) // 2]:.1f} s, 10 % under {waited[len(waited) // 10]:.1f} s, "
            f"10 % over {waited[len(waited) * 9 // 10]:.1f} s"
        )
    print(
        f"send function billed: {billed:.0f} s in all, {billed / sent * 1000:.0f} s per 1,000 emails (1 GB)"
    )
    print(f"campaign mailboxes: {achieved_sum / rate_sum:.1%} of the summed rate")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Campaign mailboxes: rates and caps held, mailbox by mailbox."
    )
    parser.add_argument("--emails", type=int, default=5000, help="emails in all (default 5000)")
    parser.add_argument("--mailboxes", type=int, default=50, help="sender mailboxes (default 50)")
    parser.add_argument(
        "--rate", type=float, default=1.0, help="each mailbox's rate per second (default 1; 0.01 to 50)"
    )
    parser.add_argument(
        "--fast-every", type=int, default=5, help="every n-th mailbox at twice --rate (default 5; 0: none)"
    )
    parser.add_argument("--capped", type=int, default=2, help="mailboxes with a daily cap below their share")
    parser.add_argument("--concurrency", type=int, default=0, help="containers (default: the template's)")
    parser.add_argument("--smtp-delay-ms", type=float, default=50.0, help="the server's answer to DATA")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--seed", type=int, default=12, help="the shuffle of the queue")
    parser.add_argument(
        "--backlog", type=int, default=300, help="jobs kept waiting on the queue (default 300)"
    )
    parser.add_argument(
        "--paced",
        action="store_true",
        help="queue each email with the delay a campaign's part plans for it (default: a shuffled backlog)",
    )
    parser.add_argument("--progress", action="store_true", help="print progress every 2 s")
    parser.add_argument("--log-dir", help="keep the send function's log lines here (one file per container)")
    args = parser.parse_args()
    if args.emails < 1 or args.mailboxes < 1 or args.capped > args.mailboxes:
        parser.error("need --emails >= 1, --mailboxes >= 1 and --capped <= --mailboxes")
    if not 0.01 <= args.rate <= 50 or (args.rate > 1 and args.rate != int(args.rate)):
        parser.error("--rate: 0.01 to 50, whole from 1 up")
    return args


def main() -> None:
    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # the servers and containers are stopped on the way out

    signal.signal(signal.SIGTERM, on_term)
    run(parse_args())


if __name__ == "__main__":
    main()
