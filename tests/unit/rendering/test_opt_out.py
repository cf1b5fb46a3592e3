"""The unsubscribe placeholder, its marker, the footer, the token and the MIME headers of a
campaign email (docs/opt-out.md). Pure functions: no AWS, no SMTP."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest
from mailer_core.adapters.mime import ONE_CLICK, OutgoingEmail, build_message, spool
from mailer_core.rendering import opt_out
from mailer_core.rendering import sandbox as rendering
from mailer_core.tracking import link_targets, tokens
from mailer_core.tracking import rewrite as tracking

SECRET = "unit-test-secret"
URL = "https://abcdefgh12.execute-api.eu-central-1.amazonaws.com/u/" + "A" * 86


@pytest.mark.parametrize(
    "body",
    [
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a>',
        '<a href="{{unsubscribe_url}}">x</a>',
        "{{- unsubscribe_url|e }}",
        '<a href="{optOutUrl}">Отписаться</a>',
        "{% if 1 %}{{ unsubscribe_url }}{% endif %}",
    ],
)
def test_a_body_with_either_placeholder_has_one(body: str) -> None:
    assert opt_out.has_unsubscribe_placeholder("Offer", body)
    # AND rendering gives the marker there, which `fill` replaces
    rendered = rendering.render(body, {}, html=True).text
    assert opt_out.has_marker(rendered)
    assert URL in opt_out.fill(rendered, URL) and opt_out.MARKER not in opt_out.fill(rendered, URL)


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Offer", "<p>No link here</p>"),
        ("{{ unsubscribe_url }}", "<p>only the subject has it</p>"),
        ("Offer", "{{ unsubscribe_url_old }} {optouturl} {{ 'unsubscribe_url' }}"),
        ("Offer", "{% raw %}{{ unsubscribe_url }}{% endraw %}"),
        ("Offer", ""),
    ],
)
def test_a_body_without_it_has_none(subject: str, body: str) -> None:
    assert not opt_out.has_unsubscribe_placeholder(subject, body)


def test_a_commented_out_placeholder_does_not_count() -> None:
    assert not opt_out.has_unsubscribe_placeholder("", "{# {{ unsubscribe_url }} #}")
    assert not opt_out.has_unsubscribe_placeholder("", "{# {optOutUrl} #}")
    assert opt_out.has_unsubscribe_placeholder("", "{# old #}{{ unsubscribe_url }}")


def test_without_a_url_the_placeholder_leads_nowhere() -> None:
    rendered = rendering.render('<a href="{optOutUrl}">x</a>', {}, html=True).text
    assert opt_out.fill(rendered, None) == '<a href="#">x</a>'


def test_tracking_never_wraps_the_marker_or_the_url() -> None:
    assert not link_targets.trackable(opt_out.MARKER, "https://t.example")
    assert not link_targets.trackable("https://t.example/u/abc", "https://t.example")


@pytest.mark.parametrize(
    ("locale", "words"),
    [
        ("ru_RU", "Отписаться"),
        ("ru", "Отписаться"),
        ("en", "Unsubscribe"),
        ("de", "Unsubscribe"),
        (None, "Unsubscribe"),
        ("es-MX", "Darse de baja"),
        ("pt_BR", "Cancelar inscrição"),
    ],
)
def test_the_footer_speaks_the_locales_language_or_english(locale: str | None, words: str) -> None:
    html, text = opt_out.with_footer("<p>Hi</p>", "Hi\n", URL, locale)
    assert html.startswith('<p>Hi</p><div class="mailer-opt-out"') and f'href="{URL}"' in html
    assert words in html
    assert text is not None and text.startswith("Hi\n\n") and text.endswith(f"{words}: {URL}\n")


def test_the_footer_goes_before_the_body_end_and_a_missing_text_part_stays_missing() -> None:
    html, text = opt_out.with_footer("<html><body><p>Hi</p></body></html>", None, URL, "en")
    assert html.endswith("</div></body></html>") and text is None


def test_an_unsubscribe_token_names_the_message_and_only_verifies_as_one() -> None:
    token = tokens.unsubscribe_token(7, "01JMSG", 1_700_000_000, secret=SECRET)
    found = tokens.verify(token, kind=tokens.UNSUBSCRIBE, secret=SECRET)
    assert found is not None and (found.account_id, found.message_id) == (7, "01JMSG")
    # not a click or an open token, not with another secret, not altered
    assert tokens.verify(token, kind=tokens.CLICK, secret=SECRET) is None
    assert tokens.verify(token, kind=tokens.UNSUBSCRIBE, secret="other") is None
    altered = token[:10] + ("B" if token[10] == "A" else "A") + token[11:]
    assert tokens.verify(altered, kind=tokens.UNSUBSCRIBE, secret=SECRET) is None
    # and an open token of the same message is no unsubscribe token
    opened = tokens.open_token(7, "01JMSG", 1_700_000_000, secret=SECRET)
    assert tokens.verify(opened, kind=tokens.UNSUBSCRIBE, secret=SECRET) is None


def _email(**fields: object) -> OutgoingEmail:
    return OutgoingEmail(
        sender_name="Анна",
        sender_email="anna@example.com",
        to=("client@example.com",),
        subject="Offer",
        html="<p>Hi</p>",
        message_id="<01J@example.com>",
        date=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        **fields,  # type: ignore[arg-type]
    )


def test_the_headers_carry_the_whole_url_unencoded_and_offer_one_click() -> None:
    message = build_message(_email(unsubscribe_url=URL))
    spool(message)
    raw = message.as_bytes()
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0].split(b"List-Unsubscribe")[1]
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(parsed["List-Unsubscribe"]).strip() == f"<{URL}>"
    assert parsed["List-Unsubscribe-Post"] == ONE_CLICK == "List-Unsubscribe=One-Click"


def test_a_short_url_stays_on_the_header_line_and_an_email_without_one_has_no_headers() -> None:
    raw = build_message(_email(unsubscribe_url="https://t.example/u/x")).as_bytes()
    assert b"\r\nList-Unsubscribe: <https://t.example/u/x>\r\n" in raw
    plain = build_message(_email()).as_bytes()
    assert b"List-Unsubscribe" not in plain


@pytest.mark.parametrize("bad", ["https://t.example/u/x>, <mailto:a@b", "https://t.example/u/x\r\nBcc: a@b"])
def test_a_url_that_would_break_the_header_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        build_message(_email(unsubscribe_url=bad))


@pytest.mark.parametrize("name", ["List-Unsubscribe", "list-unsubscribe-post"])
def test_the_headers_are_never_given_twice(name: str) -> None:
    with pytest.raises(ValueError, match="not both"):
        build_message(_email(unsubscribe_url=URL, extra_headers=((name, "<https://other.example/>"),)))


def test_the_tracking_rewrite_leaves_the_marker_for_the_send_to_fill() -> None:
    body = f'<a href="{opt_out.MARKER}">Unsubscribe</a> <a href="https://shop.example/">Shop</a>'
    rewritten = tracking.rewrite(body, account_id=1, message_id="M", sent_at=1)
    assert opt_out.MARKER in rewritten.html  # unchanged, whether tracking is on or off
