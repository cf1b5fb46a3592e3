"""Memory and time of sending an email with a large attachment, streamed and in memory.

An email may carry 100 MB of attachments (137 MB as base64). The send worker streams them:
`mime.spool` writes the message to a temporary file, reading each file in 64 KB pieces, and
the SMTP transport sends the spool line by line. This script measures that path against the
standard library's in-memory path (the file's bytes in the message, `as_bytes`, smtplib's
`data`), both sending to an SMTP server in another process that discards what it gets.

    python bench/attachment_memory.py [--mb 100] [--skip-in-memory]

Each path runs in a fresh interpreter so that peak RSS (ru_maxrss) is its own. It prints the
message size, the seconds spent writing and sending (wall clock; the SMTP server, one asyncio
process, is often the slower side) and the CPU seconds this side used (what a Lambda function
pays for), Python's peak allocations (tracemalloc, which slows the run) and the peak RSS.
Aim: the streamed path stays within tens of MB whatever the size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SINK = """
import socket, sys
from aiosmtpd.controller import Controller
class Discard:
    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 discarded"
with socket.socket() as probe:  # a free port (aiosmtpd cannot be started on port 0)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
controller = Controller(Discard(), hostname="127.0.0.1", port=port, data_size_limit=0)
controller.start()
print(port, flush=True)
sys.stdin.read()  # until the benchmark ends
"""

RUN = """
import resource, sys, time, tracemalloc
from datetime import UTC, datetime
sys.path.insert(0, sys.argv[1])
from mailer_core.adapters.mime import Attachment, OutgoingEmail, build_message, spool
from mailer_core.adapters.smtp import SmtpSettings, open_session
from mailer_core.base.network_addresses import LOOPBACK_ALLOWED
path, port, mode = sys.argv[2], int(sys.argv[3]), sys.argv[4]
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
started, cpu_start = time.perf_counter(), time.process_time()
if mode == "streamed":
    attachment = Attachment("Большой файл.bin", open=lambda: open(path, "rb"))
else:
    attachment = Attachment("Большой файл.bin", data=open(path, "rb").read())
email = OutgoingEmail(
    sender_name="Bench", sender_email="bench@sender.test", to=("to@client.test",), subject="big",
    html="<p>attached</p>", message_id="<bench@sender.test>", date=datetime.now(UTC),
    attachments=(attachment,),
)
message = build_message(email)
size = spool(message).size if mode == "streamed" else len(message.as_bytes())
written = time.perf_counter()
settings = SmtpSettings(
    host="127.0.0.1",
    port=port,
    security="none",
    login="",
    password="",
    timeout=120,
    addresses=LOOPBACK_ALLOWED,  # the sink listens on 127.0.0.1
)
session = open_session(settings)
reply = session.send(message, "bench@sender.test", ["to@client.test"]).reply
session.close()
sent = time.perf_counter()
_, peak = tracemalloc.get_traced_memory()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cpu = time.process_time() - cpu_start
print(
    f"{mode:>9}: message {size / 2**20:6.1f} MiB | write {written - started:5.2f} s | "
    f"SMTP {sent - written:5.2f} s | CPU {cpu:5.2f} s | Python peak {peak / 2**20:6.1f} MiB | "
    f"peak RSS {rss / 1024:6.0f} MiB (at start {rss_before / 1024:.0f}) | {reply}"
)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="attachment size in MiB (default 100)")
    parser.add_argument("--skip-in-memory", action="store_true", help="measure only the streamed path")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "attachment.bin"
        with path.open("wb") as fh:
            for _ in range(args.mb):
                fh.write(os.urandom(1024 * 1024))
        sink = subprocess.Popen(
            [sys.executable, "-c", SINK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert sink.stdout is not None
            port = sink.stdout.readline().strip()
            modes = ["streamed"] if args.skip_in_memory else ["streamed", "in-memory"]
            print(f"a {args.mb} MiB attachment, sent to a discarding SMTP server on 127.0.0.1:{port}")
            for mode in modes:
                subprocess.run(
                    [sys.executable, "-c", RUN, str(ROOT / "shared"), str(path), port, mode], check=True
                )
        finally:
            sink.kill()
            sink.wait()


if __name__ == "__main__":
    main()
