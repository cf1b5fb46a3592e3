"""Clicks on trigger links: one-time links run their triggers once per entity, under any number
of concurrent clicks and across the entity's emails and contacts; other links on every click;
machines (scanners, HEAD, clicks right after delivery) run nothing and use nothing up."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from mailer_core.base.clock import FakeClock
from mailer_core.store.models import AutomationFactModel
from mailer_core.tracking import routes as tracking
from mailer_core.triggers import link_clicks as trigger_link_clicks
from pynamodb.exceptions import DoesNotExist

from devstack.kommo_standin import seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.automation import drain_actions, events_of
from tests.support.fixtures.links import (
    BASE,
    SCANNER,
    SentEmail,
    hit,
    link_jobs,
    make_link,
    person_request,
    send,
    trigger,
)
from tests.support.fixtures.tracking import fresh
from tests.support.kommo_accounts import serialize_moto
from tests.support.smtp_servers import SmtpTestServer

pytestmark = pytest.mark.usefixtures("ready")

OFFER = "https://shop.example/offer"
HTML = '<p><a href="{triggerlink:1}">Read the offer</a></p>'
LEAD_KEY = f"leads:{seed.LEAD_OFFER}"


@pytest.fixture
def familiar(admin: ApiClient) -> str:
    """The worked example's trigger: move the lead to «Familiar with the offer»."""
    return trigger(admin, "Change stage to Familiar with the offer", "stage", status_id=seed.STATUS_FAMILIAR)


def one_time_link(admin: ApiClient, trigger_id: str, **extra: Any) -> None:
    made = {"once": True, "target": OFFER, "trigger_ids": [trigger_id], **extra}
    assert make_link(admin, "Link to the offer", **made)["id"] == 1


def once_fact(key: str) -> AutomationFactModel | None:
    try:
        return AutomationFactModel.get(seed.ACCOUNT_ID, f"once#1#{key}", consistent_read=True)
    except DoesNotExist:
        return None


def test_fifty_concurrent_clicks_on_a_one_time_link_run_its_triggers_once(
    admin: ApiClient,
    manager: ApiClient,
    familiar: str,
    aws_stack: StackResources,
    smtp: SmtpTestServer,
    later: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a one-time link in a sent email, and moto's requests made atomic as DynamoDB's are
    one_time_link(admin, familiar)
    [path] = send(manager, aws_stack, smtp, HTML).clicks()
    serialize_moto(monkeypatch)
    start = threading.Barrier(50)
    answers: list[tracking.ClickAnswer | None] = []

    def click() -> None:
        start.wait()
        answers.append(tracking.handle_click(person_request(path, later.now())))

    # WHEN 50 people's clicks arrive at once
    threads = [threading.Thread(target=click) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN every click is redirected and counted, and exactly one event is queued
    assert len(answers) == 50 and all(a is not None and a.location == OFFER for a in answers)
    [job] = link_jobs(aws_stack)
    assert job.source == "link1" and job.trigger_ids == (familiar,)
    assert once_fact(LEAD_KEY) is not None
    # AND a later click still redirects but queues nothing
    again = hit(path)
    assert again.status == 302 and again.headers["location"] == OFFER
    assert link_jobs(aws_stack) == []
    assert fresh(job.message_id).link_clicks == [51]


def test_a_one_time_link_runs_once_per_entity_across_its_emails_and_contacts(
    admin: ApiClient,
    manager: ApiClient,
    familiar: str,
    aws_stack: StackResources,
    smtp: SmtpTestServer,
    later: FakeClock,
) -> None:
    # GIVEN one email of the lead to each of its two contacts, and one email of another lead
    one_time_link(admin, familiar)
    to_ivan = send(manager, aws_stack, smtp, HTML, to=["ivan.petrov@example.com"])
    to_olga = send(manager, aws_stack, smtp, HTML, to=["olga.smirnova@example.com"])
    other = send(manager, aws_stack, smtp, HTML, entity={"type": "leads", "id": seed.LEAD_REDESIGN})
    # WHEN both contacts click, and the other lead's contact clicks
    for email in (to_ivan, to_olga, to_ivan, other):
        assert hit(email.clicks()[0]).status == 302
    # THEN the lead's triggers were queued once (for the first click), the other lead's once
    jobs = link_jobs(aws_stack)
    assert sorted(j.message_id for j in jobs) == sorted([to_ivan.message_id, other.message_id])
    assert once_fact(LEAD_KEY) is not None and once_fact(f"leads:{seed.LEAD_REDESIGN}") is not None


def test_one_email_to_two_contacts_of_a_lead_runs_once(
    admin: ApiClient,
    manager: ApiClient,
    familiar: str,
    aws_stack: StackResources,
    smtp: SmtpTestServer,
    later: FakeClock,
) -> None:
    # GIVEN one email to both contacts of the lead
    one_time_link(admin, familiar)
    email = send(manager, aws_stack, smtp, HTML, to=["ivan.petrov@example.com", "olga.smirnova@example.com"])
    # WHEN each contact clicks their copy
    for agent in ("Mozilla/5.0 (Windows NT 10.0) Chrome/131.0", "Mozilla/5.0 (iPhone) Mobile Safari/604.1"):
        assert hit(email.clicks()[0], agent=agent).status == 302
    # THEN one run
    assert len(link_jobs(aws_stack)) == 1


def test_a_one_time_link_in_an_email_without_an_entity_runs_once_for_that_email(
    admin: ApiClient,
    manager: ApiClient,
    familiar: str,
    aws_stack: StackResources,
    smtp: SmtpTestServer,
    later: FakeClock,
) -> None:
    one_time_link(admin, familiar)
    email = send(manager, aws_stack, smtp, HTML, entity=None, to=["someone@example.com"])
    for _ in range(2):
        assert hit(email.clicks()[0]).status == 302
    assert len(link_jobs(aws_stack)) == 1
    assert once_fact(f"msg:{email.message_id}") is not None and once_fact(LEAD_KEY) is None


def test_a_repeatable_link_runs_again_after_ten_minutes_not_on_every_click_of_a_loop(
    admin: ApiClient,
    manager: ApiClient,
    aws_stack: StackResources,
    smtp: SmtpTestServer,
    later: FakeClock,
) -> None:
    task = trigger(admin, "Call the client", "task", text="The client asked for a call")
    make_link(admin, "Call me", trigger_ids=[task])
    email = send(manager, aws_stack, smtp, HTML)
    # WHEN, early on a day, a browser-like loop clicks 30 times, then once more 10 minutes later
    tomorrow = (later.now() + timedelta(days=1)).replace(hour=0, minute=5, second=0)
    later.current = tomorrow
    for _ in range(30):
        page = hit(email.clicks()[0])
        assert page.status == 200 and "Thank you!" in page.body.decode()
    assert len(link_jobs(aws_stack)) == 1
    later.advance(trigger_link_clicks.REPEAT_EVERY)
    assert hit(email.clicks()[0]).status == 200
    jobs = link_jobs(aws_stack)
    assert len(jobs) == 1 and jobs[0].source.startswith("link1.") and jobs[0].trigger_ids == (task,)
    assert once_fact(LEAD_KEY) is None
    # THEN no more than REPEATS_PER_DAY runs that day, however patient the loop
    for _ in range(trigger_link_clicks.REPEATS_PER_DAY + 5):
        later.advance(trigger_link_clicks.REPEAT_EVERY)
        hit(email.clicks()[0])
    assert 2 + len(link_jobs(aws_stack)) == trigger_link_clicks.REPEATS_PER_DAY
    assert later.now().date() == tomorrow.date()


@pytest.mark.parametrize(
    ("method", "agent", "headers"),
    [
        ("GET", SCANNER, {}),
        ("HEAD", "Mozilla/5.0 (Windows NT 10.0) Chrome/131.0", {}),
        ("GET", "Mozilla/5.0 (Windows NT 10.0) Chrome/131.0", {"sec-purpose": "prefetch"}),
        ("GET", "python-requests/2.32", {}),
    ],
    ids=["scanner", "head", "prefetch", "library"],
)
def test_machine_traffic_runs_nothing_and_does_not_use_up_a_one_time_link(
    admin: ApiClient,
    manager: ApiClient,
    familiar: str,
    aws_stack: StackResources,
    smtp: SmtpTestServer,
    later: FakeClock,
    method: str,
    agent: str,
    headers: dict[str, str],
) -> None:
    one_time_link(admin, familiar)
    email = send(manager, aws_stack, smtp, HTML)
    [path] = email.clicks()
    # WHEN a machine follows the link
    answer = hit(path, method=method, agent=agent, **headers)
    # THEN it is redirected and counted as a machine, nothing is queued, the link is not used up
    assert answer.status == 302 and answer.headers["location"] == OFFER
    assert fresh(email.message_id).machine_link_clicks == [1]
    assert link_jobs(aws_stack) == [] and once_fact(LEAD_KEY) is None
    # AND a person's click afterwards still runs the triggers
    assert hit(path).status == 302
    assert len(link_jobs(aws_stack)) == 1


def test_a_click_right_after_delivery_is_a_scanners_and_runs_nothing(
    admin: ApiClient, manager: ApiClient, familiar: str, aws_stack: StackResources, smtp: SmtpTestServer
) -> None:
    one_time_link(admin, familiar)
    email = send(manager, aws_stack, smtp, HTML)
    assert hit(email.clicks()[0]).status == 302  # the track function's own clock: within seconds
    assert link_jobs(aws_stack) == [] and once_fact(LEAD_KEY) is None


def test_with_the_machine_filter_off_a_head_request_still_runs_nothing(
    admin: ApiClient,
    manager: ApiClient,
    familiar: str,
    aws_stack: StackResources,
    smtp: SmtpTestServer,
    later: FakeClock,
) -> None:
    from mailer_core.store.models import AccountModel
    from mailer_core.tracking import machine_traffic

    AccountModel.get(seed.ACCOUNT_ID).update(actions=[AccountModel.filter_machine_traffic.set(False)])
    machine_traffic.forget_switches()
    one_time_link(admin, familiar)
    email = send(manager, aws_stack, smtp, HTML)
    assert hit(email.clicks()[0], method="HEAD").status == 302
    assert link_jobs(aws_stack) == [] and once_fact(LEAD_KEY) is None


def test_a_forged_token_gets_a_harmless_page(
    admin: ApiClient, manager: ApiClient, familiar: str, aws_stack: StackResources, smtp: SmtpTestServer
) -> None:
    one_time_link(admin, familiar)
    [path] = send(manager, aws_stack, smtp, HTML).clicks()
    forged = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    for bad in (forged, "/c/not-a-token", "/c/" + "x" * 300):
        page = hit(bad)
        assert page.status == 404 and "location" not in page.headers
        assert b"Link not found" in page.body
    assert link_jobs(aws_stack) == []


def test_a_link_deleted_after_sending_still_redirects_and_runs_nothing(
    admin: ApiClient,
    manager: ApiClient,
    familiar: str,
    aws_stack: StackResources,
    smtp: SmtpTestServer,
    later: FakeClock,
) -> None:
    one_time_link(admin, familiar)
    email = send(manager, aws_stack, smtp, HTML)
    assert admin.delete("/v1/links/1").status == 204
    answer = hit(email.clicks()[0])
    assert answer.status == 302 and answer.headers["location"] == OFFER
    assert link_jobs(aws_stack) == []


def test_a_failed_announcement_gives_the_one_time_link_back(
    admin: ApiClient,
    manager: ApiClient,
    familiar: str,
    aws_stack: StackResources,
    smtp: SmtpTestServer,
    later: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one_time_link(admin, familiar)
    [path] = send(manager, aws_stack, smtp, HTML).clicks()

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("SQS refused an action job")

    # WHEN the queue refuses the first click's event
    with monkeypatch.context() as patched:
        patched.setattr(trigger_link_clicks.announce, "announce_link", refuse)
        assert hit(path).status == 302  # the person still gets to the offer
    # THEN the link is not used up: the next click runs the triggers
    assert once_fact(LEAD_KEY) is None
    assert hit(path).status == 302
    assert len(link_jobs(aws_stack)) == 1


def test_the_worked_example_a_click_moves_the_lead_once(
    admin: ApiClient,
    manager: ApiClient,
    familiar: str,
    aws_stack: StackResources,
    smtp: SmtpTestServer,
    kommo: KommoStandIn,
    later: FakeClock,
) -> None:
    # GIVEN «Link to the offer», one-time, moving the lead to «Familiar with the offer»
    one_time_link(admin, familiar)
    email: SentEmail = send(manager, aws_stack, smtp, HTML)
    # WHEN the client clicks it twice and the actions function runs what was queued
    for _ in range(2):
        assert hit(email.clicks()[0]).headers["location"] == OFFER
    drain_actions(aws_stack)
    # THEN the lead is in «Familiar with the offer», and the run is in the email's timeline once
    lead = kommo.lead(seed.LEAD_OFFER)
    assert lead is not None and lead["status_id"] == seed.STATUS_FAMILIAR
    runs = [d for e, d in events_of(email.message_id) if e == "trigger"]
    assert len(runs) == 1 and "Familiar with the offer" in runs[0]
    assert BASE in email.html


def test_the_thank_you_page_follows_the_browser_without_an_email_locale(
    admin: ApiClient, manager: ApiClient, aws_stack: StackResources, smtp: SmtpTestServer, later: FakeClock
) -> None:
    make_link(admin, "Thanks")
    [path] = send(manager, aws_stack, smtp, HTML).clicks()
    pages = {
        accept: hit(path, **{"accept-language": accept}).body.decode()
        for accept in ("pt-BR,pt;q=0.9", "ru-RU,ru;q=0.9,en;q=0.8", "de-DE", "")
    }
    assert "Obrigado!" in pages["pt-BR,pt;q=0.9"] and "Спасибо!" in pages["ru-RU,ru;q=0.9,en;q=0.8"]
    assert "Thank you!" in pages["de-DE"] and "Thank you!" in pages[""]
