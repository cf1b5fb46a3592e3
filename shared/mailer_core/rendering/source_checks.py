"""Checks of what users write into templates, made when it is saved: does the source compile,
does text hold variables, is a locale or time zone one that babel knows.

Cheap to import: Jinja2 and babel are imported by the checks that need them, so the modules
that only ask `has_variables` (the pipeline hook, the send worker) do not load them.
"""

from __future__ import annotations

from typing import Any

from mailer_core.base.errors import InvalidInput
from mailer_core.rendering import legacy_placeholders


def has_variables(text: str) -> bool:
    """Whether `text` holds Jinja2 syntax or a legacy placeholder (then it is rendered)."""
    if "{{" in text or "{%" in text or "{#" in text:
        return True
    return legacy_placeholders.has_legacy_placeholders(text)


def validate_source(source: str, *, field: str, html: bool) -> str:
    """`source` if it compiles as a template; else 422 naming `field` and the problem."""
    if "{" not in source:
        return source
    from mailer_core.rendering import sandbox as rendering  # cold start: jinja2

    try:
        rendering.check(source, html=html)
    except rendering.RenderError as exc:
        raise InvalidInput(exc.reason, field=field) from None
    return source


def refuse_unknown_placeholders(source: str, *, field: str) -> str:
    """`source` unless it holds a single-brace placeholder Mailer does not know (`{name}`):
    422 naming the field and the placeholder, so it is never sent as it is."""
    from mailer_core.rendering.legacy_placeholders import unknown_placeholders  # cold start: re only

    unknown = unknown_placeholders(source)
    if unknown:
        raise InvalidInput(
            f"unknown placeholder {unknown[0]}: use a variable (GET /v1/variables), e.g. {{{{ lead.name }}}}",
            field=field,
            placeholders=unknown,
        )
    return source


def validate_locale(value: Any, field: str = "locale") -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 20:
        raise InvalidInput('must be a locale such as "ru", "en" or "en_US"', field=field)
    from babel import Locale, UnknownLocaleError  # cold start: babel

    try:
        Locale.parse(value.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        raise InvalidInput(f"{value!r} is not a locale babel knows", field=field) from None
    return value


def validate_timezone(value: Any, field: str = "timezone") -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidInput('must be a time zone such as "Europe/Moscow" or "UTC"', field=field)
    from babel.dates import get_timezone  # cold start: babel

    try:
        get_timezone(value)
    except (LookupError, ValueError):  # ValueError: not a zone's key at all (e.g. "text/")
        raise InvalidInput(f"{value!r} is not a time zone", field=field) from None
    return value


MAX_ADDRESS_CHARS = 500
