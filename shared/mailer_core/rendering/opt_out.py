"""A campaign email's unsubscribe link in its body: the placeholder, the marker and the footer.

1. Rendering: `{{ unsubscribe_url }}` and EspoCRM's `{optOutUrl}` (legacy_placeholders)
   render as the marker `https://mailer.invalid/unsubscribe` (sandbox; `.invalid` never
   resolves), in every email and in the preview.
2. Sending (tracking.unsubscribe): `fill` replaces the marker in the rendered subject, HTML and
   text with the email's signed unsubscribe URL when the email is one of a campaign, and with
   `#` otherwise (a manager's single email has no opt-out: the link leads nowhere, as a
   trigger link that does not exist). Tracking never wraps the marker or the URL (both are
   unsubscribe-like links, `tracking.link_targets.trackable`).
3. A campaign email whose rendered body lacks the marker gets `with_footer`: a short line with
   the link, in the email's language, at the end of the HTML and of the plain-text part,
   unless the account turned the footer off (`opt_out_footer`); then a campaign refuses at
   its start a template without the placeholder (`has_unsubscribe_placeholder`).

Pure functions: no I/O, no Jinja2 (the track function and the campaign checks may load it).
"""

from __future__ import annotations

import html as html_lib
import re

from mailer_core.rendering import legacy_placeholders

MARKER = "https://mailer.invalid/unsubscribe"  # sandbox.PLACEHOLDER_BASE + "/unsubscribe"
NOWHERE = "#"  # what the placeholder becomes in an email that is not a campaign's

# `{{ unsubscribe_url }}`, `{{-unsubscribe_url|e}}` … (legacy `{optOutUrl}` is translated first).
_VARIABLE = re.compile(r"\{\{-?\s*unsubscribe_url\b")
# What renders no variable: raw blocks and comments.
_INERT = re.compile(r"\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}|\{#.*?#\}", re.DOTALL)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)

# (question, link words) per language; the email's locale picks one, English otherwise.
FOOTERS: dict[str, tuple[str, str]] = {
    "en": ("Don't want to receive these emails?", "Unsubscribe"),
    "ru": ("Не хотите получать эти письма?", "Отписаться"),
    "es": ("¿No quiere recibir estos correos?", "Darse de baja"),
    "pt": ("Não quer receber estes e-mails?", "Cancelar inscrição"),
}


def has_unsubscribe_placeholder(subject: str, html: str) -> bool:
    """Whether a template's body holds `{{ unsubscribe_url }}` or `{optOutUrl}`: what a
    campaign checks at its start when the account's footer is off. Only the body counts (a
    link in a subject cannot be followed); `subject` is taken so the check reads as the
    template does."""
    del subject
    source = _INERT.sub("", legacy_placeholders.translate(html or ""))
    return bool(_VARIABLE.search(source))


def language(locale: str | None) -> str:
    primary = (locale or "").replace("_", "-").split("-")[0].lower()
    return primary if primary in FOOTERS else "en"


def fill(text: str, url: str | None) -> str:
    """The marker replaced by `url`, or by `#` when there is none (not a campaign's email)."""
    if MARKER not in text:
        return text
    return text.replace(MARKER, url or NOWHERE)


def has_marker(rendered_html: str) -> bool:
    return MARKER in rendered_html


def footer_html(url: str, locale: str | None) -> str:
    question, words = (html_lib.escape(s) for s in FOOTERS[language(locale)])
    href = html_lib.escape(url, quote=True)
    return (
        '<div class="mailer-opt-out" style="margin:24px 0 0;font-size:12px;line-height:1.5;'
        f'color:#888888;text-align:center">{question} '
        f'<a href="{href}" style="color:#888888;text-decoration:underline">{words}</a></div>'
    )


def footer_text(url: str, locale: str | None) -> str:
    question, words = FOOTERS[language(locale)]
    return f"{question} {words}: {url}"


def with_footer(html: str, text: str | None, url: str, locale: str | None) -> tuple[str, str | None]:
    """The footer added to the HTML (before `</body>` when there is one) and to the plain-text
    part (None stays None: the MIME build makes it from the HTML, footer included)."""
    block = footer_html(url, locale)
    ends = list(_BODY_END.finditer(html))
    html = html[: ends[-1].start()] + block + html[ends[-1].start() :] if ends else html + block
    if text is not None:
        text = text.rstrip("\n") + "\n\n" + footer_text(url, locale) + "\n"
    return html, text
