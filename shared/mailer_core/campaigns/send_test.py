"""Send Test (003): the campaign's email rendered for one recipient and sent to an address the
manager gives, before the start. It is an ordinary single email on the priority lane: it runs
no triggers, counts nowhere in the campaign, and its recipient is never the campaign's. It
carries the opt-out a campaign email carries (the unsubscribe link filled in, the footer when
the body has no link and the account keeps it on, the List-Unsubscribe headers:
tracking.unsubscribe, by its origin); its link unsubscribes no one (messages.opt_out)."""

from __future__ import annotations

from typing import Any

from mailer_core.accounts.auth import Caller
from mailer_core.base import validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import InvalidInput
from mailer_core.campaigns import api
from mailer_core.campaigns.expansion import Expander
from mailer_core.messages import compose
from mailer_core.messages.requests import ComposeRequest
from mailer_core.store.models import CAMPAIGN_TEST_ORIGIN, CampaignModel

ENTITY_TYPES = ("leads", "contacts", "companies")


def send_test(
    caller: Caller, campaign_id: str, payload: Any, *, clock: Clock = SYSTEM_CLOCK
) -> dict[str, Any]:
    body = validation.require_object(payload)
    validation.reject_unknown(body, {"to", "entity"})
    to = validation.email_address(body.get("to"), "to")
    campaign = api.load(caller, campaign_id)
    entity = _entity(body["entity"]) if body.get("entity") is not None else _first_entity(campaign, clock)
    fields: dict[str, Any] = {
        "mailbox_id": str(campaign.mailbox_ids[0]),
        "to": [to],
        "entity": entity,
        "contacts": "none",
        "triggers": {},
        "track_opens": False,
    }
    if campaign.template_id:
        fields["template_id"] = campaign.template_id
    for name in ("subject", "html"):
        if getattr(campaign, name):
            fields[name] = str(getattr(campaign, name))
    return compose.compose(ComposeRequest.of(**fields), caller, clock=clock, origin=CAMPAIGN_TEST_ORIGIN)


def _entity(raw: Any) -> tuple[str, int]:
    if not isinstance(raw, dict) or raw.get("type") not in ENTITY_TYPES:
        raise InvalidInput(f"must be {{'type': one of {', '.join(ENTITY_TYPES)}, 'id': …}}", field="entity")
    entity_id = raw.get("id")
    if isinstance(entity_id, bool) or not isinstance(entity_id, int) or entity_id < 1:
        raise InvalidInput("must be a positive whole number", field="entity.id")
    return str(raw["type"]), entity_id


def _first_entity(campaign: CampaignModel, clock: Clock) -> tuple[str, int] | None:
    """The audience's first recipient with a CRM entity (read once and kept for the start)."""
    if campaign.parent_id or int(campaign.package) != 0:
        return None
    for _, entity_type, entity_id, _ in Expander(clock=clock).first_package(campaign)["recipients"]:
        if entity_type:
            return str(entity_type), int(entity_id)
    return None
