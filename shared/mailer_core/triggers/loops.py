"""Loop guards: no automation sends real mail forever.

At save time: templates send templates through "send email" triggers, chosen for an event of
the template or hung on a trigger link in its body ({triggerlink:N}). A save (of a template,
a trigger or a link) that would close a cycle (template A's email, opened or not, sends A
again, directly or through others) is refused with the cycle spelled out, unless a template
on the cycle is marked as intentionally repeating (`repeat_max`, the most automatic emails
such a chain may send).

At run time, for every automatic email ("send email" trigger):
- the chain of automatic emails behind it may be at most `repeat_max` long when the template
  is marked repeating, `MAX_CHAIN` otherwise (a cycle made by a later change slips past the
  save check only up to here);
- one entity (lead, contact, company; the first address when the email had none) receives at
  most the account's daily number (`auto_email_cap`, 3 by default) of automatic emails from
  one template per UTC day: one conditional counter, so racing runs cannot both pass.
A refusal raises `Suppressed`, which the run records in the message's timeline.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailer_core.accounts import access
from mailer_core.base.clock import Clock
from mailer_core.base.errors import InvalidInput, MailerError
from mailer_core.store import message_state as state
from mailer_core.store.models import (
    AutomationFactModel,
    LinkModel,
    MessageModel,
    TemplateModel,
    TriggerModel,
    event_triggers,
    plain_map,
)

MAX_CHAIN = 20
_LINK_REFERENCE = re.compile(r"\{triggerlink:(\d{1,9})\}|triggerlink\(\s*(\d{1,9})\s*\)")


class Suppressed(MailerError):
    """The run was refused by a rule (a loop guard, the daily cap): recorded, not retried."""

    status = 409
    code = "suppressed"


def link_ids_in(*texts: str | None) -> list[int]:
    """The trigger link numbers a template's subject or body uses ({triggerlink:N} or triggerlink(N))."""
    found: list[int] = []
    for text in texts:
        for match in _LINK_REFERENCE.finditer(text or ""):
            number = int(match.group(1) or match.group(2))
            if number not in found:
                found.append(number)
    return found


# -- the save-time check ---------------------------------------------------------------------


class _Graph:
    """The account's templates, triggers and links, with one of them replaced by what is being saved."""

    def __init__(
        self,
        account_id: int,
        *,
        template: TemplateModel | None = None,
        trigger: TriggerModel | None = None,
        link: LinkModel | None = None,
    ) -> None:
        self.templates = {t.template_id: t for t in TemplateModel.query(account_id)}
        self.triggers = {t.trigger_id: t for t in TriggerModel.query(account_id)}
        self.links = {int(x.link_id): x for x in LinkModel.query(account_id)}
        if template is not None:
            self.templates[template.template_id] = template
        if trigger is not None:
            self.triggers[trigger.trigger_id] = trigger
        if link is not None:
            self.links[int(link.link_id)] = link

    def _sends(self, trigger_id: str) -> str | None:
        trigger = self.triggers.get(trigger_id)
        if trigger is None or trigger.type != "email":
            return None
        target = plain_map(trigger.params).get("template_id")
        return str(target) if target else None

    def edges(self, template_id: str) -> list[tuple[str, str]]:
        """(how, next template) for every automatic email the template's email can send."""
        template = self.templates.get(template_id)
        if template is None:
            return []
        out: list[tuple[str, str]] = []
        for event, ids in event_triggers(template.triggers).items():
            for trigger_id in ids:
                target = self._sends(trigger_id)
                if target:
                    out.append((f"{event.replace('_', ' ')}: «{self._name(trigger_id)}»", target))
        for number in [int(n) for n in (getattr(template, "link_ids", None) or [])]:
            link = self.links.get(number)
            for linked in [str(t) for t in (link.trigger_ids if link else None) or []]:
                target = self._sends(linked)
                if target:
                    out.append((f"link {number}: «{self._name(linked)}»", target))
        return out

    def _name(self, trigger_id: str) -> str:
        trigger = self.triggers.get(trigger_id)
        return trigger.name if trigger else trigger_id

    def template_name(self, template_id: str) -> str:
        template = self.templates.get(template_id)
        return f"«{template.name}»" if template else template_id

    def cycle(self) -> list[tuple[str, str]] | None:
        """One cycle with no template marked repeating, as [(template, how it sends the next)], or None."""
        colour: dict[str, int] = {}
        path: list[tuple[str, str]] = []

        def visit(node: str) -> list[tuple[str, str]] | None:
            colour[node] = 1
            for how, nxt in self.edges(node):
                path.append((node, how))
                if colour.get(nxt) == 1:
                    start = next(i for i, (n, _) in enumerate(path) if n == nxt)
                    loop = path[start:]
                    if not any(self.templates[n].repeat_max for n, _ in loop if n in self.templates):
                        return list(loop)
                elif colour.get(nxt) is None:
                    found = visit(nxt)
                    if found:
                        return found
                path.pop()
            colour[node] = 2
            return None

        for node in sorted(self.templates):
            if colour.get(node) is None:
                found = visit(node)
                if found:
                    return found
        return None

    def spell(self, loop: list[tuple[str, str]]) -> str:
        steps = [f"{self.template_name(node)} → ({how})" for node, how in loop]
        return " → ".join(steps) + f" → {self.template_name(loop[0][0])}"


def _refuse_cycles(graph: _Graph, field: str) -> None:
    loop = graph.cycle()
    if loop:
        raise InvalidInput(
            "this closes an automation loop: "
            + graph.spell(loop)
            + ". Change a trigger, or mark a template on the loop as repeating with repeat_max",
            field=field,
        )


def check_template(account_id: int, template: TemplateModel) -> None:
    _refuse_cycles(_Graph(account_id, template=template), "triggers")


def check_trigger(account_id: int, trigger: TriggerModel) -> None:
    if trigger.type == "email":
        _refuse_cycles(_Graph(account_id, trigger=trigger), "params.template_id")


def check_link(account_id: int, link: LinkModel) -> None:
    _refuse_cycles(_Graph(account_id, link=link), "trigger_ids")


# -- the run-time guards ---------------------------------------------------------------------


def daily_cap(account_id: int) -> int:
    return access.auto_email_cap(account_id)


def _entity_key(message: MessageModel) -> str:
    if message.entity_type and message.entity_id is not None:
        return f"{message.entity_type}:{int(message.entity_id)}"
    first = [str(a) for a in message.to or []][:1] or [""]
    return f"to:{first[0].lower()}"


def check_runtime(message: MessageModel, template_id: str, depth: int, *, clock: Clock) -> None:
    """Raise `Suppressed` when this automatic email would run a loop or pass the daily cap."""
    try:
        template = TemplateModel.get(int(message.account_id), template_id)
    except DoesNotExist as exc:
        raise InvalidInput(f"template {template_id} no longer exists", field="template_id") from exc
    limit = int(template.repeat_max) if template.repeat_max else MAX_CHAIN
    if depth > limit:
        raise Suppressed(f"the chain of automatic emails reached its limit of {limit}")
    cap = daily_cap(int(message.account_id))
    now = clock.now()
    key = f"day#{now:%Y-%m-%d}#{template_id}#{_entity_key(message)}"
    fact = AutomationFactModel(int(message.account_id), key)
    try:
        fact.update(
            actions=[
                AutomationFactModel.tally.add(1),
                AutomationFactModel.expires_at.set(now + timedelta(days=2)),
            ],
            condition=AutomationFactModel.fact_key.does_not_exist() | (AutomationFactModel.tally < cap),
        )
    except UpdateError as exc:
        if state.is_condition_failure(exc):
            raise Suppressed(
                f"{_entity_key(message)} already received {cap} automatic emails from this template today"
            ) from exc
        raise
