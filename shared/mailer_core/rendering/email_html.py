"""Rendered HTML made email-ready: signature, CSS inlined, pasted images embedded.

- The signature goes at the end of the body (before `</body>` when there is one), unless
  the template disabled it or already placed `{{ manager.signature }}` itself.
- CSS from `<style>` blocks is inlined into `style` attributes with css-inline (many mail
  clients drop `<style>`); the blocks are kept for what cannot be inlined (media queries).
  Remote stylesheets are never fetched.
- Images pasted into the editor arrive as `data:` URLs, which most clients do not show;
  each becomes an inline MIME part referenced as `cid:` (identical images once). Images
  given by URL stay links.
- The text alternative is made from the final HTML by mime.html_to_text.

Everything here is deterministic: the same HTML gives the same output and the same
Content-IDs, so a retried send builds the very same message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from mailer_core.adapters.mime import InlineImage
from mailer_core.base import plain_text

MAX_IMAGE_BYTES = 5 * 1024 * 1024
SIGNATURE_CLASS = plain_text.SIGNATURE_CLASS  # the text part puts it under "-- "
_IMAGE_TYPES = {"png", "jpeg", "jpg", "gif", "webp", "bmp"}
_DATA_IMAGE = re.compile(
    r"""(?P<attr>\bsrc\s*=\s*)(?P<quote>["']?)data:image/(?P<type>[a-zA-Z0-9.+-]+);base64,(?P<data>[A-Za-z0-9+/=\s]+)(?P=quote)""",
    re.IGNORECASE,
)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


class ImageTooLarge(ValueError):
    """A pasted image is above the 5 MB the widget allows."""


@dataclass(frozen=True)
class EmailHtml:
    html: str
    images: tuple[InlineImage, ...] = ()


def add_signature(html: str, signature_html: str) -> str:
    """`html` with the signature appended (inside `<body>` when the HTML has one)."""
    if not signature_html.strip():
        return html
    block = f'<div class="{SIGNATURE_CLASS}"><br>{signature_html}</div>'
    ends = list(_BODY_END.finditer(html))
    if ends:
        at = ends[-1].start()
        return html[:at] + block + html[at:]
    return html + block


def inline_css(html: str) -> str:
    """Styles of `<style>` blocks moved into `style` attributes; nothing fetched."""
    if "<style" not in html.lower():
        return html
    import css_inline  # imported here: only sending and previews inline CSS

    inliner = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)
    return str(inliner.inline(html))


def embed_data_images(html: str) -> tuple[str, tuple[InlineImage, ...]]:
    """Every `data:image/...;base64` source replaced by a `cid:` reference to an inline part."""
    images: dict[str, InlineImage] = {}

    def replace(match: re.Match[str]) -> str:
        kind = match.group("type").lower()
        if kind not in _IMAGE_TYPES:
            return match.group(0)
        try:
            data = base64.b64decode(re.sub(r"\s+", "", match.group("data")), validate=True)
        except (binascii.Error, ValueError):
            return match.group(0)
        if len(data) > MAX_IMAGE_BYTES:
            raise ImageTooLarge(f"a pasted image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
        digest = hashlib.sha256(data).hexdigest()[:20]
        if digest not in images:
            subtype = "jpeg" if kind == "jpg" else kind
            cid = f"img{len(images) + 1}.{digest}@mailer"
            images[digest] = InlineImage(
                cid=cid, content_type=f"image/{subtype}", data=data, filename=f"image{len(images) + 1}.{kind}"
            )
        quote = match.group("quote") or '"'
        return f"{match.group('attr')}{quote}cid:{images[digest].cid}{quote}"

    if "data:image" not in html.lower():
        return html, ()
    return _DATA_IMAGE.sub(replace, html), tuple(images.values())


def prepare(html: str, *, signature_html: str = "", embed_images: bool = True) -> EmailHtml:
    """The final HTML of an email and its inline images."""
    html = add_signature(html, signature_html)
    images: tuple[InlineImage, ...] = ()
    if embed_images:
        html, images = embed_data_images(html)
    return EmailHtml(inline_css(html), images)
