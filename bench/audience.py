"""Kommo requests per recipient when an audience of leads is read page by page.

    .venv/bin/python bench/audience.py [--leads 1000]

Everything runs in this process on 127.0.0.1: the Kommo stand-in with the demo account plus
`--leads` generated leads (each with its own contact and the demo company, half in each of two
stages), read through `mailer_core.audiences.reader.read_page` as the campaigns read it: once
by ids (a Kommo list view's selection), once by Kommo's own filter (every stage of the
pipeline). The stand-in counts the requests; nothing is timed. The aim is 0.05 requests per
recipient or less (issue 12).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]

from mailer_core.audiences.reader import read_page  # noqa: E402
from mailer_core.audiences.spec import Audience, KommoFilter  # noqa: E402
from mailer_core.base.clock import FakeClock  # noqa: E402
from mailer_core.kommo.client import KommoClient  # noqa: E402

from devstack.kommo_standin import seed  # noqa: E402
from devstack.kommo_standin.server import KommoStandIn  # noqa: E402
from tests.support.fixtures.audiences import bulk_lead, bulk_seed, entity_reads  # noqa: E402

TOKEN = "bench-audience-token"


def read_all(audience: Audience, client: KommoClient, clock: FakeClock) -> int:
    recipients, cursor = 0, None
    while True:
        page = read_page(seed.ACCOUNT_ID, audience, cursor, clock=clock, client=client)
        recipients += len(page.recipients)
        if page.cursor is None:
            return recipients
        cursor = page.cursor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1000)
    args = parser.parse_args()
    clock = FakeClock()
    with KommoStandIn(bulk_seed(args.leads), clock=clock, rate_limit=100_000) as standin:
        standin.add_token(seed.ACCOUNT_ID, TOKEN)
        client = KommoClient(seed.SUBDOMAIN, TOKEN, base_url=standin.base_url, clock=clock)
        by_ids = Audience(ids=tuple(bulk_lead(n) for n in range(args.leads)))
        stages = (seed.STATUS_QUALIFIED, seed.STATUS_NEGOTIATION)
        by_filter = Audience(filter=KommoFilter(pipeline_id=seed.PIPELINE_ID, status_ids=stages))
        for name, audience in (("ids", by_ids), ("filter", by_filter)):
            before = entity_reads(standin)
            recipients = read_all(audience, client, clock)
            requests = entity_reads(standin) - before
            print(f"audience by {name}: {recipients} recipients, {requests} Kommo requests")
            print(f"audience Kommo requests per recipient ({name}): {requests / max(recipients, 1):.4f}")


if __name__ == "__main__":
    main()
