"""Track routes: AWS requests and in-process time per open and per click, first and repeated.

    .venv/bin/python bench/track.py [--messages 200]

moto runs in this process (mock_aws); the track function's handler is called with API Gateway
events as Lambda would. Each of N sent messages comes from a template (so the template's
counters are written too: the costly case) and carries a timeline of ten steps. For each: a
person's first and repeated open, a machine's (Apple Mail Privacy Protection) first and
repeated open, a person's first and repeated click. It prints, per kind, AWS requests per
request (by operation) and the handler's own time per request: wall time minus the time spent
inside AWS calls (moto's), i.e. what our code costs. Aim: at most 2 requests for a first open,
1 for a repeated open (docs/tracking.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "shared"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
    POWERTOOLS_LOG_LEVEL="WARNING",
    MAILER_TRACKING_SECRET="bench-tracking-secret-0123456789abcdef",
    MAILER_PUBLIC_BASE_URL="https://track.bench.example",
)
os.environ.pop("AWS_ENDPOINT_URL", None)

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"
APPLE_MPP = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
TEMPLATE = "01BENCHTEMPLATE00000000000"
ACCOUNT = 31000001
URL = "https://shop.example.com/offer"


class Meter:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.aws_time = 0.0

    def install(self) -> None:
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        meter = self

        def counted(client: Any, operation: str, params: Any) -> Any:
            meter.calls[operation] += 1
            start = time.perf_counter()
            try:
                return original(client, operation, params)
            finally:
                meter.aws_time += time.perf_counter() - start

        setattr(BaseClient, "_make_api_call", counted)  # noqa: B010


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()

    import boto3
    from moto import mock_aws

    with mock_aws():
        from mailer_core.base.config import reset_settings
        from mailer_core.store import message_state as state
        from mailer_core.store import models, timeline
        from mailer_core.store.models import MessageModel, TemplateStatsModel
        from mailer_core.templates import stats_view as template_stats
        from mailer_core.tracking import rewrite as tracking
        from mailer_core.tracking import tokens as tracking_tokens

        from devstack.resources import create_stack, function_environment
        from tests.support.api_client import LambdaContext, http_event, load_handler

        stack = create_stack(
            boto3.session.Session(),
            parameters={"KommoClientSecret": "bench-client-secret-0123456789abcdef"},
        )
        env = function_environment(stack)
        env.pop("MAILER_TRACKING_SECRET", None)
        os.environ.update(env)
        reset_settings()
        models.reset_connections()
        handler = load_handler("track")
        sent = datetime.now(UTC) - timedelta(hours=1)
        issued = int(sent.timestamp())
        paths: list[tuple[str, str, str]] = []
        for i in range(args.messages):
            message_id = f"BENCH{i:06d}"
            message = MessageModel(
                ACCOUNT,
                message_id,
                status=state.SENT,
                status_key=state.status_key(ACCOUNT, state.SENT),
                user_id=1,
                mailbox_id="mb",
                to=["client@example.com"],
                header_message_id=f"<{message_id}@bench.example>",
                created_at=sent,
                updated_at=sent,
                sent_at=sent,
                template_id=TEMPLATE,
                machine_open_template=TEMPLATE,  # as compose leaves a template's email
                history=[timeline.entry(sent, "sent", "250 2.0.0 Ok: queued as Q" + "x" * 40)] * 10,
            )
            message.save()
            tracking.store_links(message, [URL])
            pixel = "/o/" + tracking_tokens.open_token(ACCOUNT, message_id, issued)
            paths.append(
                (
                    pixel,
                    pixel,
                    pixel,
                    pixel,
                    "/c/" + tracking_tokens.click_token(ACCOUNT, message_id, issued, 0, URL),
                )
            )
        # one warm-up request (imports, clients)
        handler.lambda_handler(http_event("GET", "/t/health"), LambdaContext())

        meter = Meter()
        meter.install()
        print(f"track routes, {args.messages} messages, moto in-process")
        kinds = (
            ("first open", 0, 200, BROWSER),
            ("repeated open", 1, 200, BROWSER),
            ("machine open", 2, 200, APPLE_MPP),
            ("rep. machine", 3, 200, APPLE_MPP),
            ("first click", 4, 302, BROWSER),
            ("repeated click", 4, 302, BROWSER),
        )
        for kind, column, expect, agent in kinds:
            meter.calls.clear()
            meter.aws_time = 0.0
            start = time.perf_counter()
            for row in paths:
                event = http_event("GET", row[column], headers={"user-agent": agent})
                event["requestContext"]["http"].update(sourceIp="198.51.100.7", userAgent=agent)
                reply = handler.lambda_handler(event, LambdaContext())
                assert reply["statusCode"] == expect, reply
            wall = time.perf_counter() - start
            n = len(paths)
            own_ms = (wall - meter.aws_time) / n * 1000
            ops = ", ".join(f"{op} {count / n:.2f}" for op, count in sorted(meter.calls.items()))
            print(
                f"  {kind:<14} AWS requests {sum(meter.calls.values()) / n:.2f} ({ops}); "
                f"in-process {own_ms:.2f} ms (+ moto {meter.aws_time / n * 1000:.2f} ms)"
            )
        first = MessageModel.get(ACCOUNT, "BENCH000000")
        assert int(first.opens) == 2 and first.first_open_at is not None and list(first.link_clicks) == [2]
        assert int(first.machine_opens) == 2 and len(first.history) == 10 + 6
        stats = template_stats.counters(
            TEMPLATE, TemplateStatsModel._get_connection().get_item(str(ACCOUNT), TEMPLATE)["Item"]
        )
        assert stats["opened"]["machines"] == args.messages and stats["clicks"][0]["people"] == args.messages


if __name__ == "__main__":
    main()
