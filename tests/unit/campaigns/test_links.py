"""A campaign's links: UTM parameters on plain web links only; click tracking off on request."""

from __future__ import annotations

from mailer_core.campaigns.links import with_utm, without_click_tracking

UTM = {"utm_source": "mailer", "utm_campaign": "winter sale"}


def test_web_links_get_the_parameters_they_lack_and_keep_their_own() -> None:
    source = (
        '<a href="https://shop.example/p?id=1&amp;utm_source=newsletter">a</a>'
        "<a href='http://example.com'>b</a>"
    )
    out = with_utm(source, UTM)
    assert 'href="https://shop.example/p?id=1&amp;utm_source=newsletter&amp;utm_campaign=winter+sale"' in out
    assert "href='http://example.com?utm_source=mailer&amp;utm_campaign=winter+sale'" in out


def test_variables_markers_mail_links_and_anchors_are_left_alone() -> None:
    source = (
        '<a href="{{ lead.cf[\'Site\'] }}">v</a><a href="{triggerlink:3}">t</a>'
        '<a href="mailto:a@example.com">m</a><a href="#top">h</a><a href="https://x.example/{web:1}">w</a>'
    )
    assert with_utm(source, UTM) == source
    assert with_utm('<a href="https://x.example">x</a>', {}) == '<a href="https://x.example">x</a>'


def test_with_click_tracking_off_every_link_is_marked_for_tracking_to_leave_alone() -> None:
    source = '<p><a href="https://x.example">x</a> <A\nhref="https://y.example">y</A> <abbr>z</abbr></p>'
    out = without_click_tracking(source)
    assert out.count("data-mailer-notrack") == 2 and "<abbr>" in out
