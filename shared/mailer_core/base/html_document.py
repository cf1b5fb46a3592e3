"""The whole HTML document an email's HTML part carries around the body the author wrote.

The widget's editor writes a fragment (`<p>…</p>`); mail clients and spam filters expect a
document. `frame` puts a fragment into one, the way the common email frameworks do:

- the doctype, `<html lang>` (the email's language, when known), the character set, the
  viewport for phones, the subject as the title, and what each client needs told: Outlook
  its image resolution (`OfficeDocumentSettings`), Apple Mail not to reformat, iOS not to
  make dates and phone numbers into links of its own;
- a style sheet in the head that undoes what clients change on their own (text enlarged on
  phones, spacing around Outlook's tables, iOS's auto-detected links, Gmail's button over
  images, images wider than a phone's screen) and gives the text one plain look in every
  client (Outlook's Word engine shows an unstyled email in Times New Roman). It is not
  inlined, so every style the author wrote (inline, as rendering leaves them) wins over it;
- the body inside `<div role="article">` named by the subject, for screen readers.

Deliverability: SpamAssassin's HTML_IMAGE_ONLY_* rules (20_html_tests.cf, HTMLEval.pm) score
every HTML part that holds an image and whose source is at most 3,200 characters (0.6 to 2.8
points), whatever the image's size. The open pixel is an image, so a short email with the
pixel and a bare fragment trips them. With this frame, which alone is longer than that
(`tests/unit/base/test_html_document.py` holds it so), no email does.

A body that is already a document (it has `<html>` or `<body>`) is left as its author made it.
"""

from __future__ import annotations

import html as html_lib
import re

SPAMASSASSIN_SHORT_HTML = 3200  # HTML_IMAGE_ONLY_*: an image in at most this much HTML source
_DOCUMENT = re.compile(r"<\s*(?:html|body)[\s>/]", re.IGNORECASE)
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")

_HEAD = """<meta charset="utf-8">
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="X-UA-Compatible" content="IE=edge">
<meta name="x-apple-disable-message-reformatting">
<meta name="format-detection" content="telephone=no, date=no, address=no, email=no, url=no">
<meta name="color-scheme" content="light">
<meta name="supported-color-schemes" content="light">
<title>{title}</title>
<!--[if mso]>
<noscript><xml><o:OfficeDocumentSettings><o:AllowPNG/><o:PixelsPerInch>96</o:PixelsPerInch>
</o:OfficeDocumentSettings></xml></noscript>
<style>body, table, td, th, p, li, h1, h2, h3, h4, a {{ font-family: Arial, Helvetica, sans-serif; }}
p, li, td, h1, h2, h3 {{ mso-line-height-rule: exactly; }}</style>
<![endif]-->
<style>
/* What mail clients change on their own, undone; nothing the author wrote is overridden. */
:root {{ color-scheme: light; supported-color-schemes: light; }}
/* iOS and Windows Phone enlarge small text; Outlook.com changes the spacing of words. */
html, body {{ -webkit-text-size-adjust: 100%; -ms-text-size-adjust: 100%; }}
body {{ margin: 0; padding: 0; word-spacing: normal; }}
/* Outlook.com pads its "view in browser" link; Outlook spaces tables out on its own. */
#outlook a {{ padding: 0; }}
table, td {{ mso-table-lspace: 0pt; mso-table-rspace: 0pt; }}
/* Internet Explorer and Outlook scale images roughly. */
img {{ -ms-interpolation-mode: bicubic; border: 0; outline: none; }}
/* iOS makes dates, addresses and phone numbers into links: they keep the text's look. */
a[x-apple-data-detectors] {{ color: inherit !important; text-decoration: none !important;
  font-size: inherit !important; font-family: inherit !important;
  font-weight: inherit !important; line-height: inherit !important; }}
/* Gmail puts a download button over large images. */
.a6S {{ display: none !important; opacity: 0.01 !important; }}
/* One plain look in every client: each client's own default font and size differ. */
.mailer-email {{ font-family: Arial, Helvetica, sans-serif; font-size: 14px; line-height: 1.5;
  color: #222222; padding: 8px; }}
.mailer-email p {{ margin: 0 0 1em 0; }}
.mailer-email h1 {{ font-size: 22px; line-height: 1.25; margin: 0 0 0.6em 0; }}
.mailer-email h2 {{ font-size: 18px; line-height: 1.3; margin: 0 0 0.6em 0; }}
.mailer-email h3 {{ font-size: 16px; line-height: 1.35; margin: 0 0 0.6em 0; }}
.mailer-email ul, .mailer-email ol {{ margin: 0 0 1em 0; padding-left: 24px; }}
.mailer-email hr {{ border: 0; border-top: 1px solid #dddddd; margin: 1em 0; }}
/* Tables do not inherit the text's font in older clients (quirks mode). */
.mailer-email td, .mailer-email th {{ font-family: inherit; font-size: inherit; line-height: inherit; }}
.mailer-email blockquote {{ margin: 0 0 1em 0; padding-left: 12px; border-left: 3px solid #dddddd; }}
/* Phones: nothing wider than the screen. */
@media screen and (max-width: 600px) {{
  .mailer-email img {{ max-width: 100% !important; height: auto !important; }}
  .mailer-email table {{ max-width: 100% !important; }}
}}
</style>"""


def is_document(html: str) -> bool:
    """Whether `html` is a whole document already (it has `<html>` or `<body>`)."""
    return _DOCUMENT.search(html) is not None


def frame(body: str, *, title: str = "", language: str = "") -> str:
    """`body` in the email document described above; a document is returned unchanged."""
    if is_document(body):
        return body
    language = language.replace("_", "-")
    lang = f' lang="{language}"' if _LANGUAGE.fullmatch(language) else ""
    title = html_lib.escape(title, quote=True)
    return (
        f'<!DOCTYPE html>\n<html{lang} xmlns="http://www.w3.org/1999/xhtml" '
        'xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office">\n'
        f"<head>\n{_HEAD.format(title=title)}\n</head>\n<body>\n"
        f'<div class="mailer-email" role="article" aria-roledescription="email" aria-label="{title}"{lang}>\n'
        f"{body}\n</div>\n</body>\n</html>\n"
    )
