"""`python -m devstack run | demo`: the local system from the README's first command.

run   start everything, play the worked example and the campaign once, print the campaign's
      report, the URLs and a token, serve until Ctrl-C;
demo  start everything, play the example and the campaign, stop; exit 0 only if every step
      of both happened.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading

from devstack.campaign_demo import expected_steps, play_campaign
from devstack.system import LocalSystem
from devstack.worked_example import EXPECTED_STEPS, play_example


def _banner(system: LocalSystem) -> str:
    token = system.widget_token()
    api = system.stack.api_url
    return "\n".join(
        [
            "",
            "Mailer is running locally (127.0.0.1 only). Press Ctrl-C to stop.",
            f"  API              {api}   (OpenAPI: {api}/openapi.json)",
            f"  Kommo host page  {system.host.url}   (the built widget on a Kommo-like page; docs/widget.md)",
            f"  emails received  {system.sink.web_url}",
            f"  Kommo stand-in   {system.kommo.base_url}/_standin/state",
            f"  Kommo install    {api}/hooks/kommo/install   (the integration's redirect URI)",
            f"  pipeline hook    {api}/hooks/kommo/dp   (devstack/pipeline_post.py posts what Kommo posts)",
            f"  AWS (moto)       {system.stack.aws_endpoint}",
            (
                f"  IMAP (Dovecot)   {system.imap.host}:{system.imap.port}   (Sent folder and bounces)"
                if system.imap is not None
                else f"  IMAP             none: {system.imap_missing}"
            ),
            *(f"  {name:<16} {url}" for name, url in system.page_urls.items()),
            "",
            "A widget token for the demo manager (valid 12 hours):",
            f"  export TOKEN={token}",
            f'  curl -H "X-Auth-Token: $TOKEN" {api}/v1/messages',
            f'  curl -H "X-Auth-Token: $TOKEN" {api}/v1/messages/<id>   (timeline: opens, clicks, triggers)',
            f'  curl -H "X-Auth-Token: $TOKEN" {api}/v1/campaigns   (then …/campaigns/<id>/report and /log)',
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["run", "demo"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    print("Starting the local stack …", flush=True)
    with LocalSystem() as system:
        steps = play_example(system)
        passed = bool(steps) and all(step.ok for step in steps) and len(steps) == EXPECTED_STEPS
        print(
            f"\nExample {'complete' if passed else 'FAILED'}: "
            f"{sum(s.ok for s in steps)} of {EXPECTED_STEPS} steps happened."
        )
        campaign = play_campaign(system)
        wanted = expected_steps(system)
        played = bool(campaign) and all(step.ok for step in campaign) and len(campaign) == wanted
        print(
            f"\nCampaign {'complete' if played else 'FAILED'}: "
            f"{sum(s.ok for s in campaign)} of {wanted} steps happened."
        )
        if args.command == "demo":
            return 0 if passed and played else 1
        print(_banner(system), flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            # In short waits: a signal that lands on another thread (the servers' threads are
            # many) runs its handler only when the main thread wakes up.
            while not stop.wait(0.5):
                pass
        print("Stopping …")
    return 0


if __name__ == "__main__":
    sys.exit(main())
