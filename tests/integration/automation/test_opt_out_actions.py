"""An unsubscribe's optional tag and note on the Kommo contact, done by the actions function from
the "opted_out" event, as the account's settings say (docs/opt-out.md)."""

from __future__ import annotations

from datetime import UTC, datetime

from mailer_core.accounts import access
from mailer_core.automation import runner as automation
from mailer_core.base.clock import Clock
from mailer_core.events import jobs
from mailer_core.store.models import AccountModel, MessageModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.fixtures.automation import actions_jobs, drain_actions, events_of, sent_from

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def opt_out_settings(tag: str | None, note: bool) -> None:
    AccountModel(seed.ACCOUNT_ID).update(
        actions=[
            AccountModel.opt_out_tag.set(tag) if tag else AccountModel.opt_out_tag.remove(),
            AccountModel.opt_out_note.set(note),
        ]
    )
    access.forget(seed.ACCOUNT_ID)


def opted_out(message: MessageModel) -> str:
    job = jobs.EventJob(seed.ACCOUNT_ID, message.message_id, "opted_out", NOW.isoformat(), source="opted_out")
    return automation.handle_event(jobs.parse_job(job.to_body()), clock=Clock())  # type: ignore[arg-type]


def test_the_tag_and_the_note_go_on_the_contact_once(aws_stack: StackResources, kommo: KommoStandIn) -> None:
    # GIVEN an account that wants both, and a campaign email from a lead that was opted out of
    opt_out_settings("unsubscribed", True)
    message = sent_from("leads", seed.LEAD_OFFER, campaign_id="C1", locale="ru")
    # WHEN its "opted_out" event is handled, twice (SQS may deliver it again)
    assert opted_out(message) == "handled"
    assert opted_out(message) == "handled"
    queued = actions_jobs(aws_stack, delete=False)
    assert sorted({j.trigger_id for j in queued if isinstance(j, jobs.RunJob)}) == [
        automation.OPT_OUT_NOTE,
        automation.OPT_OUT_TAG,
    ]
    drain_actions(aws_stack)
    # THEN the lead's main contact has the tag and one note in the email's language
    contact = kommo.contact(seed.CONTACT_IVAN)
    assert contact is not None
    assert "unsubscribed" in [t["name"] for t in contact["_embedded"]["tags"]]
    notes = [n["params"]["text"] for n in kommo.notes("contacts") if n["entity_id"] == seed.CONTACT_IVAN]
    assert notes == [
        "Отписался от рассылки по ссылке в письме «Коммерческое предложение» (ivan@example.com)."
    ]
    # AND the message's timeline lists both runs
    done = [d for e, d in events_of(message.message_id) if e == "trigger"]
    assert len(done) == 2 and any("opt-out tag" in d for d in done) and any("opt-out note" in d for d in done)


def test_an_account_that_wants_neither_queues_nothing(aws_stack: StackResources, kommo: KommoStandIn) -> None:
    message = sent_from("leads", seed.LEAD_OFFER, campaign_id="C1")
    assert opted_out(message) == "handled"
    assert actions_jobs(aws_stack) == []
    assert kommo.notes("contacts") == []


def test_a_setting_turned_off_before_the_run_skips_it(aws_stack: StackResources, kommo: KommoStandIn) -> None:
    opt_out_settings(None, True)
    message = sent_from("leads", seed.LEAD_OFFER, campaign_id="C1")
    opted_out(message)
    opt_out_settings(None, False)
    drain_actions(aws_stack)
    assert kommo.notes("contacts") == []
    assert not [e for e, _ in events_of(message.message_id) if e.startswith("trigger")]
