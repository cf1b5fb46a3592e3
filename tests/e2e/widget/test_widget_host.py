"""The host page itself (devstack/widget_host): a probe widget (tests/support/widget_probe) calls
each platform method the page provides, in every area, against the local stack."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.__main__ import _banner
from devstack.kommo_standin import seed as kommo_seed
from devstack.system import LocalSystem, call
from devstack.widget_host.server import WidgetArchive
from tests.support.browser import fresh_page, screenshot_path
from tests.support.widget_host import ensure_vendor, open_area, probe_archive

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[LocalSystem]:
    """GIVEN the local stack, its host page serving the probe widget instead of the built one."""
    ensure_vendor()
    with LocalSystem() as running:
        running.host.archive = WidgetArchive(probe_archive(tmp_path_factory.mktemp("probe")))
        yield running


def host_state(system: LocalSystem) -> dict[str, Any]:
    with urllib.request.urlopen(system.host.origin + "/_host/state", timeout=10) as answer:
        return dict(json.load(answer))


def lines(page: Any) -> list[str]:
    return [t.strip() for t in page.locator(".probe-line").all_inner_texts()]


def test_a_lead_card_runs_the_callbacks_and_authorized_ajax_reaches_the_api(
    system: LocalSystem, page: Any
) -> None:
    open_area(page, f"{system.host.origin}/leads/detail/{kommo_seed.LEAD_OFFER}?lang=en")
    page.wait_for_function("document.querySelectorAll('.probe-line').length >= 3")
    found = lines(page)
    assert "area lcard entity leads widgets-area leads_card" in found
    # a real token for the demo manager, across origins (the API allows the host's origin)
    assert f"me {kommo_seed.MANAGER_USER_ID} account {kommo_seed.ACCOUNT_ID}" in found
    assert "contacts ivan.petrov@example.com,olga.smirnova@example.com,olga.home@example.org" in found
    # render_template put the probe's twig template, in English, in the right-hand panel
    assert page.locator("#host-widgets-panel .probe-block").inner_text().startswith("Host probe: Hello")
    page.locator(".host-email", has_text="olga.smirnova@example.com").click()
    page.locator("#probe-modal").click()
    page.locator("#probe-modal-body").wait_for()
    assert "email action olga.smirnova@example.com" in lines(page)
    page.screenshot(path=screenshot_path("host-probe-lead-card"))


def test_the_card_speaks_russian_when_the_page_is_russian(system: LocalSystem, browser: Any) -> None:
    with fresh_page(browser, locale="ru-RU") as page:
        open_area(page, f"{system.host.origin}/contacts/detail/{kommo_seed.CONTACT_OLGA}")
        assert page.locator(".probe-block").inner_text().startswith("Проба хоста: Привет")
        page.screenshot(path=screenshot_path("host-probe-contact-card-ru"))


def test_a_list_selection_reaches_leads_selected_with_the_rows_emails(system: LocalSystem, page: Any) -> None:
    open_area(page, f"{system.host.origin}/leads/list/")
    checks = page.locator(".host-list__check")
    for n in range(3, 6):  # three of the campaign's leads, one address each
        checks.nth(n).check()
    page.locator("#host-list-more").click()
    page.locator("#host-list-widget").click()
    assert page.locator("#probe-selected").inner_text() == "3 leads, 3 emails"
    page.screenshot(path=screenshot_path("host-probe-list"))


def test_the_settings_modal_calls_settings_and_on_save_and_keeps_the_fields(
    system: LocalSystem, page: Any
) -> None:
    open_area(page, f"{system.host.origin}/settings/widgets/")
    page.locator("#host-widget-tile").click()
    page.locator("#probe-settings").wait_for()  # the settings callback wrote into the modal
    assert page.locator("input[name=api_url]").input_value() == system.stack.api_url
    page.screenshot(path=screenshot_path("host-probe-settings"))
    page.locator("#host-settings-save").click()
    page.wait_for_selector(".host-modal-overlay", state="detached")
    assert f"onSave {system.stack.api_url}" in lines(page)
    assert host_state(system)["widget_settings"]["api_url"] == system.stack.api_url


def test_advanced_settings_get_their_work_area(system: LocalSystem, page: Any) -> None:
    open_area(page, f"{system.host.origin}/settings/widgets/mailer_local/?lang=ru")
    assert page.locator("#work-area-mailer_local #probe-advanced").inner_text() == "Проба"
    page.wait_for_function(
        "[...document.querySelectorAll('.probe-line')].some(l => l.textContent.startsWith('me '))"
    )
    assert f"me {kommo_seed.ADMIN_USER_ID} account {kommo_seed.ACCOUNT_ID}" in lines(
        page
    )  # the settings' user


def test_the_pipeline_dialogs_settings_reach_the_hook_and_the_post_sends(
    system: LocalSystem, page: Any
) -> None:
    manager = system.widget_token()  # the leads' responsible user: the action sends from their mailbox
    api = system.stack.api_url
    status, _ = call(
        "POST",
        f"{api}/v1/mailboxes",
        manager,
        {
            "sender_name": "Мария Менеджер",
            "sender_email": "maria.manager@mailerdemo.example",
            "smtp_host": "127.0.0.1",
            "smtp_port": system.sink.smtp_port,
            "smtp_security": "none",
            "smtp_password": "local-password",
            "is_default": True,
        },
    )
    assert status == 201
    status, template = call(
        "POST",
        f"{api}/v1/templates",
        manager,
        {
            "name": "Probe stage",
            "subject": "{{ lead.name }}: next step",
            "html": "<p>Hello {{ contact.first_name }}</p>",
            "is_public": True,
        },
    )
    assert status == 201, template
    open_area(page, f"{system.host.origin}/settings/pipeline/leads/{kommo_seed.PIPELINE_ID}/")
    stage = page.locator(f".host-pipeline__stage[data-status='{kommo_seed.STATUS_QUALIFIED}']")
    stage.locator(".host-pipeline__add").click()
    page.wait_for_selector("#probe-dp")  # dpSettings filled the secret from the API
    page.locator("#widget_settings__fields_wrapper input[name=template_id]").fill(template["id"])
    page.screenshot(path=screenshot_path("host-probe-pipeline-dialog"))
    page.locator("#host-dp-save").click()
    page.wait_for_selector(
        f".host-pipeline__stage[data-status='{kommo_seed.STATUS_QUALIFIED}'] .host-pipeline__move"
    )
    stage.locator(".host-pipeline__lead").select_option(str(kommo_seed.LEAD_REDESIGN))
    stage.locator(".host-pipeline__move").click()
    page.wait_for_selector(".host-pipeline__answer[data-status]")
    [post] = host_state(system)["dp_posts"]
    assert post["status"] == 202, post
    assert post["settings"]["template_id"] == template["id"]
    page.screenshot(path=screenshot_path("host-probe-pipeline-posted"))
    system.stack.drain(timeout=30)
    arrived = system.sink.wait_for(
        lambda m: m.subject == "Website redesign for Blue Harbor: next step", timeout=30
    )
    assert arrived.rcpt_tos == ("john.smith@example.com",)


def test_the_salesbot_step_shows_its_exits_and_saves_its_steps(system: LocalSystem, page: Any) -> None:
    open_area(page, f"{system.host.origin}/salesbot/designer/")
    page.locator(".host-salesbot__exit").first.wait_for()
    assert page.locator(".host-salesbot__exit").all_inner_texts() == ["Sent", "Failed"]
    page.locator(".host-salesbot__step input[name=template_id]").fill("T-1")
    page.locator("#host-salesbot-save").click()
    page.wait_for_function("document.querySelector('#host-salesbot-saved').textContent.length > 0")
    saved = host_state(system)["salesbot"]
    assert saved["steps"][0]["question"][0]["params"]["data"] == {"template_id": "T-1"}
    page.screenshot(path=screenshot_path("host-probe-salesbot"))


def test_a_page_without_the_archive_says_what_to_run(system: LocalSystem, page: Any, tmp_path: Path) -> None:
    kept = system.host.archive
    system.host.archive = WidgetArchive(tmp_path / "none.zip")
    try:
        page.goto(f"{system.host.origin}/leads/detail/{kommo_seed.LEAD_OFFER}")
        assert "run `make widget`" in page.locator("#host-error").inner_text()
    finally:
        system.host.archive = kept


def test_make_runs_banner_shows_the_host_pages_address(system: LocalSystem) -> None:
    assert f"Kommo host page  {system.host.url}" in _banner(system)
    with urllib.request.urlopen(system.host.url, timeout=10) as index:
        assert index.status == 200 and b"HOST_CONTEXT" in index.read()
