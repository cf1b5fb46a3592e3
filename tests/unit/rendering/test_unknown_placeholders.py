"""Single-brace placeholders Mailer does not know are found, never sent silently."""

from __future__ import annotations

import pytest
from mailer_core.base.errors import InvalidInput
from mailer_core.rendering.legacy_placeholders import unknown_placeholders
from mailer_core.rendering.source_checks import refuse_unknown_placeholders


@pytest.mark.parametrize(
    ("source", "unknown"),
    [
        ("Hello {name}, {email} and {name}", ["{name}", "{email}"]),
        ("{subject} {sended_at} {id} {date} {triggerlink:8} {web:1028} {formlink} {weblink}", []),
        ("{triggerlink} {subject:3}", ["{triggerlink}", "{subject:3}"]),
        ("{{ name }} {% if x %}{name}{% endif %} {# {x} #}", ["{name}"]),
        ("{% raw %}{name}{% endraw %}", []),
        ("<style>p {color: red} a{b:c}</style> {{id}}", []),
        ("no braces", []),
    ],
)
def test_unknown_single_brace_names_are_found(source: str, unknown: list[str]) -> None:
    assert unknown_placeholders(source) == unknown


def test_a_template_refuses_them_naming_the_field_and_each_placeholder() -> None:
    with pytest.raises(InvalidInput) as caught:
        refuse_unknown_placeholders("Dear {name} {phone}", field="html")
    assert caught.value.field == "html" and "{name}" in caught.value.message
    assert refuse_unknown_placeholders("Dear {{ contact.name }}", field="html") == "Dear {{ contact.name }}"
