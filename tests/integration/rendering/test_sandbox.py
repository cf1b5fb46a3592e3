"""The sandbox refuses template injection, markup injection through CRM data, and runaway renders."""

from __future__ import annotations

import time

import pytest
from mailer_core.rendering import sandbox as rendering
from mailer_core.rendering.sandbox import Limits, RenderError, RenderLimitExceeded

CONTEXT = {"lead": {"name": "<b onmouseover=alert(1)>Ромашка</b>", "price": 1250}, "items": list(range(100))}


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__.os }}",
        "{{ lead.__class__.__base__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ range.__globals__ }}",
        "{{ lead.name.__add__ }}",
        "{{ ''.format.__globals__ }}",
        "{{ '{0.__class__}'.format(lead) }}",
        "{{ lead.pop('name') }}",
        "{{ items.append(1) }}",
        "{% set x = lead.update({'name': 1}) %}",
        "{{ lead.name|attr('__class__') }}",
        "{% include '/etc/passwd' %}",
        "{% import 'os' as os %}",
        "{% extends 'base.html' %}",
    ],
)
def test_template_injection_payloads_are_refused(payload: str) -> None:
    with pytest.raises(RenderError) as caught:
        rendering.render_html(payload, CONTEXT)
    assert "object" not in caught.value.reason or "not allowed" in caught.value.reason


def test_unknown_names_reach_nothing() -> None:
    rendered = rendering.render_html(
        "{{ config }}{{ request }}{{ os }}{{ lipsum(100) }}{{ namespace() }}", {}
    )
    assert rendered.text == ""
    assert set(rendered.missing) == {"config", "request", "os", "lipsum", "namespace"}


def test_crm_data_cannot_inject_markup() -> None:
    html = rendering.render_html("<p>{{ lead.name }}</p><a title='{{ lead.name }}'>x</a>", CONTEXT).text
    assert "<b" not in html and "&lt;b onmouseover=alert(1)&gt;Ромашка&lt;/b&gt;" in html
    concat = rendering.render_html("{{ 'Hi ' ~ lead.name ~ '!' }}", CONTEXT).text
    assert concat == "Hi &lt;b onmouseover=alert(1)&gt;Ромашка&lt;/b&gt;!"
    for bypass in (
        "{{ lead.name|safe }}",
        "{% autoescape false %}{{ lead.name }}{% endautoescape %}",
        "{% filter safe %}{{ lead.name }}{% endfilter %}",
    ):
        with pytest.raises(RenderError):
            rendering.render_html(bypass, CONTEXT)


def test_crm_data_cannot_add_a_header_through_the_subject() -> None:
    context = {"lead": {"name": "Offer\r\nBcc: victim@example.com\nX-Evil: 1\u2028more\x00"}}
    subject = rendering.render_subject("Re: {{ lead.name }}", context).text
    assert subject == "Re: Offer Bcc: victim@example.com X-Evil: 1 more"
    assert "\n" not in subject and "\r" not in subject
    # subjects are plain text: no HTML escaping
    assert rendering.render_subject("{{ lead.name }}", {"lead": {"name": "A & B <C>"}}).text == "A & B <C>"
    with pytest.raises(RenderError, match="998"):
        rendering.render_subject("{{ 'x' * 2000 }}", {})


@pytest.mark.parametrize(
    "payload",
    [
        "{{ 'x' * 1000000000 }}",
        "{{ [1] * 1000000000 }}",
        "{{ 'x' * 999999 + 'y' * 999999 }}",
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        "{% for i in items %}{% for j in items %}{% for k in items %}{% endfor %}{% endfor %}{% endfor %}",
        "{{ range(100000000)|list }}",
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}{% endmacro %}"
        "{{ d('x', 60) }}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        "{% macro m(s) %}{{ s }}{{ s }}{% endmacro %}{{ " + "m(" * 22 + "'x'" + ")" * 22 + " }}",
        "{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}",
        "{{ 10 ** 100000 }}",
        "{{ ((10 ** 1000) ** 100) ** 1000 }}",
        "{% set s = 'x' * 100000 %}{{ s|replace('', s) }}",
        "{% set s = 'x' * 100000 %}{{ s.replace('x', s) }}",
        "{{ 'x'|center(1000000000) }}",
        "{{ 'x'|indent(1000000000) }}",
        "{{ '%999999999d'|format(1) }}",
        "{{ '%999999999d' % 1 }}",
        "{{ 'x'.ljust(1000000000) }}",
        "{{ items|batch(1000000000, 'x')|list }}",
        "{{ items|slice(1000000000)|list }}",
        "{% for x in items recursive %}{{ loop([x]) }}{% endfor %}",
    ],
)
def test_runaway_renders_stop_early(payload: str) -> None:
    started = time.monotonic()
    with pytest.raises(RenderError):
        rendering.render_html(payload, CONTEXT)
    assert time.monotonic() - started < 5


def test_output_size_and_time_limits() -> None:
    many = "{% for i in range(5000) %}" + "x" * 1000 + "{% endfor %}"
    with pytest.raises(RenderLimitExceeded, match="longer than"):
        rendering.render_html(many, {}, limits=Limits(max_output_chars=1_000_000))
    slow = "{% for i in range(9000) %}{{ 'x'|in_words }}{% endfor %}"
    with pytest.raises(RenderError):
        rendering.render_html(slow, {}, limits=Limits(max_seconds=0.001))
    ok = rendering.render_html("{% for i in range(2000) %}{{ i }}{% endfor %}", {})
    assert ok.text.startswith("0123")


def test_a_budget_is_per_render() -> None:
    loop = "{% for i in range(9000) %}{% endfor %}done"
    for _ in range(20):  # 180 000 iterations in total, 9 000 per render
        assert rendering.render_html(loop, {}).text == "done"
