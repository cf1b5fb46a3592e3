"""The digital pipeline hook's answer time under a burst, against Kommo's 2 s deadline.

    .venv/bin/python bench/hook_burst.py [--posts 200] [--clients 25]

A local stack in this process (tests/support/burst_stack.py: moto, the gateway, the pollers,
the SMTP sink, the Kommo stand-in), warmed with one email; then N distinct stage changes are
posted through the HTTP gateway, `clients` at a time, while the pipeline and send functions
work through the queue in the same process. It prints the answer times (client side, from the
request's start to the answer's last byte): median, 95th percentile and slowest, and how many
were over 2 s. In AWS the hook does three DynamoDB/SQS calls: tens of milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "shared"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from tests.support.burst_stack import burst_stack, post  # noqa: E402

DEADLINE_SECONDS = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--clients", type=int, default=25)
    args = parser.parse_args()
    with burst_stack() as local:
        post(local, -1)
        local.stack.drain(timeout=60)
        with ThreadPoolExecutor(args.clients) as pool:
            answers = list(pool.map(lambda n: post(local, n), range(args.posts)))
        local.stack.drain(timeout=180)
    seconds = sorted(s for _, _, s in answers)
    over = sum(1 for s in seconds if s > DEADLINE_SECONDS)
    p95 = seconds[int(len(seconds) * 0.95) - 1]
    print(f"posts {len(seconds)}, statuses {sorted({status for status, _, _ in answers})}")
    median = statistics.median(seconds)
    print(f"answer time: median {median:.3f} s, p95 {p95:.3f} s, slowest {seconds[-1]:.3f} s")
    print(f"over Kommo's {DEADLINE_SECONDS:g} s deadline: {over}")


if __name__ == "__main__":
    main()
