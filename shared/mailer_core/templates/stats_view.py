"""Per-template counters, the read side: `GET /v1/templates/{template_id}/stats`.

The counters are written by `mailer_core.events.template_counters`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailer_core.store.models import TemplateStatsModel
from mailer_core.templates import api as templates

if TYPE_CHECKING:
    from mailer_core.accounts.auth import Caller


# -- GET /v1/templates/{template_id}/stats ------------------------------------------------------


def view(caller: Caller, template_id: str) -> dict[str, Any]:
    """The template's counters, for whoever may see the template (404 otherwise)."""

    templates.for_use(caller, template_id)
    reply = TemplateStatsModel._get_connection().get_item(str(caller.account_id), template_id)
    return counters(template_id, dict(reply.get("Item") or {}))


def counters(template_id: str, item: dict[str, Any]) -> dict[str, Any]:
    """The view of a raw stats item (absent counters are 0)."""

    def number(name: str) -> int:
        raw = item.get(name)
        return int(raw["N"]) if raw and "N" in raw else 0

    clicks = []
    for key in sorted(item.get("link_keys", {}).get("SS", [])):
        link: dict[str, Any] = {"url": (item.get("u_" + key) or {}).get("S") or None}
        if "n_" + key in item:
            link["trigger_link"] = number("n_" + key)
        link["people"], link["machines"] = number("p_" + key), number("m_" + key)
        clicks.append(link)
    clicks.sort(key=lambda c: (-c["people"], -c["machines"], c["url"] or ""))
    updated = (item.get("updated_at") or {}).get("S")
    return {
        "template_id": template_id,
        "sent": number("sent"),
        "failed": number("failed"),
        "bounced": number("bounced"),
        "opened": {"people": number("opened"), "machines": number("machine_opened")},
        "clicks": clicks,
        "other_clicks": {"people": number("other_people"), "machines": number("other_machines")},
        "updated_at": TemplateStatsModel.updated_at.deserialize(updated).isoformat() if updated else None,
    }
