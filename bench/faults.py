"""Fault injection: N messages through the send pipeline while everything around it fails.

    .venv/bin/python bench/faults.py [--messages 10000] [--seed 1] [--workers 3]

What runs (all on 127.0.0.1, nothing leaves the machine):
- moto in two processes (bench/servers.py: DynamoDB alone, one request at a time, as in the
  other benches; SQS and the rest in the other), the template's resources in them;
- two SMTP servers (aiosmtpd, in a thread of this process, one per mailbox) that misbehave on
  purpose, each transaction drawn at random: 421 to MAIL, 451 to RCPT, 451 to the end of
  DATA, the connection dropped at MAIL, dropped after the data came in but before it was kept
  (a crash), dropped after the message was kept and before the 250 went out (a lost answer:
  the server has it, the client cannot know), a stall of 1-3 s before the answer, and a stall
  longer than the client's read timeout (the message kept, the 250 too late);
- the Kommo stand-in (devstack/kommo_standin, its own limit of 7 requests/s per address on,
  its 429 asking for a 5 s wait) with a quarter of the messages about one of its leads (the
  subject and body use the lead's and contact's data, read at send time); in bursts every
  30-60 s it answers the next 3-12 requests with 429 (`retry_after: 5`), 500, 502, 503 or 504
  (a burst starts only once the previous one was taken: they never pile up in a quiet spell);
- `--workers` send worker processes (this file with `--worker`), each polling the send queue as
  Lambda's event source does (batches of 10, visibility timeout `VISIBILITY` s) and giving the
  batch to functions/send/handler.py, deleting the records that succeeded. They misbehave too:
  a batch's delete is lost now and then (SQS delivers the same batch again after the
  visibility timeout), a batch is given to the handler twice in a row, some jobs are put on the
  queue a second time (SQS's at-least-once: another worker may get the copy at once), and a
  worker kills itself (SIGKILL: no `finally`, no cleanup, as a Lambda that dies) right after a
  claim, in the middle of a message's data, after the final dot before the server's answer,
  or before the "sent" record; this process also SIGKILLs a random worker every 60-120 s. A
  killed worker is replaced at once.

The send function's Timeout (60 s: an invocation that runs longer is SIGKILLed, as Lambda
ends it), the queue's visibility timeout (360 s) and the claim's lease (5 minutes) are the
template's: what a dead worker held is resolved 6 minutes later, so a run ends at least that
long after its last kill. Two figures are scaled down so that retries do not take the run's
whole length: the retry backoff starts at 2 s instead of 30 s, and the SMTP read timeout is
4 s instead of 30 s (the stall past it is 6 s). Messages are composed (`messages.compose`, as the pipeline and
the triggers do) as the queue drains, so that moto's queue stays short.

At the end every message's status is read and compared with what the SMTP servers kept (by
the Message-ID header each email carries):
- duplicates: emails kept more than once (each extra one counts);
- lost: messages never kept by a server and not `failed` (nor `canceled`): a sender would
  believe they went out, or they never will;
- stuck: messages not in a final state (`sent`, `failed`, `canceled`) once nothing is left
  to deliver them, each with its status and why (a stuck message that never arrived is lost
  as well).
and the most Kommo requests the stand-in saw in any one second (sliding window), which must
not exceed 7. The last line: `faults: N messages, duplicates D, lost L, stuck S`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(BENCH), str(ROOT / "shared"), str(ROOT)]  # this checkout's core, not an installed one
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

from send_throughput import (  # noqa: E402  (bench/: the moto processes, the stack)
    ACCOUNT_ID,
    LOGIN,
    PASSWORD,
    Child,
    create_stack,
    point_at_moto,
)

# The send function's Timeout, the queue's visibility timeout and the claim's lease are the
# template's: a claim is taken within the Timeout of its batch's receipt and its lease ends
# before the visibility timeout brings the batch back (lease <= visibility - Timeout), which
# is what keeps a dead worker's claim from being skipped. The tail of a run is that long.
FUNCTION_TIMEOUT = 60.0  # seconds; an invocation that runs longer is killed, as Lambda does
VISIBILITY = 360  # seconds
LEASE = 300  # seconds
RETRY_BASE = 2  # seconds: the first retry's delay (30 s in production)
SMTP_TIMEOUT = 4  # seconds: the SMTP client's read timeout (30 s in production)
KOMMO_WAIT = 5  # the retry_after of the stand-in's 429s, its own and the injected ones
ENTITY_SHARE = 0.25  # messages about a lead (rendered with Kommo data)
LEADS = 200
KILL_POINTS = ("after claim", "during data", "after the final dot", "before the record")
SMTP_FAULTS = {  # per transaction
    "421 at MAIL": 0.02,
    "451 at RCPT": 0.01,
    "drop at MAIL": 0.01,
    "451 at end of DATA": 0.02,
    "drop before keeping": 0.005,
    "drop after keeping": 0.005,
    "stall": 0.01,
    "stall past the timeout": 0.003,
}
SUBJECT = "{{ lead.name }}: the offer for {{ contact.name }}"
HTML = (
    "<p>Dear {{ contact.name }},</p>"
    "<p>about {{ lead.name }}: <a href='https://shop.example/o'>the offer</a>.</p>"
)
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


# -- the SMTP servers ------------------------------------------------------------------------


@dataclass
class Sink:
    """What the SMTP servers kept (by Message-ID) and which faults they played."""

    rng: random.Random
    lock: threading.Lock = field(default_factory=threading.Lock)
    kept: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    on: bool = True
    scale: float = 1.0  # the chances above, multiplied

    def draw(self, stage: str) -> str | None:
        with self.lock:
            if not self.on:
                return None
            roll = self.rng.random()
        at = 0.0
        for fault, chance in SMTP_FAULTS.items():
            if _stage_of(fault) != stage:
                continue
            at += chance * self.scale
            if roll < at:
                with self.lock:
                    self.faults[fault] += 1
                return fault
        return None

    def keep(self, content: bytes) -> None:
        found = _MESSAGE_ID.search(content.split(b"\r\n\r\n", 1)[0])
        with self.lock:
            self.kept[found.group(1).decode() if found else "?"] += 1


def _stage_of(fault: str) -> str:
    if "MAIL" in fault:
        return "mail"
    if "RCPT" in fault:
        return "rcpt"
    return "data"


class FaultyHandler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        fault = self.sink.draw("mail")
        if fault == "421 at MAIL":
            return "421 4.3.2 Service not available, try again later"
        if fault == "drop at MAIL":
            server.transport.abort()
            return "250 OK"  # never reaches the client
        envelope.mail_from, envelope.mail_options = address, list(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.sink.draw("rcpt") == "451 at RCPT":
            return "451 4.3.0 Temporary lookup failure"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = bytes(envelope.original_content or envelope.content or b"")
        fault = self.sink.draw("data")
        if fault == "451 at end of DATA":
            return "451 4.3.0 Local error in processing"
        if fault == "drop before keeping":
            server.transport.abort()
            return "250 OK"
        if fault == "stall":
            await asyncio.sleep(1 + 2 * self.sink.rng.random())
        self.sink.keep(content)
        if fault == "drop after keeping":
            server.transport.abort()
        elif fault == "stall past the timeout":
            await asyncio.sleep(SMTP_TIMEOUT + 2)
        return "250 2.0.0 Ok: queued"


@contextlib.contextmanager
def smtp_servers(sink: Sink, count: int) -> Iterator[list[int]]:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    warnings.filterwarnings("ignore")
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    credentials = (LOGIN.encode(), PASSWORD.encode())

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == credentials
        return AuthResult(success=ok, handled=False)

    def factory() -> SMTP:
        return SMTP(
            FaultyHandler(sink),
            hostname="faults-smtp.local",
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=False,
        )

    loop = asyncio.new_event_loop()
    servers = [
        loop.run_until_complete(loop.create_server(factory, host="127.0.0.1", port=0)) for _ in range(count)
    ]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield [server.sockets[0].getsockname()[1] for server in servers]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


# -- the send workers (subprocesses) ---------------------------------------------------------


class Context:
    """Lambda's context for one invocation: the remaining time counts down from the Timeout."""

    function_name = "mailer-send"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mailer-send"
    aws_request_id = "faults"

    def __init__(self) -> None:
        self.started = time.monotonic()

    def get_remaining_time_in_millis(self) -> int:
        return int(max(0.0, FUNCTION_TIMEOUT - (time.monotonic() - self.started)) * 1000)


def arm_kills(rng: random.Random, chance: float, log: Path) -> None:
    """SIGKILL this worker (no cleanup) at the named points, each with `chance` per pass."""
    from mailer_core.adapters import smtp
    from mailer_core.sending import outcomes

    def die(point: str, message: str = "") -> None:
        with open(log, "a") as out:
            out.write(f"{point}\t{message}\n")
        os.kill(os.getpid(), signal.SIGKILL)

    claim = outcomes.claim

    def claim_then_die(job: Any, clock: Any) -> Any:
        got = claim(job, clock)
        if not isinstance(got, str) and rng.random() < chance:
            die("after claim", job.message_id)
        return got

    record_sent = outcomes.record_sent

    def die_before_record(message: Any, *args: Any, **kwargs: Any) -> None:
        if rng.random() < chance:
            die("before the record", message.message_id)
        record_sent(message, *args, **kwargs)

    data_from_spool = smtp._data_from_spool

    def data_then_die(client: Any, spool: Any, on_data_sent: Any = None) -> Any:
        if rng.random() < chance:  # the DATA command and part of the message, then nothing
            client.putcmd("data")
            client.getreply()
            client.send(next(iter(spool.chunks(512))))
            die("during data")
        if rng.random() < chance:

            def after_dot() -> None:
                die("after the final dot")

            return data_from_spool(client, spool, after_dot)
        return data_from_spool(client, spool, on_data_sent)

    outcomes.claim = claim_then_die  # type: ignore[assignment]
    outcomes.record_sent = die_before_record  # type: ignore[assignment]
    smtp._data_from_spool = data_then_die  # type: ignore[assignment]


def work(args: argparse.Namespace) -> None:
    """`--worker`: poll the send queue until killed or stdin closes, misbehaving as told."""
    import boto3
    from mailer_core.sending import outcomes

    from tests.support.api_client import load_handler
    from tests.support.sqs import sqs_event

    assert timedelta(seconds=LEASE) == outcomes.CLAIM_LEASE
    outcomes.RETRY_BASE_SECONDS = RETRY_BASE
    invoked = [0.0]  # when the running invocation began (monotonic), 0 between invocations

    def lambda_timeout() -> None:  # Lambda ends an invocation at its Timeout: no cleanup either
        while True:
            time.sleep(0.5)
            if invoked[0] and time.monotonic() - invoked[0] > FUNCTION_TIMEOUT:
                with open(Path(args.workdir) / "kills.log", "a") as out:
                    out.write("function timeout\t\n")
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=lambda_timeout, daemon=True).start()
    rng = random.Random(args.seed)
    arm_kills(rng, args.kill_chance, Path(args.workdir) / "kills.log")
    handler = load_handler("send")
    from mailer_core.rendering import personalize  # noqa: F401  (a Lambda's init: not timed)

    sqs = boto3.client("sqs")
    url, arn = os.environ["MAILER_SEND_QUEUE_URL"], "arn:aws:sqs:us-east-1:123456789012:mailer-send"
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    events = Path(args.workdir) / "events.log"
    while True:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=VISIBILITY, WaitTimeSeconds=1
        ).get("Messages", [])
        if not got:
            continue
        noted = []
        if rng.random() < args.fault_chance:  # SQS's at-least-once: a copy another worker may get now
            copied = rng.sample(got, k=min(len(got), rng.randint(1, 3)))
            for message in copied:
                sqs.send_message(QueueUrl=url, MessageBody=message["Body"])
            noted.append(f"copied\t{len(copied)}")
        event = sqs_event(list(got), arn)  # type: ignore[arg-type]
        invoked[0] = time.monotonic()
        result = handler.lambda_handler(event, Context())
        if rng.random() < args.fault_chance:  # the same batch delivered to this container again
            invoked[0] = time.monotonic()
            handler.lambda_handler(event, Context())
            noted.append(f"twice\t{len(got)}")
        invoked[0] = 0.0
        failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures") or []}
        done = [m for m in got if m["MessageId"] not in failed]
        if done and rng.random() < args.fault_chance:  # the delete is lost: SQS delivers them again
            noted.append(f"not deleted\t{len(done)}")
            done = []
        if done:
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(done)],
            )
        if noted:
            with open(events, "a") as out:
                out.write("".join(f"{line}\n" for line in noted))


class Workers:
    """The worker processes: replaced when they die, killed now and then from here."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.started = 0
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed_here = 0
        for _ in range(args.workers):
            self.procs.append(self._start())

    def _start(self) -> subprocess.Popen[bytes]:
        self.started += 1
        log = open(self.workdir / f"worker{self.started}.log", "wb")  # noqa: SIM115
        return subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                "--seed",
                str(self.args.seed * 1000 + self.started),
                "--kill-chance",
                str(self.args.kill_chance),
                "--fault-chance",
                str(self.args.fault_chance),
                "--workdir",
                str(self.workdir),
            ],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def replace_dead(self) -> None:
        for n, proc in enumerate(self.procs):
            if proc.poll() is not None:
                self.procs[n] = self._start()

    def kill_one(self, rng: random.Random) -> None:
        proc = rng.choice(self.procs)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            self.killed_here += 1
            with open(self.workdir / "kills.log", "a") as out:
                out.write("at a random moment\t\n")

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- this process: setup, composing, watching, the verdict -----------------------------------


def create_mailboxes(ports: list[int]) -> list[str]:
    from mailer_core.accounts.auth import Caller
    from mailer_core.mailboxes import api as mailboxes

    ids = []
    for n, port in enumerate(ports):
        view = mailboxes.create(
            Caller(ACCOUNT_ID, "mailerdemo", 501, True),
            {
                "sender_name": f"Faults {n}",
                "sender_email": LOGIN,
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "smtp_security": "none",
                "smtp_login": LOGIN,
                "smtp_password": PASSWORD,
                "rate_per_second": 100,
                "daily_cap": 1_000_000,
                "is_default": n == 0,
            },
        )
        ids.append(str(view["id"]))
    return ids


def compose_one(i: int, mailbox_ids: list[str], rng: random.Random) -> str:
    from mailer_core.accounts.auth import Caller
    from mailer_core.messages.compose import compose
    from mailer_core.messages.requests import parse_request

    from tests.support.fixtures.audiences import bulk_address, bulk_lead

    payload: dict[str, Any] = {"mailbox_id": mailbox_ids[i % len(mailbox_ids)]}
    if rng.random() < ENTITY_SHARE:
        lead = rng.randrange(LEADS)
        payload |= {"to": [bulk_address(lead)], "subject": SUBJECT, "html": HTML}
        payload["entity"] = {"type": "leads", "id": bulk_lead(lead)}
    else:
        payload |= {"to": [f"client{i}@example.com"], "subject": f"Offer {i}", "html": f"<p>Offer {i}</p>"}
    caller = Caller(ACCOUNT_ID, "mailerdemo", 501, True)
    return str(compose(parse_request(payload), caller)["id"])


def top_up(
    message_ids: list[str], n: int, mailbox_ids: list[str], rng: random.Random, sqs: Any, url: str
) -> int:
    """Compose messages, 50 at a time, while fewer than 200 jobs are on the queue (moto's
    ReceiveMessage reads the whole queue); the queue's depth after."""
    depth = queue_depth(sqs, url)
    while len(message_ids) < n and depth < 200:
        for _ in range(min(50, n - len(message_ids))):
            try:
                message_ids.append(compose_one(len(message_ids), mailbox_ids, rng))
            except Exception as exc:  # compose itself is not under test here
                print(f"  compose failed, again: {exc}", flush=True)
        depth = queue_depth(sqs, url)
    return depth


def queue_depth(sqs: Any, url: str) -> int:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(got.get(name, 0)) for name in names)


def open_count() -> int:
    """Messages not in a final state (the by_status index, one count query per status)."""
    from mailer_core.store.models import MessageModel

    return sum(
        MessageModel.by_status.count(f"{ACCOUNT_ID}#{status}")
        for status in ("queued", "scheduled", "sending", "held")
    )


def kommo_bursts(standin: Any, rng: random.Random, stop: threading.Event, played: Counter[str]) -> None:
    """A burst is Kommo failing for a while, not a debt: one starts only once the last is taken.
    (Stacked up, the bursts of a quiet tail all fell on the one job left, at each of its
    deliveries, until it was dead-lettered: an outage of half an hour, not a burst.)"""
    while not stop.wait(rng.uniform(30, 60)):
        if standin.pending_failures:
            continue
        status, count = rng.choice([429, 500, 502, 503, 504]), rng.randint(3, 12)
        body = (
            {"title": "Too Many Requests", "status": 429, "retry_after": KOMMO_WAIT}
            if status == 429
            else None
        )
        standin.fail_next(status, count=count, body=body)
        played[f"{status} x{count}"] += 1
        played[str(status)] += count


def dead_letters(sqs: Any) -> dict[str, int]:
    """The send jobs in the send queue's dead-letter queue: message id -> receives."""
    url = os.environ.get("MAILER_SEND_DLQ_URL") or sqs.get_queue_url(QueueName=_dlq_name(sqs))["QueueUrl"]
    found: dict[str, int] = {}
    while got := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=600
    ).get("Messages"):
        for m in got:
            body = json.loads(m["Body"])
            found[str(body.get("message_id"))] = int(m["Attributes"].get("ApproximateReceiveCount", 0))
    return found


def _dlq_name(sqs: Any) -> str:
    attrs = sqs.get_queue_attributes(
        QueueUrl=os.environ["MAILER_SEND_QUEUE_URL"], AttributeNames=["RedrivePolicy"]
    )
    return str(json.loads(attrs["Attributes"]["RedrivePolicy"])["deadLetterTargetArn"]).rsplit(":", 1)[1]


def most_per_second(times: list[float]) -> int:
    """The most requests in any one second (a window sliding over the requests' times)."""
    times, most, start = sorted(times), 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def run(args: argparse.Namespace) -> None:
    began = time.perf_counter()
    rng = random.Random(args.seed)
    sink = Sink(random.Random(args.seed + 1), on=not args.calm, scale=args.smtp_faults)
    workdir = Path(tempfile.mkdtemp(prefix="faults-"))
    started: list[Child] = []
    stop = threading.Event()
    bursts: Counter[str] = Counter()
    workers: Workers | None = None
    try:
        started.append(Child("moto"))
        started.append(Child("moto", "--serial", name="moto-dynamodb"))
        point_at_moto(f"http://127.0.0.1:{started[0].port}", f"http://127.0.0.1:{started[1].port}")
        send_queue, _ = create_stack()
        os.environ["MAILER_SMTP_TIMEOUT_SECONDS"] = str(SMTP_TIMEOUT)
        from mailer_core.adapters import aws
        from mailer_core.base.config import reset_settings

        from devstack.kommo_standin.server import KommoStandIn
        from tests.support.fixtures.audiences import bulk_seed
        from tests.support.kommo_accounts import save_account_with_token

        with (
            KommoStandIn(bulk_seed(LEADS), rate_limit_wait=KOMMO_WAIT) as standin,
            smtp_servers(sink, 2) as ports,
        ):
            standin.add_token(ACCOUNT_ID, "faults-token")
            os.environ["MAILER_KOMMO_BASE_URL"] = standin.base_url
            reset_settings()
            save_account_with_token("faults-token")
            mailbox_ids = create_mailboxes(ports)
            sqs = aws.client("sqs")
            print(f"setup {time.perf_counter() - began:.1f} s; logs in {workdir}", flush=True)
            workers = Workers(args, workdir)
            if not args.calm:
                threading.Thread(target=kommo_bursts, args=(standin, rng, stop, bursts), daemon=True).start()
            message_ids: list[str] = []
            t0, last_kill, progress_at, last_open = (
                time.perf_counter(),
                time.monotonic(),
                time.monotonic(),
                -1,
            )
            next_kill, empty = rng.uniform(60, 120), 0
            while True:
                depth = top_up(message_ids, args.messages, mailbox_ids, rng, sqs, send_queue["url"])
                workers.replace_dead()
                if time.monotonic() - last_kill > next_kill and not args.calm:
                    workers.kill_one(rng)
                    workers.replace_dead()
                    last_kill, next_kill = time.monotonic(), rng.uniform(60, 120)
                opened = open_count()
                if opened != last_open:
                    progress_at, last_open = time.monotonic(), opened
                elapsed = time.perf_counter() - t0
                print(
                    f"  {elapsed:6.0f} s: composed {len(message_ids)}, open {opened}, queue {depth}, "
                    f"kept {sum(sink.kept.values())}",
                    flush=True,
                )
                if len(message_ids) >= args.messages and depth == 0 and opened == 0:
                    break
                empty = empty + 1 if len(message_ids) >= args.messages and depth == 0 else 0
                if empty >= 3:
                    break  # no job left anywhere (visible, in flight or delayed): what is open is stuck
                if time.monotonic() - progress_at > 2 * VISIBILITY + 60:  # two redeliveries' worth
                    print("  nothing moved for 13 minutes: stopping", flush=True)
                    break
                time.sleep(2)
            wall = time.perf_counter() - t0
            stop.set()
            workers.stop()
            sink.on = False
            kommo_times = [
                r.time for r in standin.requests if r.path.startswith("/api/") and r.status not in (403,)
            ]
            own_429 = sum(1 for r in standin.requests if r.status == 429) - bursts["429"]
            dead = dead_letters(sqs)
        verdict(
            args, message_ids, sink, workdir, wall, kommo_times, own_429, bursts, workers, began, dead, depth
        )
    finally:
        stop.set()
        if workers is not None:
            workers.stop()
        for child in reversed(started):
            child.stop()


def verdict(
    args: argparse.Namespace,
    message_ids: list[str],
    sink: Sink,
    workdir: Path,
    wall: float,
    kommo_times: list[float],
    own_429: int,
    bursts: Counter[str],
    workers: Workers,
    began: float,
    dead: dict[str, int],
    depth: int,
) -> None:
    from mailer_core.store.models import MessageModel

    messages = {m.message_id: m for m in MessageModel.query(ACCOUNT_ID)}
    statuses = Counter(messages[i].status for i in message_ids)
    header_of = {i: str(messages[i].header_message_id) for i in message_ids}
    kept = sink.kept
    duplicates = sum(max(0, kept[h] - 1) for h in header_of.values())
    final = ("sent", "failed", "canceled")
    lost = [
        i for i in message_ids if kept[header_of[i]] == 0 and messages[i].status not in ("failed", "canceled")
    ]
    stuck = [i for i in message_ids if messages[i].status not in final]
    arrived_but_failed = sum(1 for i in message_ids if kept[header_of[i]] and messages[i].status == "failed")
    reasons = Counter(
        re.sub(r"\d+", "N", str(messages[i].last_error or ""))[:90]
        for i in message_ids
        if messages[i].status == "failed"
    )
    kills = Counter(line.split("\t")[0] for line in _lines(workdir / "kills.log"))
    events: Counter[str] = Counter()
    for line in _lines(workdir / "events.log"):
        kind, number = line.split("\t")
        events[kind] += int(number)
    print(
        f"time: {wall:.0f} s for {len(message_ids)} messages ({len(message_ids) / wall:.1f}/s), "
        f"{time.perf_counter() - began:.0f} s in all"
    )
    print(f"statuses: {dict(statuses)}; send jobs dead-lettered: {len(dead)}")
    arrived = len([h for h in header_of.values() if kept[h]])
    print(f"kept by the SMTP servers: {sum(kept.values())} emails, {arrived} messages")
    print(f"SMTP faults played: {dict(sink.faults)}")
    print(f"workers killed: {sum(kills.values())} ({dict(kills)}); {workers.started} workers started")
    print(
        f"SQS faults: batches given twice {events['twice']} records, copies queued {events['copied']}, "
        f"deletes lost {events['not deleted']} records"
    )
    played = ", ".join(f"{k}: {v}" for k, v in sorted(bursts.items()) if "x" not in k)
    print(f"Kommo bursts: {sum(v for k, v in bursts.items() if 'x' in k)} ({played} requests)")
    print(f"Kommo requests: {len(kommo_times)}, the stand-in's own 429s (over its limit): {max(0, own_429)}")
    most = most_per_second(kommo_times)
    print(f"Kommo requests per second, most in any second (account {ACCOUNT_ID}): {most} (limit 7)")
    print(f"failed, by reason ({sum(reasons.values())}; {arrived_but_failed} of them arrived nonetheless):")
    for reason, count in reasons.most_common(12):
        print(f"  {count:>6}  {reason}")
    for i in stuck[:20]:
        m = messages[i]
        why = f"its job dead-lettered after {dead[i]} receives" if i in dead else "no job left for it"
        if depth:
            why = f"{depth} jobs still on the queue when the run stopped"
        last = m.history[-1] if m.history else None
        print(
            f"  stuck {i}: {m.status} since {last.event if last else '?'} ({last.detail if last else ''}), "
            f"attempts {m.attempts}; {why}"
        )
    for i in lost[:10]:
        print(f"  lost {i}: {messages[i].status}")
    dups = [i for i in message_ids if kept[header_of[i]] > 1]
    for i in dups[:10]:
        m = messages[i]
        print(f"  duplicate {i}: kept {kept[header_of[i]]} times, {m.status}: {m.last_error}")
    print(
        f"faults: {len(message_ids)} messages, duplicates {duplicates}, lost {len(lost)}, stuck {len(stuck)}"
    )


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line] if path.exists() else []


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument(
        "--kill-chance",
        type=float,
        default=None,
        help="per kill point and pass (default: 10 kills per point over --messages, at most 0.02)",
    )
    parser.add_argument("--fault-chance", type=float, default=0.02, help="per batch, for each SQS fault")
    parser.add_argument("--smtp-faults", type=float, default=1.0, help="the SMTP faults' chances, multiplied")
    parser.add_argument("--calm", action="store_true", help="no faults at all: the control run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kill_chance is None:
        args.kill_chance = min(0.02, 10 / max(1, args.messages))
    if args.calm:
        args.kill_chance = args.fault_chance = 0.0
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        work(args)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    run(args)


if __name__ == "__main__":
    main()
