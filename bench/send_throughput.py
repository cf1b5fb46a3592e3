"""Send throughput: N messages through the whole send pipeline vs raw smtplib, same SMTP server.

    .venv/bin/python bench/send_throughput.py [--messages 200] [--smtp-delay-ms 100] [--batch-size 10]

moto (server mode) and a slow SMTP server (bench/servers.py: AUTH required, the end of DATA
answered after --smtp-delay-ms, like a real provider) run in their own processes, so this
process's CPU time is the worker's alone. Setup (stack, a mailbox with its rate limits lifted,
composing the messages, one warm-up message) is not measured. Then:

1. pipeline: one worker receives batches from the send queue as Lambda's poller does, invokes
   functions/send/handler.py with the SQS event and deletes the records that succeeded,
   until all N messages are sent; every message must end `sent` and reach the server once;
2. raw: the same N messages, built and serialized before timing, sent with smtplib over one
   connection (one login) to the same server.

It prints AWS requests per message (by operation), CPU per message, where the wall time went,
and last `pipeline/raw throughput ratio: X`. bench/README.md explains each figure.
`--profile` adds a CPU profile (cProfile on process time) of the pipeline phase on stderr; it
slows that phase down several times, so its figures are for finding hot spots only.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.util
import os
import pstats
import queue
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, ModuleType
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
SERVERS = Path(__file__).resolve().parent / "servers.py"
ACCOUNT_ID = 31000001
USER_ID = 501
LOGIN = "anna@example.com"
PASSWORD = "bench-app-password"
SENDER_NAME = "Анна Смирнова"


# -- the servers, in their own processes -----------------------------------------------------


class Child:
    """A server process from bench/servers.py, talked to over its stdin and stdout."""

    def __init__(self, *args: str, name: str = "", ready_timeout: float = 60.0) -> None:
        self.name = name or args[0]
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVERS), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            first = self._next_line(ready_timeout)
            if not first.startswith("PORT "):
                raise RuntimeError(f"{self.name} server said {first!r} instead of its port")
        except BaseException:
            self.stop()
            raise
        self.port = int(first.split()[1])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def _next_line(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.name} server did not answer within {timeout} s") from None
        if line is None:
            raise RuntimeError(f"{self.name} server exited (code {self.proc.poll()})")
        return line

    def ask(self, command: str, timeout: float = 10.0) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._next_line(timeout)

    def cpu_seconds(self) -> float | None:
        """CPU time the server process used so far (Linux /proc); None where unknown."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def stop(self) -> None:
        """Close its stdin (it exits on EOF); terminate, then kill, if it lingers."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass(frozen=True)
class SmtpStats:
    messages: int
    distinct_ids: int
    bytes: int
    connections: int


def smtp_stats(server: Child) -> SmtpStats:
    _, *numbers = server.ask("stats").split()
    return SmtpStats(*(int(n) for n in numbers))


# -- instruments -----------------------------------------------------------------------------


@dataclass
class Meter:
    """AWS calls and SMTP replies, counted and timed by patching botocore and smtplib.

    botocore's BaseClient serves every client: the core's boto3 clients, PynamoDB's own
    botocore client (which calls `_make_api_call` directly) and the poller's. `_make_api_call`
    runs once per API call (validation, serialization, signing, HTTP, parsing, retries inside),
    Endpoint `_send` once per HTTP attempt. smtplib's `getreply` is where a client waits for
    the server. Calls made on other threads than the main one are keyed "<who>-bg": they
    overlap the main thread, so their time is not part of the critical path.
    """

    who: str = "setup"
    calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    call_time: defaultdict[tuple[str, str, str], float] = field(default_factory=lambda: defaultdict(float))
    http_time: defaultdict[tuple[str, str, str], float] = field(default_factory=lambda: defaultdict(float))
    call_cpu: defaultdict[tuple[str, str, str], float] = field(default_factory=lambda: defaultdict(float))
    http_attempts: int = 0
    smtp_replies: int = 0
    smtp_wait: float = 0.0
    _local: threading.local = field(default_factory=threading.local)

    def snapshot(self) -> Meter:
        return Meter(
            calls=self.calls.copy(),
            call_time=defaultdict(float, self.call_time),
            http_time=defaultdict(float, self.http_time),
            call_cpu=defaultdict(float, self.call_cpu),
            http_attempts=self.http_attempts,
            smtp_replies=self.smtp_replies,
            smtp_wait=self.smtp_wait,
        )

    def reset(self) -> None:
        self.calls.clear()
        self.call_time.clear()
        self.http_time.clear()
        self.call_cpu.clear()
        self.http_attempts = self.smtp_replies = 0
        self.smtp_wait = 0.0

    def install(self) -> None:
        from botocore.client import BaseClient
        from botocore.endpoint import Endpoint

        meter = self
        make_api_call, send = getattr(BaseClient, "_make_api_call"), getattr(Endpoint, "_send")  # noqa: B009
        getreply = smtplib.SMTP.getreply

        def counted_make_api_call(client: Any, operation_name: str, api_params: Any) -> Any:
            main = threading.current_thread() is threading.main_thread()
            key = (
                getattr(meter._local, "who", None) or (meter.who if main else f"{meter.who}-bg"),
                client.meta.service_model.service_name,
                operation_name,
            )
            meter.calls[key] += 1
            meter._local.key = key
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return make_api_call(client, operation_name, api_params)
            finally:
                meter.call_time[key] += time.perf_counter() - start
                meter.call_cpu[key] += time.thread_time() - cpu

        def timed_send(endpoint: Any, request: Any) -> Any:
            meter.http_attempts += 1
            start = time.perf_counter()
            try:
                return send(endpoint, request)
            finally:
                key = getattr(meter._local, "key", ("setup", "", ""))
                meter.http_time[key] += time.perf_counter() - start

        def timed_getreply(client: smtplib.SMTP) -> tuple[int, bytes]:
            meter.smtp_replies += 1
            start = time.perf_counter()
            try:
                return getreply(client)
            finally:
                meter.smtp_wait += time.perf_counter() - start

        setattr(BaseClient, "_make_api_call", counted_make_api_call)  # noqa: B010
        setattr(Endpoint, "_send", timed_send)  # noqa: B010
        setattr(smtplib.SMTP, "getreply", timed_getreply)  # noqa: B010

    def total_calls(self, who: str | None = None) -> int:
        """Calls by `who`, on any thread."""
        return sum(n for (w, _, _), n in self.calls.items() if who is None or w.split("-")[0] == who)

    def total(self, times: dict[tuple[str, str, str], float], who: str) -> float:
        """Seconds of `who` on the main thread only."""
        return sum(t for (w, _, _), t in times.items() if w == who)


# -- the stack, the mailbox and the messages (setup, not measured) ---------------------------


def point_at_moto(endpoint: str, dynamodb_endpoint: str) -> None:
    """Fake credentials and moto's endpoints for every client; before mailer_core is imported.

    DynamoDB has a moto process of its own, as it is a service of its own in AWS: moto's
    ReceiveMessage reads the whole queue three times for each message it returns (about
    200 ms of CPU for a batch of 10 from a queue of 200), and in one process with DynamoDB it
    would hold up the send function's DynamoDB calls, which in AWS never wait for SQS.
    """
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ENDPOINT_URL_DYNAMODB=dynamodb_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    for path in (ROOT, ROOT / "shared"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def create_stack() -> tuple[dict[str, str], Any]:
    """The template's resources in moto, the functions' environment exported here; the send
    queue and the send function's definition (its timeout, as the context reports it)."""
    import boto3
    from mailer_core.base.config import reset_settings
    from mailer_core.store import models

    from devstack.resources import create_stack as create
    from devstack.resources import function_environment, load_template
    from devstack.template import function_definitions

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
    [send_function] = [
        f for f in function_definitions(load_template(), stack) if f.logical_id == "SendFunction"
    ]
    return {"url": stack.refs["SendQueue"], "arn": stack.attrs[("SendQueue", "Arn")]}, send_function


def load_send_handler(log_file: IO[str]) -> ModuleType:
    """functions/send/handler.py, imported as Lambda would, with its log lines sent to a file.

    The lines are still formatted (that CPU is the core's); they just stay off the screen.
    """
    from mailer_core.base.logs import logger

    handler = logger.registered_handler
    if hasattr(handler, "setStream"):
        handler.setStream(log_file)
    spec = importlib.util.spec_from_file_location("bench_send_handler", ROOT / "functions/send/handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def message_content(i: int) -> dict[str, Any]:
    """A realistic commercial offer (~2 KB of HTML, Cyrillic, links), different for each i."""
    rows = "".join(
        f"<tr><td>Позиция {k}</td><td>{(i * 7 + k) % 90 + 10} 000 ₽</td></tr>" for k in range(1, 9)
    )
    html = (
        f"<h1>Здравствуйте, Иван {i}!</h1>"
        "<p>Как договаривались, направляю коммерческое предложение по вашему запросу. "
        "Цены действуют до конца месяца; доставка по Москве бесплатно.</p>"
        f"<table>{rows}</table>"
        f"<p><a href='https://example.com/offer/{i}'>Открыть предложение</a> · "
        f"<a href='https://example.com/catalog?lead={i}'>Каталог</a></p>"
        "<p>С уважением,<br>Анна Смирнова<br>ООО «Пример», +7 495 000-00-00</p>"
    )
    return {
        "to": [f"client{i}@example.com"],
        "subject": f"Коммерческое предложение №{i}",
        "html": html,
    }


def create_mailbox(smtp_port: int) -> str:
    from mailer_core.accounts.auth import Caller
    from mailer_core.mailboxes import api as mailboxes

    view = mailboxes.create(
        Caller(ACCOUNT_ID, "mailerbench", USER_ID, False),
        {
            "sender_name": SENDER_NAME,
            "sender_email": LOGIN,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
            "smtp_security": "none",
            "smtp_login": LOGIN,
            "smtp_password": PASSWORD,
            "rate_per_second": 100,  # the most the API allows: never the bottleneck here
            "daily_cap": 1_000_000,
            "is_default": True,
        },
    )
    return str(view["id"])


def compose(mailbox_id: str, indexes: range) -> list[str]:
    from mailer_core.accounts.auth import Caller
    from mailer_core.messages import compose as messages

    caller = Caller(ACCOUNT_ID, "mailerbench", USER_ID, False)
    return [
        str(messages.compose_json(caller, {"mailbox_id": mailbox_id, **message_content(i)})["id"])
        for i in indexes
    ]


# -- the two measured runs -------------------------------------------------------------------


@dataclass
class PipelineRun:
    wall: float = 0.0
    cpu_loop: float = 0.0  # the whole worker loop: handler + poller stand-in
    cpu_core: float = 0.0  # inside lambda_handler only
    batches: int = 0
    records: int = 0
    server_cpu: dict[str, float] = field(default_factory=dict)  # by server, during the run


def run_pipeline(
    handler: ModuleType,
    function: Any,
    sqs: Any,
    send_queue: dict[str, str],
    n: int,
    batch_size: int,
    meter: Meter,
) -> PipelineRun:
    """One worker: receive a batch, invoke the send function, delete what succeeded; until n succeed."""
    from devstack.functions import FakeLambdaContext

    run = PipelineRun()
    deadline = time.monotonic() + 60 + n * 5
    # Lambda's SQS pollers are not the function: they fetch the next batch and delete the
    # finished one while the function works. One background thread plays that part here.
    poller = ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="poller", initializer=_as_poller, initargs=(meter,)
    )

    def receive() -> list[dict[str, Any]]:
        return list(
            sqs.receive_message(
                QueueUrl=send_queue["url"],
                MaxNumberOfMessages=min(batch_size, 10),
                AttributeNames=["All"],
                WaitTimeSeconds=1,
            ).get("Messages", [])
        )

    def delete(got: list[dict[str, Any]]) -> None:
        sqs.delete_message_batch(
            QueueUrl=send_queue["url"],
            Entries=[{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(got)],
        )

    wall0, cpu0 = time.perf_counter(), time.process_time()
    next_batch = poller.submit(receive)
    try:
        while run.records < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {run.records} of {n} records succeeded before the deadline")
            got = next_batch.result()
            next_batch = poller.submit(receive)
            if not got:
                continue
            event = {"Records": [_record(m, send_queue["arn"]) for m in got]}
            meter.who = "core"
            cpu = time.process_time()
            try:
                # A fresh context per invocation: its remaining time counts down from the template's Timeout.
                result = handler.lambda_handler(event, FakeLambdaContext(function)) or {}
            finally:
                run.cpu_core += time.process_time() - cpu
                meter.who = "setup"
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures") or []}
            if failed:
                raise RuntimeError(f"the send function failed {len(failed)} records of a batch")
            poller.submit(delete, got)
            run.batches += 1
            run.records += len(got)
    finally:
        poller.shutdown(wait=True, cancel_futures=True)
    run.wall, run.cpu_loop = time.perf_counter() - wall0, time.process_time() - cpu0
    meter.who = "setup"
    return run


def _as_poller(meter: Meter) -> None:
    meter._local.who = "poller"


def _record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One record of the SQS event Lambda sends."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


def verify_sent(message_ids: list[str]) -> None:
    from mailer_core.store.models import MessageModel

    statuses = Counter(m.status for m in MessageModel.batch_get([(ACCOUNT_ID, i) for i in message_ids]))
    if statuses != Counter({"sent": len(message_ids)}):
        raise RuntimeError(f"not every message was sent: {dict(statuses)}")


def prebuilt_messages(message_ids: list[str], indexes: range) -> list[tuple[list[str], bytes]]:
    """The same emails the pipeline sent (contents and Message-IDs), as bytes, before timing."""
    from mailer_core.adapters.mime import OutgoingEmail, build_message, envelope_recipients
    from mailer_core.store.models import MessageModel

    stored = {m.message_id: m for m in MessageModel.batch_get([(ACCOUNT_ID, i) for i in message_ids])}
    built = []
    for message_id, i in zip(message_ids, indexes, strict=True):
        content = message_content(i)
        email = OutgoingEmail(
            sender_name=SENDER_NAME,
            sender_email=LOGIN,
            to=tuple(content["to"]),
            subject=content["subject"],
            html=content["html"],
            message_id=stored[message_id].header_message_id,
            date=datetime.now(UTC),
        )
        mime = build_message(email)
        built.append((envelope_recipients(email), mime.as_bytes(policy=mime.policy.clone(linesep="\r\n"))))
    return built


def run_raw(port: int, messages: list[tuple[list[str], bytes]]) -> float:
    """Wall seconds to send `messages` over one smtplib connection, login included."""
    start = time.perf_counter()
    client = smtplib.SMTP("127.0.0.1", port, timeout=30)
    client.ehlo()
    client.login(LOGIN, PASSWORD)
    for recipients, data in messages:
        refused = client.sendmail(LOGIN, recipients, data)
        if refused:
            raise RuntimeError(f"raw send refused {refused}")
    client.quit()
    return time.perf_counter() - start


# -- the report ------------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    run: PipelineRun,
    pipeline: Meter,
    pipeline_smtp: SmtpStats,
    raw_wall: float,
    raw: Meter,
    raw_smtp: SmtpStats,
) -> None:
    n = args.messages
    ms = 1000.0 / n  # seconds in total -> milliseconds per message
    pipeline_rate, raw_rate = n / run.wall, n / raw_wall
    print(f"messages: {n}   SMTP reply delay: {args.smtp_delay_ms:g} ms   batch size: {args.batch_size}")
    print(
        f"pipeline: {run.wall:.2f} s, {pipeline_rate:.2f} msg/s "
        f"({run.batches} batches, {pipeline_smtp.connections} SMTP connections)"
    )
    print(f"raw smtplib: {raw_wall:.2f} s, {raw_rate:.2f} msg/s ({raw_smtp.connections} SMTP connection)")
    print(f"message size on the wire: {pipeline_smtp.bytes / n / 1024:.1f} KiB on average")
    print()
    print(
        f"AWS requests per message: {pipeline.total_calls() / n:.2f} "
        f"(send function {pipeline.total_calls('core') / n:.2f}, "
        f"SQS poller stand-in {pipeline.total_calls('poller') / n:.2f})"
    )
    print(
        f"  {'by':<11} {'service':<9} {'operation':<19} {'per msg':>7} {'ms/call':>8} {'HTTP':>6} {'CPU':>5}"
    )
    for key, count in sorted(pipeline.calls.items(), key=lambda kv: (kv[0][0], -kv[1])):
        who, service, operation = key
        per_call = 1000.0 / count
        print(
            f"  {who.replace('core', 'function'):<11} {service:<9} {operation:<19} {count / n:>7.2f} "
            f"{pipeline.call_time[key] * per_call:>8.1f} {pipeline.http_time[key] * per_call:>6.1f} "
            f"{pipeline.call_cpu[key] * per_call:>5.1f}"
        )
    retries = pipeline.http_attempts - pipeline.total_calls()
    if retries:
        print(f"  HTTP attempts beyond one per request (botocore retries): {retries}")
    print(
        f"SMTP replies waited for per message: pipeline {pipeline.smtp_replies / n:.2f}, "
        f"raw {raw.smtp_replies / n:.2f}"
    )
    print()
    aws_core = pipeline.total(pipeline.call_time, "core")
    rest = run.wall - pipeline.smtp_wait - aws_core
    print(
        f"pipeline time per message: {run.wall * ms:.1f} ms = SMTP replies {pipeline.smtp_wait * ms:.1f}"
        f" + AWS calls on the function's main thread {aws_core * ms:.1f} + the rest {rest * ms:.1f}"
    )
    print(
        "  overlapping it, AWS calls by the function's look-ahead and records "
        f"{pipeline.total(pipeline.call_time, 'core-bg') * ms:.1f}"
        f", by the SQS poller stand-in {pipeline.total(pipeline.call_time, 'poller') * ms:.1f}"
    )
    print(
        f"raw time per message: {raw_wall * ms:.1f} ms = SMTP replies {raw.smtp_wait * ms:.1f}"
        f" + the rest {(raw_wall - raw.smtp_wait) * ms:.1f}"
    )
    aws_cpu = sum(t for (who, _, _), t in pipeline.call_cpu.items() if who.split("-")[0] == "core")
    print(
        f"core CPU per message: {run.cpu_core * ms:.2f} ms = inside boto3/botocore calls {aws_cpu * ms:.2f}"
        f" + the rest {(run.cpu_core - aws_cpu) * ms:.2f}"
        f" (worker loop with the poller: {run.cpu_loop * ms:.2f})"
    )
    if run.server_cpu:
        servers_cpu = ", ".join(f"{name} {seconds * ms:.1f} ms" for name, seconds in run.server_cpu.items())
        print(f"server processes' CPU per message during the pipeline run: {servers_cpu}")
    print(f"pipeline/raw throughput ratio: {pipeline_rate / raw_rate:.2f}")


# -- main ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Send throughput: the pipeline against raw smtplib.")
    parser.add_argument("--messages", type=int, default=200, help="messages per run (default 200)")
    parser.add_argument(
        "--smtp-delay-ms", type=float, default=100.0, help="SMTP server's delay before answering DATA"
    )
    parser.add_argument(
        "--batch-size", type=int, default=10, help="SQS batch per invocation (the template's BatchSize)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the pipeline run (on stderr)")
    parser.add_argument("--profile-out", metavar="PATH", help="with --profile, also save the pstats file")
    args = parser.parse_args()
    if args.messages < 1 or not 1 <= args.batch_size <= 10 or args.smtp_delay_ms < 0:
        parser.error("need --messages >= 1, 1 <= --batch-size <= 10 and --smtp-delay-ms >= 0")
    return args


@dataclass(frozen=True)
class Servers:
    moto: Child  # SQS, S3, KMS, Scheduler: every service but DynamoDB
    dynamodb: Child  # moto too, in a process of its own (see point_at_moto)
    smtp: Child

    def all(self) -> tuple[Child, ...]:
        return (self.moto, self.dynamodb, self.smtp)


@contextlib.contextmanager
def servers(delay_ms: float) -> Iterator[Servers]:
    started: list[Child] = []
    try:
        started.append(Child("moto"))
        started.append(Child("moto", name="moto-dynamodb"))
        started.append(Child("smtp", "--delay-ms", str(delay_ms), "--login", LOGIN, "--password", PASSWORD))
        yield Servers(*started)
    finally:
        for child in reversed(started):
            child.stop()


def profiled(args: argparse.Namespace, body: Callable[[], PipelineRun]) -> PipelineRun:
    """Run `body`, under cProfile with --profile: the top calls and time by package on stderr."""
    if not args.profile:
        return body()
    profiler = cProfile.Profile(time.process_time)  # CPU time: the waits are measured apart
    try:
        return profiler.runcall(body)
    finally:
        if args.profile_out:
            profiler.dump_stats(args.profile_out)
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(25)
        by_package: Counter[str] = Counter()
        for (filename, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
            by_package[_package(filename, name)] += row[2]  # tottime: own time, no double counting
        print("own CPU time by package (inflated by the profiler):", file=sys.stderr)
        for package, seconds in by_package.most_common(20):
            print(f"  {seconds:8.3f} s  {package}", file=sys.stderr)


def _package(filename: str, name: str) -> str:
    if filename == "~":
        return "socket I/O" if any(w in name for w in ("recv", "sendall", "connect")) else "builtins (C)"
    path = Path(filename)
    parts = path.parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    if str(ROOT) in filename:
        return str(path.relative_to(ROOT).parent)
    return f"stdlib {path.stem}"


def measure(args: argparse.Namespace, started: Servers, log_file: IO[str]) -> None:
    """Setup, the pipeline run, the raw run, the checks and the report."""
    import boto3

    n, warmup = args.messages, 1
    smtp = started.smtp
    send_queue, send_function = create_stack()
    handler = load_send_handler(log_file)
    sqs = boto3.session.Session().client("sqs")
    meter = Meter()
    meter.install()
    mailbox_id = create_mailbox(smtp.port)

    # Warm-up: one message through the same loop, so that imports and client creation
    # (a Lambda cold start, paid once per container) stay out of the figures.
    warm_ids = compose(mailbox_id, range(n, n + warmup))
    run_pipeline(handler, send_function, sqs, send_queue, warmup, args.batch_size, meter)
    verify_sent(warm_ids)

    indexes = range(n)
    message_ids = compose(mailbox_id, indexes)
    smtp.ask("reset")
    meter.reset()
    before = [child.cpu_seconds() for child in started.all()]
    run = profiled(
        args, lambda: run_pipeline(handler, send_function, sqs, send_queue, n, args.batch_size, meter)
    )
    for child, start in zip(started.all(), before, strict=True):
        end = child.cpu_seconds()
        if start is not None and end is not None:
            run.server_cpu[child.name] = end - start
    pipeline_meter = meter.snapshot()
    pipeline_smtp = smtp_stats(smtp)
    verify_sent(message_ids)
    if (pipeline_smtp.messages, pipeline_smtp.distinct_ids) != (n, n):
        raise RuntimeError(f"the SMTP server got {pipeline_smtp} from the pipeline; expected {n} messages")

    raw_messages = prebuilt_messages(message_ids, indexes)
    smtp.ask("reset")
    meter.reset()
    raw_wall = run_raw(smtp.port, raw_messages)
    raw_smtp = smtp_stats(smtp)
    if (raw_smtp.messages, raw_smtp.distinct_ids) != (n, n):
        raise RuntimeError(f"the SMTP server got {raw_smtp} from raw smtplib; expected {n} messages")
    report(args, run, pipeline_meter, pipeline_smtp, raw_wall, meter, raw_smtp)


def main() -> None:
    args = parse_args()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    with servers(args.smtp_delay_ms) as started, tempfile.TemporaryFile("w+") as log_file:
        point_at_moto(f"http://127.0.0.1:{started.moto.port}", f"http://127.0.0.1:{started.dynamodb.port}")
        try:
            measure(args, started, log_file)
        except Exception:
            log_file.seek(0)
            tail = log_file.read().splitlines()[-20:]
            if tail:
                print("the send function's last log lines:", *tail, sep="\n  ", file=sys.stderr)
            raise


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
