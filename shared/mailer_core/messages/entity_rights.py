"""Kommo's own rights over leads, contacts and companies, honoured for a person's request.

Mailer reads Kommo with the installing administrator's token, so without this check a user
whom Kommo lets see only their own leads could read the whole account through a preview, or
mail any lead's data. For a person's preview or compose about an entity, the user's rights
come from Kommo (`GET /api/v4/users/{id}` with the account's token, kept by the warm container
for a few minutes: `variables.KommoData.user`): `view` is A (all), G (the user's group), M (their
own: the entity's responsible user) or D (none); Kommo's administrators see everything. A
refusal answers as for an entity that does not exist (404 naming `entity`), so it tells
nothing of what the user may not see. Automatic composes (the pipeline, triggers) act for the
account's automation and are not checked. When Kommo's users cannot be read, the check
is skipped and logged: the account's administrator token can always read it. A user Kommo
does not know sees nothing.
"""

from __future__ import annotations

from typing import Any

from mailer_core.base.errors import NotFound
from mailer_core.base.logs import logger
from mailer_core.kommo.errors import KommoInsufficientRights
from mailer_core.rendering.variables import KommoData

SINGULAR = {"leads": "lead", "contacts": "contact", "companies": "company"}


def may_view(user: dict[str, Any], entity_type: str, responsible: dict[str, Any] | None) -> bool:
    """Whether Kommo lets `user` see an entity of `entity_type` whose responsible user is `responsible`."""
    rights = user.get("rights") or {}
    if rights.get("is_admin"):
        return True
    view = str((rights.get(entity_type) or {}).get("view") or "D").upper()
    if view == "A":
        return True
    if view == "M":
        return responsible is not None and int(responsible.get("id") or 0) == int(user["id"])
    if view == "G":
        group = rights.get("group_id")
        return (
            responsible is not None
            and group is not None
            and (responsible.get("rights") or {}).get("group_id") == group
        )
    return False


def needs_entity(user: dict[str, Any], entity_type: str) -> bool:
    """Whether deciding needs the entity itself (its responsible user): only for M and G."""
    rights = user.get("rights") or {}
    view = str((rights.get(entity_type) or {}).get("view") or "D").upper()
    return not rights.get("is_admin") and view in ("M", "G")


def ensure_may_view(user_id: int, data: KommoData, entity: tuple[str, int]) -> None:
    """Refuse (404 naming `entity`) an entity Kommo does not let this user see."""
    entity_type, entity_id = entity
    try:
        user = data.user(user_id)
    except KommoInsufficientRights:
        logger.warning(
            "Kommo's users could not be read: entity rights not checked", extra={"entity": entity_type}
        )
        return
    responsible = None
    if user is not None and needs_entity(user, entity_type):
        record = data.entity(entity_type, int(entity_id))  # type: ignore[arg-type]
        owner = int(record.get("responsible_user_id") or 0)
        responsible = user if owner == int(user_id) else _owner(data, owner, user, entity_type)
    if user is None or not may_view(user, entity_type, responsible):
        logger.info("a user asked for an entity Kommo does not let them see", extra={"entity": entity_type})
        raise NotFound(
            f"Kommo has no {SINGULAR.get(entity_type, entity_type)} with id {entity_id}", field="entity"
        )


def _owner(data: KommoData, owner: int, user: dict[str, Any], entity_type: str) -> dict[str, Any] | None:
    """The responsible user as far as the decision needs: their group only for group rights."""
    view = str(((user.get("rights") or {}).get(entity_type) or {}).get("view") or "").upper()
    if view != "G" or not owner:
        return {"id": owner} if owner else None
    try:
        return data.user(owner)
    except KommoInsufficientRights:
        return None
