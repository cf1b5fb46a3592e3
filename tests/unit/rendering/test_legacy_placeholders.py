"""The widget's legacy placeholders become Jinja2; nothing else in a template changes."""

from __future__ import annotations

import pytest
from mailer_core.rendering.legacy_placeholders import has_legacy_placeholders, translate


@pytest.mark.parametrize(
    ("legacy", "jinja"),
    [
        ("{subject}", "{{ message.subject }}"),
        ("{sended_at}", "{{ message.sent_at }}"),
        ("{id}", "{{ message.id }}"),
        ("{date}", "{{ today }}"),
        ("{formlink}", "{{ formlink() }}"),
        ("{weblink}", "{{ weblink() }}"),
        ("{triggerlink:8}", "{{ triggerlink(8) }}"),
        ("{web:1028}", "{{ web(1028) }}"),
    ],
)
def test_each_placeholder_becomes_its_jinja_expression(legacy: str, jinja: str) -> None:
    assert translate(legacy) == jinja
    assert translate(f"<p>before {legacy} after</p>") == f"<p>before {jinja} after</p>"


def test_the_manuals_examples_translate() -> None:
    assert translate('<a href="{triggerlink:8}">Read the offer</a>') == (
        '<a href="{{ triggerlink(8) }}">Read the offer</a>'
    )
    note = "Email subject: {subject} Date sent: {sended_at} email ID: {id}"
    assert translate(note) == (
        "Email subject: {{ message.subject }} Date sent: {{ message.sent_at }} email ID: {{ message.id }}"
    )
    form = '<form action="{formlink}"><a href="{weblink}">Open WEB-form.</a></form>'
    assert (
        translate(form)
        == '<form action="{{ formlink() }}"><a href="{{ weblink() }}">Open WEB-form.</a></form>'
    )


@pytest.mark.parametrize(
    "text",
    [
        "{{id}}",  # the Jinja2 variable id, not the legacy {id}
        "{{ subject }}",
        "{% if date %}{{ date }}{% endif %}",
        "{# {subject} in a comment #}",
        "{% raw %}{subject} and {triggerlink:8}{% endraw %}",
        "{{ '{subject}' }}",
        "<style>p {color: red} .id {margin: 0}</style>",
        "{Subject} {SUBJECT} { subject } {subject :1} {reset} {unknown} {triggerlink:} {triggerlink:x}",
        "{web} {date:5}",
        "{{doc_pdf_download_link}}",
        "no braces at all",
        "",
    ],
)
def test_everything_else_is_left_alone(text: str) -> None:
    assert translate(text) == text
    assert not has_legacy_placeholders(text)


def test_placeholders_next_to_jinja_tags_are_translated() -> None:
    assert translate("{{ lead.name }}{subject}{% if x %}{id}{% endif %}") == (
        "{{ lead.name }}{{ message.subject }}{% if x %}{{ message.id }}{% endif %}"
    )


def test_translation_is_idempotent_and_pure() -> None:
    text = "Hi {subject} {triggerlink:3} {{ lead.name }}"
    once = translate(text)
    assert translate(once) == once
    assert translate(text) == once
    assert has_legacy_placeholders(text)
