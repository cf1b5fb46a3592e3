"""A form of an email or a page posted to `{formlink}` (`/f/{token}`): its answers written to
the email's lead, contact or company in Kommo (docs/pages.md).

Field names say where an answer goes: `lead[ID]`, `contact[ID]`, `company[ID]` (a custom
field by id; `…[]` for a multiselect's several options) or `field[Name]` (a custom field by
name, looked for among leads', contacts' and companies' fields in that order). The entity is
the one the email's triggers would act on (triggers.actions.target: from a lead, its main
contact and its company …). Values are written by the field's type with the code the
"change field" trigger uses (kommo.fields.field_value): text, numeric, flag (checkbox),
select, multiselect, switch (radiobutton) and the other types it knows. A multiselect's
options replace the chosen ones; an empty answer leaves its field alone (re-filling the form
overwrites what was filled before). A bad answer (text in a number field, an option the field
does not have, a field that does not exist) is left out and reported, on the thank-you page
and in the note; the other answers are written all the same. A note with every answer is
always added to the email's own entity.

Safety of a public form: the token in the action URL is signed per email (tracking.tokens):
a post without it, or with a forged one, writes nothing, and another site cannot make a
browser write to an email's entity without having that email (CSRF). GET (the manual's
forms have no method) and POST (url-encoded or multipart) are taken; the body or query is at
most `MAX_BYTES`; each email's form takes `POSTS_PER_MINUTE` posts a minute and
`POSTS_PER_DAY` a day (store.rate_buckets). A submission is written once however often a
browser sends it: its key is a hash of the token, the view's nonce (pages.views puts a fresh
one in every form it serves) and the answers, claimed by one conditional put
(`form#<key>`), whose stored outcome answers a repeat. If Kommo cannot be reached the claim
is taken back, so sending the form again works.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any
from urllib.parse import parse_qsl

from pynamodb.exceptions import DoesNotExist, PutError

from mailer_core.base.errors import InvalidInput, MailerError
from mailer_core.base.logs import logger
from mailer_core.kommo import accounts as kommo_accounts
from mailer_core.kommo import errors as kommo_errors
from mailer_core.kommo import fields as kommo_fields
from mailer_core.kommo.client import EntityType, KommoClient, NewNote
from mailer_core.pages.views import NONCE_FIELD, Answer, plain_page
from mailer_core.store import rate_buckets
from mailer_core.store.conditions import is_condition_failure
from mailer_core.store.models import AccountModel, AutomationFactModel, MessageModel
from mailer_core.tracking import tokens
from mailer_core.triggers import actions as trigger_actions

MAX_BYTES = 64 * 1024
MAX_ANSWERS = 200
POSTS_PER_MINUTE = 10
POSTS_PER_DAY = 200
KEEP_DAYS = 30
_BY_ID = re.compile(r"(lead|contact|company)\[(\d{1,12})\](\[\])?")
_BY_NAME = re.compile(r"field\[([^\]]{1,200})\](\[\])?")
KINDS: dict[str, EntityType] = {"lead": "leads", "contact": "contacts", "company": "companies"}
_IGNORED = {NONCE_FIELD}


@dataclass(frozen=True)
class Submission:
    token: str
    method: str
    content_type: str
    body: bytes  # the POST's body, or the GET's query string
    now: datetime


@dataclass
class Outcome:
    """What became of a submission: the fields written, the answers left out and why."""

    written: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"written": self.written, "problems": self.problems}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | None) -> Outcome:
        data = json.loads(text or "{}")
        return cls(list(data.get("written") or []), list(data.get("problems") or []))


def parse(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """The submitted (name, value) pairs, in order; InvalidInput for a body we cannot read."""
    if content_type.lower().startswith("multipart/form-data"):
        message = BytesParser(policy=default_policy).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        pairs = []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str) and not part.get_filename():
                pairs.append((name, str(part.get_content())))
        return pairs
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_ANSWERS)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("the form's answers cannot be read", field="body") from None


def submission_key(token: str, pairs: Sequence[tuple[str, str]]) -> str:
    """The same view's same answers give the same key (a double post); anything else a new one."""
    canonical = json.dumps([token, sorted(pairs)], ensure_ascii=False)
    return "form#" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:40]


def _limited(account_id: int, message_id: str, now: datetime) -> bool:
    decision = rate_buckets.take(
        f"form#{int(account_id)}#{message_id}",
        rate_per_second=POSTS_PER_MINUTE / 60,
        daily_cap=POSTS_PER_DAY,
        now=now.timestamp(),
        burst=POSTS_PER_MINUTE,
    )
    return not decision.allowed


def handle(submission: Submission) -> Answer:
    """The thank-you page (or why nothing was written)."""
    token = tokens.verify(submission.token, kind=tokens.FORM)
    if token is None:
        return plain_page("Form not found", "This form's link is not valid.", status=404)
    if len(submission.body) > MAX_BYTES:
        return plain_page("Too much", "The form's answers are too long to be saved.", status=413)
    try:
        pairs = parse(submission.content_type, submission.body)
    except InvalidInput:
        return plain_page("Nothing saved", "The form's answers cannot be read.", status=400)
    answers = [(k, v) for k, v in pairs if k not in _IGNORED]
    if not answers:
        return plain_page("Nothing to save", "The form was sent empty.", status=200)
    try:
        message = MessageModel.get(int(token.account_id), token.message_id)
    except DoesNotExist:
        return plain_page("Form not found", "This form's email no longer exists.", status=404)
    if _limited(token.account_id, token.message_id, submission.now):
        return plain_page("Too many answers", "Please wait a minute and send the form again.", status=429)
    fact = AutomationFactModel(
        token.account_id,
        submission_key(submission.token, pairs),
        created_at=submission.now,
        state="writing",
        detail=token.message_id,
        expires_at=submission.now + timedelta(days=KEEP_DAYS),
    )
    try:
        fact.save(condition=AutomationFactModel.fact_key.does_not_exist())
    except PutError as exc:
        if not is_condition_failure(exc):
            raise
        return _repeat(token.account_id, fact.fact_key)
    try:
        outcome = write(message, answers, submission.now)
    except Exception as exc:
        _give_back(fact)
        if isinstance(exc, kommo_errors.KommoError | MailerError):
            logger.warning("form not written", exc_info=True, extra={"message_id": token.message_id})
            return plain_page("Please try again", "Your answers could not be saved right now.", status=503)
        raise
    try:
        fact.update(
            actions=[AutomationFactModel.state.set("done"), AutomationFactModel.detail.set(outcome.to_json())]
        )
    except Exception:
        logger.exception("form outcome not kept", extra={"message_id": token.message_id})
    return thank_you(outcome)


def _repeat(account_id: int, key: str) -> Answer:
    try:
        fact = AutomationFactModel.get(int(account_id), key)
    except DoesNotExist:
        return plain_page("Please try again", "Your answers could not be saved right now.", status=503)
    if fact.state != "done":
        return thank_you(Outcome())
    return thank_you(Outcome.from_json(fact.detail))


def _give_back(fact: AutomationFactModel) -> None:
    try:
        fact.delete(condition=AutomationFactModel.state == "writing")
    except Exception:
        logger.exception("a form's claim stays without its write", extra={"fact": fact.fact_key})


def thank_you(outcome: Outcome) -> Answer:
    page = plain_page("Thank you!", "Your answers were sent.", status=200)
    if not outcome.problems:
        return page
    items = "".join(f"<li>{html_lib.escape(p)}</li>" for p in outcome.problems)
    extra = (
        '<section class="problems" style="margin-top:1.5rem;text-align:left">'
        "<p>These answers could not be saved:</p>"
        f"<ul>{items}</ul></section>"
    )
    return Answer(200, page.html.replace("</main>", extra + "</main>", 1))


# -- writing to Kommo --------------------------------------------------------------------------


@dataclass
class _Wanted:
    kind: str  # lead, contact, company
    definition: Mapping[str, Any]
    values: list[str]
    label: str  # the name as submitted


def _client(account_id: int) -> KommoClient:
    try:
        account = AccountModel.get(int(account_id))
    except DoesNotExist:
        raise kommo_errors.KommoError("the account is not installed") from None
    return kommo_accounts.client_for_account(account)


def _definition(
    name: str, fields_of: Callable[[str], list[dict[str, Any]]]
) -> tuple[str, Mapping[str, Any] | None] | None:
    """(kind, the field's definition or None when Kommo has no such field) for a field's name;
    None for a name that is not one of ours (a button, the page's own field: only in the note)."""
    found = _BY_ID.fullmatch(name)
    if found:
        kind, field_id = found.group(1), int(found.group(2))
        return kind, next((d for d in fields_of(kind) if d.get("id") == field_id), None)
    by_name = _BY_NAME.fullmatch(name)
    if by_name is None:
        return None
    wanted = by_name.group(1).strip().lower()
    for kind in ("lead", "contact", "company"):
        for definition in fields_of(kind):
            if str(definition.get("name", "")).strip().lower() == wanted:
                return kind, definition
    return "lead", None


def _collect(
    answers: Sequence[tuple[str, str]], fields_of: Callable[[str], list[dict[str, Any]]], outcome: Outcome
) -> list[_Wanted]:
    wanted: dict[tuple[str, int], _Wanted] = {}
    for name, value in answers:
        found = _definition(name, fields_of)
        if found is None:
            continue
        kind, definition = found
        if definition is None:
            outcome.problems.append(f"{name}: no such field in Kommo")
            continue
        entry = wanted.setdefault((kind, int(definition["id"])), _Wanted(kind, definition, [], name))
        if value.strip():
            entry.values.append(value.strip())
    return [entry for entry in wanted.values() if entry.values]  # left empty: the field keeps its value


def write(
    message: MessageModel,
    answers: Sequence[tuple[str, str]],
    now: datetime,
    *,
    kommo: KommoClient | None = None,
) -> Outcome:
    """Write the answers to the email's entities and add the note; the outcome."""
    client = kommo or _client(int(message.account_id))
    ctx = trigger_actions.RunContext(message=message, kommo=client, now=now, send_template=lambda _: "")
    outcome = Outcome()
    definitions: dict[str, list[dict[str, Any]]] = {}

    def fields_of(kind: str) -> list[dict[str, Any]]:
        if kind not in definitions:
            definitions[kind] = client.custom_fields(KINDS[kind])
        return definitions[kind]

    by_entity: dict[tuple[EntityType, int], list[dict[str, Any]]] = {}
    labels: dict[tuple[EntityType, int], list[str]] = {}
    for entry in _collect(answers, fields_of, outcome):
        try:
            target = trigger_actions.target(ctx, entry.kind)
            multiple = str(entry.definition.get("type") or "") == "multiselect"
            value: Any = entry.values if multiple else entry.values[-1]
            element = kommo_fields.field_value(entry.definition, value, current=None)
        except (trigger_actions.NoTarget, InvalidInput) as exc:
            outcome.problems.append(f"{entry.label}: {exc.message}")
            continue
        by_entity.setdefault(target, []).append(element)
        labels.setdefault(target, []).append(entry.label)
    for (entity_type, entity_id), elements in by_entity.items():
        names = labels[(entity_type, entity_id)]
        try:
            client.set_custom_fields(entity_type, entity_id, elements)
            outcome.written.extend(names)
        except kommo_errors.KommoError as exc:
            if is_retryable(exc):
                raise
            outcome.problems.append(f"{', '.join(names)}: Kommo refused them ({exc})")
    _note(ctx, message, answers, outcome)
    return outcome


def is_retryable(exc: BaseException) -> bool:
    return kommo_errors.is_retryable(exc)


def _note(
    ctx: trigger_actions.RunContext,
    message: MessageModel,
    answers: Sequence[tuple[str, str]],
    outcome: Outcome,
) -> None:
    lines = ["Form filled in (email " + message.message_id + "):"]
    lines += [f"{name}: {value}" for name, value in answers]
    if outcome.problems:
        lines.append("Not saved:")
        lines += [f"- {problem}" for problem in outcome.problems]
    text = "\n".join(lines)[:15000]
    if message.entity_type and message.entity_id is not None:
        entity: tuple[EntityType, int] = (message.entity_type, int(message.entity_id))  # type: ignore[assignment]
    else:
        entity = trigger_actions.target(ctx, "lead")
    ctx.kommo.add_notes(entity[0], [NewNote(entity_id=entity[1], text=text)])
