"""The placeholders of the widget Mailer follows, translated to Jinja2 before rendering.

Users already have templates written for the widget's own syntax: single braces around a
name, some with a number. They keep working because each is rewritten, as text, into the
Jinja2 expression that means the same thing:

| legacy            | Jinja2                         | renders                                          |
| ----------------- | ------------------------------ | ------------------------------------------------ |
| `{subject}`       | `{{ message.subject }}`        | the email's (rendered) subject                   |
| `{sended_at}`     | `{{ message.sent_at }}`        | when the email is sent, in the template's locale |
| `{id}`            | `{{ message.id }}`             | the message id                                   |
| `{date}`          | `{{ today }}`                  | today's date, in the template's locale           |
| `{triggerlink:8}` | `{{ triggerlink(8) }}`         | the trigger link's URL (see rendering.py)        |
| `{web:1028}`      | `{{ web(1028) }}`              | the web page's URL                               |
| `{formlink}`      | `{{ formlink() }}`             | the form's action URL                            |
| `{weblink}`       | `{{ weblink() }}`              | the web version of the email                     |
| `{optOutUrl}`     | `{{ unsubscribe_url }}`        | a campaign email's unsubscribe URL (EspoCRM's)   |

Only these exact spellings are rewritten (no spaces inside the braces, names spelled as
here), and only in the template's text: anything inside a Jinja2 tag (`{{ … }}`,
`{% … %}`, `{# … #}`) or a `{% raw %}` block is left alone, as are braces that belong to
a Jinja2 tag (`{{id}}` is the Jinja2 variable `id`, not the legacy `{id}`). CSS rules in a
`<style>` block (`p {color: red}`) are not placeholders and are never touched.

`translate` is a pure function: the same text in, the same text out, no I/O.
"""

from __future__ import annotations

import re

# `{name}` or `{name:digits}` not touching another brace on either side.
_PLACEHOLDER = re.compile(r"(?<!\{)\{(?P<name>[A-Za-z_]+)(?::(?P<number>\d{1,18}))?\}(?!\})")

# The parts of a template that belong to Jinja2: raw blocks first, then tags and comments.
_JINJA_PART = re.compile(
    r"\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}"  # {% raw %} … {% endraw %}
    r"|\{\{.*?\}\}"  # {{ expression }}
    r"|\{%.*?%\}"  # {% statement %}
    r"|\{#.*?#\}",  # {# comment #}
    re.DOTALL,
)

_SIMPLE = {
    "subject": "{{ message.subject }}",
    "sended_at": "{{ message.sent_at }}",
    "id": "{{ message.id }}",
    "date": "{{ today }}",
    "formlink": "{{ formlink() }}",
    "weblink": "{{ weblink() }}",
    "optOutUrl": "{{ unsubscribe_url }}",  # EspoCRM's campaigns (rendering.opt_out)
}
_NUMBERED = {"triggerlink": "triggerlink", "web": "web"}

LEGACY_NAMES = tuple(sorted((*_SIMPLE, *(f"{name}:N" for name in _NUMBERED))))


def _replace(match: re.Match[str]) -> str:
    name, number = match.group("name"), match.group("number")
    if number is None and name in _SIMPLE:
        return _SIMPLE[name]
    if number is not None and name in _NUMBERED:
        return f"{{{{ {_NUMBERED[name]}({int(number)}) }}}}"
    return match.group(0)


def translate(source: str) -> str:
    """`source` with every legacy placeholder outside Jinja2 tags rewritten as Jinja2."""
    if "{" not in source:
        return source
    out: list[str] = []
    position = 0
    for part in _JINJA_PART.finditer(source):
        out.append(_PLACEHOLDER.sub(_replace, source[position : part.start()]))
        out.append(part.group(0))
        position = part.end()
    out.append(_PLACEHOLDER.sub(_replace, source[position:]))
    return "".join(out)


def unknown_placeholders(source: str) -> list[str]:
    """Single-brace names that look like the widget's placeholders but are none of them
    (`{name}`, `{email}`, `{triggerlink}` without its number …), outside Jinja2 tags, each once:
    they would be sent as they are, so a template refuses them and the preview lists them."""
    if "{" not in source:
        return []
    found: dict[str, None] = {}
    position = 0
    for part in [*_JINJA_PART.finditer(source), None]:
        text = source[position : part.start()] if part is not None else source[position:]
        for match in _PLACEHOLDER.finditer(text):
            if _replace(match) == match.group(0):
                found[match.group(0)] = None
        if part is not None:
            position = part.end()
    return list(found)


def has_legacy_placeholders(source: str) -> bool:
    return translate(source) != source
