"""moto in server mode on 127.0.0.1: DynamoDB, SQS, S3, KMS and Scheduler on one port.

The server runs in a thread of this process and keeps its state in moto's process-wide
backends, so one process holds one set of AWS resources however many servers it starts.

DynamoDB requests are served one at a time. moto's server answers each request on its own
thread and applies an UpdateItem, conditions included, without a lock: two concurrent
conditional writes could both succeed, and 50 concurrent counter increments come out as 47 to
49. Real DynamoDB applies each item write atomically, and Mailer's "exactly once" rests on
that (claims, rate tokens, one-time links, counters), so the local stack serialises DynamoDB
(`SerialDynamoDB`) to behave as AWS does. Other services are served concurrently, as before.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from devstack.resources import REGION

FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"  # moto accepts any credentials


def local_aws_environment(endpoint: str) -> dict[str, str]:
    """Environment that points boto3, botocore and PynamoDB at the moto server."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
        "AWS_SESSION_TOKEN": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


class SerialDynamoDB:
    """WSGI middleware: DynamoDB requests (by their X-Amz-Target) one at a time, the rest as they come."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            return self.app(environ, start_response)
        with self.lock:
            return list(self.app(environ, start_response))  # the whole answer, under the lock


class _SerialMotoServer(ThreadedMotoServer):
    def _server_entry(self) -> None:
        app = SerialDynamoDB(DomainDispatcherApplication(create_backend_app))
        handler = MotoRequestHandler
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=handler)
        self._server_ready_event.set()
        self._server.serve_forever()


@dataclass
class MotoServer:
    """A running moto server; `endpoint` is its http://127.0.0.1:port URL."""

    server: ThreadedMotoServer
    endpoint: str

    def reset(self) -> None:
        """Drop every resource of every moto backend in this process."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        self.server.stop()


def _wait_until_ready(endpoint: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2) as response:
                response.read()
            return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_moto_server(port: int = 0, *, ready_timeout: float = 10.0) -> MotoServer:
    """Start moto on 127.0.0.1 (port 0: a free port) and return once it answers."""
    # werkzeug logs every request at INFO; the pollers alone make several a second.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = _SerialMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound_port = server.get_host_and_port()
    endpoint = f"http://{host}:{bound_port}"
    try:
        _wait_until_ready(endpoint, ready_timeout)
    except Exception:
        server.stop()
        raise
    return MotoServer(server=server, endpoint=endpoint)
