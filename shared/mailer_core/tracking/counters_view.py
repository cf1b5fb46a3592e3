"""A message's open and click counters as the API shows them."""

from __future__ import annotations

from typing import Any

from mailer_core.store.models import MessageModel
from mailer_core.tracking import link_targets


def counters_view(message: MessageModel) -> dict[str, Any]:
    """Opens (people and machines apart), the first open, and clicks per link."""
    links = list(message.tracked_links or [])
    people: list[Any] = list(message.link_clicks or [])
    machines: list[Any] = list(message.machine_link_clicks or [])
    clicks: list[dict[str, Any]] = []
    for i, url in enumerate(links):
        entry: dict[str, Any] = {"url": url}
        trigger_link = link_targets.parse_stored(str(url))
        if trigger_link is not None:  # the target (None: the thank-you page) and the link's number
            entry = {"url": trigger_link[1], "trigger_link": trigger_link[0]}
        entry["people"] = int(people[i]) if i < len(people) else 0
        entry["machines"] = int(machines[i]) if i < len(machines) else 0
        clicks.append(entry)
    return {
        "opens": {"people": int(message.opens or 0), "machines": int(message.machine_opens or 0)},
        "first_open_at": message.first_open_at.isoformat() if message.first_open_at else None,
        "clicks": clicks,
    }
