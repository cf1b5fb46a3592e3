"""CloudWatch Logs metric filter patterns on JSON lines, the one form the template uses.

`{ $.field = "text" && $.other = "prefix*" }`: each term compares a field of the JSON line
with a string in which `*` matches anything. Any other syntax is refused rather than guessed.
"""

from __future__ import annotations

import re
from typing import Any

_TERM = re.compile(r'^\$\.([A-Za-z_][\w.]*)\s*=\s*"([^"]*)"$')


def matches(pattern: str, line: dict[str, Any]) -> bool:
    """Whether CloudWatch would count `line` (one JSON log event) for `pattern`."""
    text = pattern.strip()
    if not (text.startswith("{") and text.endswith("}")) or "||" in text:
        raise ValueError(f'only {{ $.a = "x" && … }} is read here: {pattern!r}')
    for term in text[1:-1].split("&&"):
        found = _TERM.match(term.strip())
        if found is None:
            raise ValueError(f"a term not read here: {term.strip()!r}")
        path, wanted = found.groups()
        value: Any = line
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        expected = ".*".join(re.escape(part) for part in wanted.split("*"))
        if not isinstance(value, str) or not re.fullmatch(expected, value, re.DOTALL):
            return False
    return True
