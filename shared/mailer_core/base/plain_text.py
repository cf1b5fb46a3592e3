"""The plain-text alternative of an HTML email: the words as a reader sees them, as plain text.

Plain text, not Markdown (which html2text wrote before): nothing is escaped (a `--` stays
`--`, never `\\--`), a heading is a line of its own (no `#`), emphasis leaves no marks. What
a reader of the HTML sees, in order:

- paragraphs, headings, lists, tables and quotes are separated by one blank line; `<br>`,
  `<div>`, list items and table rows start a new line; never more than one blank line in a row;
- a link shows its words and then its address in parentheses, `Open the offer (https://…)`;
  only the address when the words are the address (`mailto:` left out);
- an image shows its alt text, so the open pixel (`alt=""`) leaves nothing behind;
- list items start with `- ` (`1. ` in numbered lists); table cells are joined by spaces;
- the head, styles and scripts show nothing; `<pre>` keeps its lines;
- the signature (the element of class `mailer-signature` that rendering places, or a line
  of just `--` that a template wrote itself) follows the standard separator `-- ` (dash,
  dash, space: RFC 3676 4.3), which mail clients use to recognise and fold it; a dash line
  the signature begins with is that separator already and is not repeated.

Only the standard library: `from_html` is cheap to import and to run.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

SIGNATURE_CLASS = "mailer-signature"
SIGNATURE_SEPARATOR = "-- "

_PARAGRAPHS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "blockquote", "pre", "hr"}
    | {"address", "article", "aside", "figure", "footer", "header", "main", "nav", "section"}
)
_LINES = frozenset({"div", "li", "tr", "dt", "dd", "caption", "figcaption", "center", "form", "fieldset"})
_HIDDEN = frozenset({"head", "title", "style", "script", "template"})
_VOID = frozenset({"br", "img", "hr", "meta", "link", "input", "col", "area", "base", "wbr", "source"})
_SPACES = re.compile(r"[ \t\r\n\f]+")
_DASH_LINE = re.compile(r"[-‐‑‒–—―]{2,}")
_LINK_SCHEMES = ("http://", "https://", "mailto:", "tel:", "ftp://")


class _Text(HTMLParser):
    """Collects the text of one HTML body, in pieces; `from_html` makes the lines of it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden = 0
        self.pre = 0
        self.lists: list[int] = []  # per open list: 0 for <ul>, else the next item's number
        self.links: list[tuple[str, int]] = []  # per open <a>: its address, where its words begin
        self.signature_at: int | None = None  # where the signature's text begins in `out`
        self.signature_tags: list[str] = []  # the signature's element and what is open inside it

    # -- output ----------------------------------------------------------------------------

    def _last(self) -> str:
        return self.out[-1][-1:] if self.out else "\n"

    def write(self, text: str, *, raw: bool = False) -> None:
        """Add text; spaces collapse as HTML shows them, unless `raw` or inside `<pre>`."""
        if self.hidden or not text:
            return
        if not (raw or self.pre):
            text = _SPACES.sub(" ", text)
            if text.startswith(" ") and self._last() in (" ", "\n"):
                text = text[1:]
        if text:
            self.out.append(text)

    def newline(self, blank: bool = False) -> None:
        """End the line (and leave a blank one): never more breaks than that in a row."""
        if self.hidden:
            return
        tail = "".join(self.out[-3:]).rstrip(" ")
        have = len(tail) - len(tail.rstrip("\n")) if self.out else 2
        self.write("\n" * max(0, (2 if blank else 1) - have), raw=True)

    # -- tags ------------------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self._enter_signature(tag, found)
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag == "br":  # a line break even on an empty line (`<div><br></div>`)
            self.write("\n", raw=True)
        elif tag == "img":
            self.write(found.get("alt") or "")
        elif tag == "a":
            self.links.append(((found.get("href") or "").strip(), len(self.out)))
        elif tag in ("ul", "ol"):
            self.newline(blank=not self.lists)
            self.lists.append(0 if tag == "ul" else 1)
        elif tag == "li":
            self._item()
        elif tag in ("td", "th"):
            self.write(" ")
        else:
            self._block(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag == "a" and self.links:
            self._link_end(*self.links.pop())
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
            self.newline(blank=not self.lists)
        else:
            self._block(tag, end=True)
        self._leave_signature(tag)

    def handle_data(self, data: str) -> None:
        self.write(data)

    def _block(self, tag: str, end: bool = False) -> None:
        if tag == "body":  # an unclosed <head> ends here
            self.hidden = 0
        elif tag == "pre":
            self.pre = max(0, self.pre + (-1 if end else 1))
        if tag in _PARAGRAPHS:
            self.newline(blank=True)
        elif tag in _LINES:
            self.newline()

    def _item(self) -> None:
        self.newline()
        number = self.lists[-1] if self.lists else 0
        self.write("  " * max(0, len(self.lists) - 1) + (f"{number}. " if number else "- "), raw=True)
        if number:
            self.lists[-1] += 1

    def _link_end(self, href: str, start: int) -> None:
        words = "".join(self.out[start:]).strip()
        if not href.lower().startswith(_LINK_SCHEMES):
            return
        shown = href[len("mailto:") :] if href.lower().startswith("mailto:") else href
        if not words:
            self.write(shown)
        elif words not in (href, shown):
            self.write(f" ({href})")

    def _enter_signature(self, tag: str, attrs: dict[str, str | None]) -> None:
        if self.signature_tags:
            if tag not in _VOID:
                self.signature_tags.append(tag)
        elif self.signature_at is None and tag not in _VOID and _is_signature(attrs):
            self.newline(blank=True)
            self.signature_at = len(self.out)
            self.signature_tags.append(tag)

    def _leave_signature(self, tag: str) -> None:
        if self.signature_tags and tag in self.signature_tags:
            while self.signature_tags and self.signature_tags.pop() != tag:
                pass


def _is_signature(attrs: dict[str, str | None]) -> bool:
    return SIGNATURE_CLASS in (attrs.get("class") or "").split()


def _lines(text: str) -> list[str]:
    """Lines without trailing spaces, no blank line first or last, at most one in a row."""
    lines: list[str] = []
    for raw in text.split("\n"):
        line = raw.rstrip()
        if line or (lines and lines[-1]):
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _signature(lines: list[str]) -> list[str]:
    """The signature's lines under the separator (a dash line it begins with is the separator)."""
    if lines and _DASH_LINE.fullmatch(lines[0]):
        lines = _lines("\n".join(lines[1:]))
    return [SIGNATURE_SEPARATOR, *lines] if lines else []


def _dash_lines_as_separators(lines: list[str]) -> list[str]:
    return [SIGNATURE_SEPARATOR if line == "--" else line for line in lines]


def from_html(html: str) -> str:
    """The plain text of an HTML body (see the module's docstring); "" when it shows nothing."""
    parser = _Text()
    parser.feed(html.replace("\x00", ""))
    parser.close()
    at = len(parser.out) if parser.signature_at is None else parser.signature_at
    body = _dash_lines_as_separators(_lines("".join(parser.out[:at])))
    signature = _signature(_lines("".join(parser.out[at:])))
    lines = body + ([""] if body and signature else []) + signature
    return "\n".join(lines) + "\n" if lines else ""
