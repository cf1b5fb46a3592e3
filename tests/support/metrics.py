"""The CloudWatch metrics the code printed (EMF lines among what a test captured of stdout)."""

from __future__ import annotations

import json
from typing import Any


def emf_lines(stdout: str) -> list[dict[str, Any]]:
    """Each line of embedded metric format, parsed, in the order printed."""
    found = []
    for line in stdout.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            found.append(json.loads(line))
    return found


def counted(stdout: str) -> list[tuple[str, str, str]]:
    """(metric, account, mailbox) of each event counted, in order."""
    events = []
    for line in emf_lines(stdout):
        [directive] = line["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]:
            events.append((metric["Name"], line["account"], line["mailbox"]))
    return events
