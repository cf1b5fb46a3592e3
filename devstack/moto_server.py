"""moto in server mode on 127.0.0.1: DynamoDB, SQS, S3, KMS and Scheduler on one port.

The server runs in a thread of this process and keeps its state in moto's process-wide
backends, so one process holds one set of AWS resources however many servers it starts.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from moto.server import ThreadedMotoServer

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
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound_port = server.get_host_and_port()
    endpoint = f"http://{host}:{bound_port}"
    try:
        _wait_until_ready(endpoint, ready_timeout)
    except Exception:
        server.stop()
        raise
    return MotoServer(server=server, endpoint=endpoint)
