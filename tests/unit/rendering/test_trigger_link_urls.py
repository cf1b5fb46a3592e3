"""Trigger links in rendered emails: markers, the stored form, targets as web addresses, and the
thank-you page's language. Pure functions."""

from __future__ import annotations

import pytest
from mailer_core.base import web_addresses
from mailer_core.rendering import sandbox as rendering
from mailer_core.rendering import trigger_link_urls
from mailer_core.store.models import LinkModel
from mailer_core.tracking import link_targets
from mailer_core.triggers import link_clicks as trigger_link_clicks


def test_the_marker_is_what_rendering_gives_a_triggerlink() -> None:
    # GIVEN both spellings rendered by the sandbox
    out = rendering.render('<a href="{triggerlink:8}">a</a> {{ triggerlink(12) }}', {}, html=True).text
    # THEN each is the marker of its number, and the markers are found in order
    assert trigger_link_urls.marker(8) in out and trigger_link_urls.marker(12) in out
    assert trigger_link_urls.marker_ids(out) == [8, 12]


def test_markers_are_replaced_whole_numbers_only() -> None:
    text = f"{trigger_link_urls.marker(8)} {trigger_link_urls.marker(80)}?x=1 {trigger_link_urls.marker(8)}"
    assert (
        trigger_link_urls.direct(text, {8: "https://a.example/", 80: None})
        == "https://a.example/ #?x=1 https://a.example/"
    )


@pytest.mark.parametrize(
    ("stored", "parsed"),
    [
        ("triggerlink:8", (8, None)),
        ("triggerlink:8:https://shop.example/offer?a=1:2", (8, "https://shop.example/offer?a=1:2")),
        ("triggerlink:8:javascript:alert(1)", None),  # never an open redirect to another scheme
        ("triggerlink:x:https://a.example/", None),
        ("https://shop.example/offer", None),
    ],
)
def test_the_stored_form_parses_back(stored: str, parsed: tuple[int, str | None] | None) -> None:
    assert link_targets.parse_stored(stored) == parsed


def test_the_stored_form_round_trips() -> None:
    for target in (None, "https://shop.example/o?x=1"):
        assert link_targets.parse_stored(link_targets.stored_form(3, target)) == (3, target)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("https://shop.example/offer", "https://shop.example/offer"),
        ("  HTTP://Shop.example/A  ", "http://Shop.example/A"),
        ("shop.example/offer?x=1", "https://shop.example/offer?x=1"),
        ("https://пример.рф/путь", "https://xn--e1afmkfd.xn--p1ai/%D0%BF%D1%83%D1%82%D1%8C"),
        ("https://a.example/%20x", "https://a.example/%20x"),
        ("", None),
        ("Ромашка", None),
        ("https://a.example/a b", None),
        ("mailto:anna@example.com", None),
        ("javascript:alert(1)", None),
        ("ftp://files.example/x", None),
        ("https://user:pass@a.example/", None),
        ("/relative/path", None),
    ],
)
def test_a_rendered_target_becomes_a_web_address_or_the_thank_you_page(
    text: str, address: str | None
) -> None:
    assert web_addresses.web_address(text) == address


def link(number: int, target: str | None) -> LinkModel:
    return LinkModel(1, number, name=f"link {number}", target=target, user_id=1)


def test_resolve_renders_variable_targets_and_names_unknown_links() -> None:
    # GIVEN a body naming links 1 (literal), 2 (a variable), 3 (the thank-you page) and 9 (none)
    body = " ".join(trigger_link_urls.marker(n) for n in (1, 2, 3, 9, 1))
    stored = {1: link(1, "https://a.example/"), 2: link(2, "{{ lead.cf[5] }}"), 3: link(3, None)}
    asked: list[list[int]] = []

    def load(ids: list[int]) -> dict[int, LinkModel]:
        asked.append(ids)
        return {n: stored[n] for n in ids if n in stored}

    # WHEN they are resolved
    resolved = trigger_link_urls.resolve(
        [body], load=load, render_target=lambda n, src: ("shop.example/x", ("lead.cf[5]",))
    )
    # THEN one load for all; variable targets rendered; the unknown link is named
    assert asked == [[1, 2, 3, 9]]
    assert resolved.targets == {1: "https://a.example/", 2: "https://shop.example/x", 3: None}
    assert resolved.unknown == (9,)
    assert resolved.missing == ("lead.cf[5]", "triggerlink(9)")


def test_resolve_reads_nothing_without_markers() -> None:
    def load(ids: list[int]) -> dict[int, LinkModel]:
        raise AssertionError("no read expected")

    assert (
        trigger_link_urls.resolve(["<p>no links</p>"], load=load, render_target=lambda n, s: ("", ())).targets
        == {}
    )


@pytest.mark.parametrize(
    ("locale", "accept", "language"),
    [
        ("ru", "en-US,en;q=0.9", "ru"),
        ("pt_BR", "", "pt"),
        (None, "es-ES,es;q=0.9,en;q=0.8", "es"),
        (None, "de-DE,de;q=0.9,pt;q=0.5,ru;q=0.7", "ru"),
        ("de", "fr", "en"),
        (None, "", "en"),
        (None, "ru;q=0, es;q=bad", "en"),
    ],
)
def test_the_thank_you_page_speaks_the_emails_language_else_the_browsers(
    locale: str | None, accept: str, language: str
) -> None:
    assert trigger_link_clicks.language(locale, accept) == language


def test_the_thank_you_page_says_thank_you() -> None:
    page = trigger_link_clicks.thank_you_page("ru")
    assert '<html lang="ru">' in page and "<h1>Спасибо!</h1>" in page
    assert "<h1>Thank you!</h1>" in trigger_link_clicks.thank_you_page(None, "fr")
