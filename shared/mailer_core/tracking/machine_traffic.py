"""Telling machine opens and clicks from people's (rules and sources: docs/tracking.md).

A machine event is still answered the same way (the pixel is served, the click redirected)
and still counted, apart; it never sets a message's first open, never runs triggers and never
uses up a one-time link. The rules, in order:

1. HEAD requests, and prefetches announced by `Sec-Purpose`/`Purpose: prefetch`.
2. User agents of link scanners, security gateways and prefetching proxies (`SCANNER_AGENTS`;
   for opens also Apple Mail Privacy Protection's bare Apple Mail agent).
3. Networks of mail security gateways that are never a person (`SCANNER_NETWORKS`:
   Microsoft 365 / EOP protection ranges, Barracuda Email Gateway Defense).
4. Clicks only: a click within `CLICK_GRACE_SECONDS` of sending (scanners fetch every link
   on delivery; people rarely click within seconds).

Gmail's GoogleImageProxy fetches the pixel when the reader opens the message (not on
delivery), so it counts as a person's open; its later opens are hidden by Gmail's cache.
An account turns the filter off with `AccountModel.filter_machine_traffic = False` (then
everything counts as people); the switch is read only for an event a rule flagged, and
cached in memory for `SWITCH_CACHE_SECONDS`.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist

from mailer_core.base.ttl_cache import TtlCache
from mailer_core.store.models import AccountModel

CLICK_GRACE_SECONDS = 10
SWITCH_CACHE_SECONDS = 300

# Lower-case substrings of user agents that are never a person.
SCANNER_AGENTS: tuple[str, ...] = (
    "yahoomailproxy",  # Yahoo Mail prefetches images on delivery
    "safelinks",
    "microsoft office protection",
    "msoffice-safelinks",
    "proofpoint",
    "urldefense",
    "mimecast",
    "barracuda",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "curl/",
    "wget/",
    "libwww-perl",
    "headlesschrome",
    "phantomjs",
    "googlebot",
    "bingbot",
    "bingpreview",
    "slack-imgproxy",
    "slackbot",
    "facebookexternalhit",
)
# Apple Mail Privacy Protection fetches through Apple's proxies with the bare Apple Mail agent
# (a browser adds "Version/… Safari/…"): opens only.
APPLE_MPP_AGENT = "mozilla/5.0 (macintosh; intel mac os x 10_15_7) applewebkit/605.1.15 (khtml, like gecko)"
SCANNER_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        # Microsoft 365 / Exchange Online Protection (not Outlook's image proxy ranges).
        "40.92.0.0/15",
        "40.107.0.0/16",
        "52.100.0.0/14",
        "104.47.0.0/17",
        "2a01:111:f400::/48",
        "2a01:111:f403::/48",
        # Barracuda Email Gateway Defense.
        "209.222.82.0/24",
        "35.157.190.224/27",
    )
)


_LABELS = {
    "head": "HEAD request",
    "prefetch": "prefetch",
    "no-agent": "no user agent",
    "apple-mpp": "Apple Mail Privacy Protection",
    "network": "mail security gateway",
    "timing": f"within {CLICK_GRACE_SECONDS} s of sending",
}


@dataclass(frozen=True)
class Verdict:
    machine: bool
    reason: str = ""  # which rule matched ("head", "agent", "apple-mpp", "network", "timing" …)
    agent: str = ""  # for "agent": the SCANNER_AGENTS entry that matched

    @property
    def label(self) -> str:
        """A short class for the timeline ("scanner: safelinks", "Apple Mail Privacy Protection");
        "" for a person. Nothing about the requester itself (IP, full agent) is kept."""
        if not self.machine:
            return ""
        if self.reason == "agent":
            return f"scanner: {self.agent.rstrip('/')}"
        return _LABELS.get(self.reason, self.reason)


PERSON = Verdict(False)


def classify(
    *,
    kind: str,
    method: str,
    user_agent: str,
    source_ip: str,
    headers: Mapping[str, str],
    seconds_since_send: float | None,
) -> Verdict:
    """The verdict for one open ("open") or click ("click") request."""
    if method.upper() == "HEAD":
        return Verdict(True, "head")
    purpose = (headers.get("sec-purpose") or headers.get("purpose") or "").lower()
    if "prefetch" in purpose or "prerender" in purpose:
        return Verdict(True, "prefetch")
    agent = (user_agent or "").strip().lower()
    if not agent:
        return Verdict(True, "no-agent")
    scanner = next((s for s in SCANNER_AGENTS if s in agent), None)
    if scanner is not None:
        return Verdict(True, "agent", scanner)
    if kind == "open" and agent == APPLE_MPP_AGENT:
        return Verdict(True, "apple-mpp")
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        address = None
    if address is not None and any(address in net for net in SCANNER_NETWORKS):
        return Verdict(True, "network")
    if kind == "click" and seconds_since_send is not None and seconds_since_send < CLICK_GRACE_SECONDS:
        return Verdict(True, "timing")
    return PERSON


_switches: TtlCache[int, bool] = TtlCache(SWITCH_CACHE_SECONDS)  # by time.monotonic()


def filter_on(account_id: int) -> bool:
    """The account's switch (default on), cached in memory; on when the account cannot be read."""

    def load() -> bool:
        try:
            account = AccountModel.get(account_id, attributes_to_get=["filter_machine_traffic"])
        except DoesNotExist:
            return True
        return account.filter_machine_traffic is not False

    return _switches.get_or_load(account_id, time.monotonic(), load)


def forget_switches() -> None:
    """Tests and the local stack change accounts under a warm process."""
    _switches.clear()
