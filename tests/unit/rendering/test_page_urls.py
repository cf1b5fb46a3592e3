"""The markers and placeholders of web pages, forms and the web version (rendering.page_urls)."""

from __future__ import annotations

import pytest
from mailer_core.rendering import page_urls
from mailer_core.rendering.sandbox import render_html


def fill(text: str) -> str:
    return page_urls.fill(
        text,
        page_url=lambda n: f"https://x.test/p/{n}",
        form_url=lambda: "https://x.test/f",
        web_url=lambda: "https://x.test/w",
    )


def test_every_spelling_renders_as_a_marker_that_fill_replaces() -> None:
    source = (
        '<a href="{web:1028}">a</a><a href="{{ web(1029) }}">b</a>'
        '<form action="{formlink}"></form><a href="{weblink}">c</a>'
    )
    rendered = render_html(source, {}).text
    assert (
        page_urls.WEB_PREFIX + "1028" in rendered
        and page_urls.FORMLINK in rendered
        and page_urls.WEBLINK in rendered
    )
    assert page_urls.page_numbers(rendered) == [1028, 1029]
    filled = fill(rendered)
    assert "mailer.invalid" not in filled
    assert 'href="https://x.test/p/1028"' in filled and 'action="https://x.test/f"' in filled
    assert 'href="https://x.test/w"' in filled


def test_a_text_never_rendered_gets_its_legacy_placeholders_filled() -> None:
    assert fill("Page: {web:1028}, web: {weblink}") == "Page: https://x.test/p/1028, web: https://x.test/w"
    assert page_urls.has_markers("{web:5}") and not page_urls.has_markers("{webx:5} {web}")


@pytest.mark.parametrize(
    ("source", "numbers"),
    [("{web:1028} {web:1028}", [1028]), ("{{ web(1030) }}", [1030]), ("{{ web(n) }} {triggerlink:3}", [])],
)
def test_the_page_numbers_a_source_names(source: str, numbers: list[int]) -> None:
    assert page_urls.source_page_numbers(source) == numbers


def test_a_marker_is_not_confused_with_a_longer_path() -> None:
    text = page_urls.PLACEHOLDER_BASE + "/formlinks " + page_urls.WEB_PREFIX + "12a"
    assert fill(text) == text.replace(page_urls.WEB_PREFIX + "12", "https://x.test/p/12")


def test_a_rendered_body_keeps_crm_text_that_looks_like_a_placeholder() -> None:
    rendered = render_html("<p>{{ lead.name }}</p>", {"lead": {"name": "{web:1028} {weblink}"}}).text
    assert not page_urls.has_markers(rendered, legacy=False)
    text = "{web:1028} " + page_urls.WEBLINK
    assert (
        page_urls.fill(text, page_url=str, form_url=str, web_url=lambda: "W", legacy=False) == "{web:1028} W"
    )
