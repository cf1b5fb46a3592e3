"""The benchmark's servers, each run in its own process so the CPU they burn is not ours.

    python bench/servers.py moto [--serial-dynamodb | --serial]
    python bench/servers.py smtp --delay-ms 100 --login L --password P

Each binds 127.0.0.1 on a free port, prints `PORT <n>` on stdout once it accepts connections,
and exits when its stdin closes (so it cannot outlive the benchmark, even one that was killed).
SIGINT is ignored: on Ctrl-C the benchmark itself stops its servers.

The SMTP server requires AUTH (one fixed login and password, allowed without TLS), answers
every command at once except the end of DATA, which it answers after the delay: the time a
real provider takes to accept a message. On stdin it takes the commands `stats` (answers
`STATS <messages> <distinct Message-IDs> <bytes> <connections>`), `arrivals` (answers
`ARRIVALS <JSON list of [sender, epoch seconds]>`: each message's envelope sender and when its
data was in, before the delay), `recipients PATH` (writes the count of messages each envelope
recipient received to PATH as JSON; answers `OK`) and `reset`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def _announce(port: int) -> None:
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()


def serve_moto(serial_dynamodb: bool = False, serial: bool = False) -> None:
    """moto in server mode; with `serial_dynamodb`, DynamoDB requests one at a time, as the local
    stack serves them (devstack/moto_server.py): moto applies concurrent conditional writes
    without a lock, so two concurrent workers could both take one rate token. With `serial`,
    every request one at a time (atomic updates everywhere)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if serial_dynamodb:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from devstack.moto_server import start_moto_server

        running = start_moto_server()
        _announce(int(running.endpoint.rsplit(":", 1)[1]))
        sys.stdin.read()
        os._exit(0)  # its server thread holds requests still open; nothing of it needs keeping
    from moto.server import ThreadedMotoServer

    if serial:
        # moto's backends are not thread-safe: two concurrent UpdateItems on one item can
        # interleave between read and write and lose an ADD, which DynamoDB never does.
        # `--serial` makes each request atomic, so that lost updates are ours, not moto's.
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication

        lock = threading.Lock()
        dispatch = DomainDispatcherApplication.__call__

        def atomic(self: Any, environ: Any, start_response: Any) -> Any:
            with lock:
                return dispatch(self, environ, start_response)

        setattr(DomainDispatcherApplication, "__call__", atomic)  # noqa: B010

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _announce(server.get_host_and_port()[1])
    sys.stdin.read()  # until the benchmark closes our stdin (or dies)
    server.stop()


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.messages = 0
            self.bytes = 0
            self.connections = 0
            self.ids: set[bytes] = set()
            self.arrivals: list[tuple[str, float]] = []
            self.recipients: dict[str, int] = {}

    def line(self) -> str:
        with self.lock:
            return f"STATS {self.messages} {len(self.ids)} {self.bytes} {self.connections}"


def _answer(command: str, stats: _Stats) -> str | None:
    """The SMTP server's answer to a command on its stdin (see the module's docstring)."""
    if command == "stats":
        return stats.line()
    if command == "arrivals":
        with stats.lock:
            return "ARRIVALS " + json.dumps(list(stats.arrivals))
    if command.startswith("recipients "):
        with stats.lock:
            counts = dict(stats.recipients)
        with open(command.split(" ", 1)[1], "w") as out:
            json.dump(counts, out)
        return "OK"
    if command == "reset":
        stats.reset()
        return "OK"
    return None


def serve_smtp(delay_ms: float, login: str, password: str) -> None:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    stats = _Stats()
    delay = delay_ms / 1000.0
    credentials = (login.encode(), password.encode())

    class SlowHandler:
        async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
            arrived = time.time()
            with stats.lock:
                stats.arrivals.append((str(envelope.mail_from), arrived))
            await asyncio.sleep(delay)
            content = bytes(envelope.original_content or envelope.content or b"")
            found = _MESSAGE_ID.search(content.split(b"\r\n\r\n", 1)[0])
            with stats.lock:
                stats.messages += 1
                stats.bytes += len(content)
                if found:
                    stats.ids.add(found.group(1))
                for address in envelope.rcpt_tos:
                    stats.recipients[address] = stats.recipients.get(address, 0) + 1
            return "250 2.0.0 Ok: queued"

    def authenticator(server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == credentials
        return AuthResult(success=ok, handled=False)

    class CountingSMTP(SMTP):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            with stats.lock:
                stats.connections += 1
            super().connection_made(transport)

    def factory() -> SMTP:
        return CountingSMTP(
            SlowHandler(),
            hostname="bench-smtp.local",  # no getfqdn() lookup per connection
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=False,
        )

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(factory, host="127.0.0.1", port=0))
    done = asyncio.Event()

    def control() -> None:
        for command in sys.stdin:
            answer = _answer(command.strip(), stats)
            if answer is not None:
                sys.stdout.write(answer + "\n")
                sys.stdout.flush()
        loop.call_soon_threadsafe(done.set)

    _announce(server.sockets[0].getsockname()[1])
    threading.Thread(target=control, daemon=True).start()
    loop.run_until_complete(done.wait())
    server.close()  # the process exits next; open connections die with it


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # aiosmtpd warns that AUTH without TLS is unsafe: on 127.0.0.1, for a benchmark, it is meant.
    warnings.filterwarnings("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # connections still open at exit
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="server", required=True)
    moto = sub.add_parser("moto")
    moto.add_argument("--serial-dynamodb", action="store_true", help="DynamoDB one request at a time")
    moto.add_argument("--serial", action="store_true", help="one request at a time (atomic updates)")
    smtp = sub.add_parser("smtp")
    smtp.add_argument("--delay-ms", type=float, default=100.0)
    smtp.add_argument("--login", required=True)
    smtp.add_argument("--password", required=True)
    args = parser.parse_args()
    if args.server == "moto":
        serve_moto(args.serial_dynamodb, args.serial)
    else:
        serve_smtp(args.delay_ms, args.login, args.password)


if __name__ == "__main__":
    main()
