"""Trigger links (/v1/links): numbered links whose click runs triggers.

A link has a number N, given at creation and never changed, that templates use as
`{triggerlink:N}` (or `{{ triggerlink(N) }}`) in an href; a name; "execute once"; a redirect
target (a web address, or text with variables such as `{{ lead.cf[560001] }}` filled in with
the entity's CRM data when the email is sent; none: a simple localized "Thank you!" page);
and the triggers a click runs. Numbers come from one atomic counter per account (the
automation fact "seq#links", ADD 1), so concurrent creates never share a number; a create
refused after taking a number leaves a gap.

Only administrators create, change or delete links; every user of the account reads them,
because every user's templates use them. What a link becomes in an email:
trigger_link_urls; what a click does: trigger_link_clicks.
"""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, UpdateError

from mailer_core.accounts.auth import Caller
from mailer_core.base import validation
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.errors import Conflict, Forbidden, InvalidInput, NotFound
from mailer_core.base.web_addresses import MAX_TARGET_CHARS, web_address
from mailer_core.rendering.source_checks import has_variables, validate_source
from mailer_core.store.models import AutomationFactModel, LinkModel
from mailer_core.triggers import api as triggers
from mailer_core.triggers import loops as automation_loops

FIELDS = {"name", "once", "target", "trigger_ids"}
SEQUENCE_KEY = "seq#links"
MAX_LINK_ID = 999_999_999  # what `{triggerlink:N}` accepts (nine digits)


def public_view(link: LinkModel) -> dict[str, Any]:
    number = int(link.link_id)
    return {
        "id": number,
        "name": link.name,
        "once": bool(link.once),
        "target": link.target or None,
        "trigger_ids": [str(t) for t in link.trigger_ids or []],
        "variable": f"{{triggerlink:{number}}}",
        "user_id": int(link.user_id),
        "created_at": link.created_at.isoformat(),
        "updated_at": link.updated_at.isoformat(),
    }


def validate_target(value: Any, field: str = "target") -> str | None:
    """None (the thank-you page), a web address, or text with variables filled in at send time."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise InvalidInput("must be a web address, a variable that holds one, or empty", field=field)
    target = value.strip()
    if len(target) > MAX_TARGET_CHARS:
        raise InvalidInput(f"is longer than {MAX_TARGET_CHARS} characters", field=field)
    if has_variables(target):
        validate_source(target, field=field, html=False)
        lowered = target.lower()
        if not (lowered.startswith(("http://", "https://")) or target.startswith("{")):
            raise InvalidInput(
                "must start with http:// or https:// or with a variable that holds a web address",
                field=field,
            )
        return target
    if not target.lower().startswith(("http://", "https://")) or web_address(target) is None:
        raise InvalidInput(
            "must be an http:// or https:// address (or empty: the thank-you page)", field=field
        )
    return target


def _validated(account_id: int, payload: Any, *, creating: bool) -> dict[str, Any]:
    data = validation.require_object(payload)
    validation.reject_unknown(data, FIELDS)
    out: dict[str, Any] = {}
    if creating or "name" in data:
        out["name"] = validation.text(data, "name", required=True, max_length=255, allow_empty=False).strip()
    if creating or "once" in data:
        out["once"] = validation.boolean(data, "once", default=False)
    if creating or "target" in data:
        out["target"] = validate_target(data.get("target"))
    if creating or "trigger_ids" in data:
        out["trigger_ids"] = triggers.validate_ids(account_id, data.get("trigger_ids"), "trigger_ids")
    return out


def _require_admin(caller: Caller) -> None:
    if not caller.is_admin:
        raise Forbidden("only Mailer administrators set up trigger links", reason="admin_only")


def _number(link_id: Any) -> int:
    try:
        number = int(str(link_id))
    except ValueError:
        raise NotFound("no such trigger link", field="link_id") from None
    if not 0 < number <= MAX_LINK_ID:
        raise NotFound("no such trigger link", field="link_id")
    return number


def _load(caller: Caller, link_id: Any) -> LinkModel:
    try:
        return LinkModel.get(caller.account_id, _number(link_id), consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such trigger link", field="link_id") from None


def next_number(account_id: int) -> int:
    """The account's next link number: one atomic UpdateItem (ADD tally 1, UPDATED_NEW)."""
    connection = AutomationFactModel._get_connection()
    reply = connection.update_item(
        str(int(account_id)),
        SEQUENCE_KEY,
        actions=[AutomationFactModel.tally.add(1)],
        return_values="UPDATED_NEW",
    )
    return int(reply["Attributes"]["tally"]["N"])


def create(caller: Caller, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    _require_admin(caller)
    fields = _validated(caller.account_id, payload, creating=True)
    number = next_number(caller.account_id)
    if number > MAX_LINK_ID:
        raise Conflict("the account has used every trigger link number")
    now = clock.now()
    link = LinkModel(
        caller.account_id, number, user_id=caller.user_id, created_at=now, updated_at=now, **fields
    )
    automation_loops.check_link(caller.account_id, link)
    try:
        link.save(condition=LinkModel.link_id.does_not_exist())
    except PutError as exc:  # only if the counter was reset under existing links
        raise Conflict(f"trigger link {number} exists; try again", field="link_id") from exc
    return public_view(link)


def list_for(caller: Caller) -> list[dict[str, Any]]:
    return [public_view(link) for link in LinkModel.query(caller.account_id)]  # by number


def get(caller: Caller, link_id: Any) -> dict[str, Any]:
    return public_view(_load(caller, link_id))


def update(caller: Caller, link_id: Any, payload: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    _require_admin(caller)
    link = _load(caller, link_id)
    fields = _validated(caller.account_id, payload, creating=False)
    for name, value in fields.items():
        setattr(link, name, value)
    if "trigger_ids" in fields:
        automation_loops.check_link(caller.account_id, link)
    now = clock.now()
    actions: list[Any] = [
        getattr(LinkModel, name).remove() if value is None else getattr(LinkModel, name).set(value)
        for name, value in fields.items()
    ]
    actions.append(LinkModel.updated_at.set(now))
    try:
        link.update(actions=actions, condition=LinkModel.link_id.exists())
    except UpdateError as exc:
        raise NotFound("no such trigger link", field="link_id") from exc
    return public_view(link)


def delete(caller: Caller, link_id: Any) -> None:
    """Delete a link. Emails sent with it keep working as plain redirects (their target was
    stored at send time) and run nothing; emails sent later render it as `#`."""
    _require_admin(caller)
    link = _load(caller, link_id)
    try:
        link.delete(condition=LinkModel.link_id.exists())
    except DeleteError as exc:
        raise NotFound("no such trigger link", field="link_id") from exc
