"""The whole document around an email's HTML body."""

from __future__ import annotations

import pytest
from mailer_core.base.html_document import SPAMASSASSIN_SHORT_HTML, frame, is_document

PIXEL = '<img src="https://t.example/o/abc" width="1" height="1" alt="" />'


def test_a_fragment_becomes_a_document_with_the_body_inside_its_article() -> None:
    document = frame("<p>Здравствуйте!</p>" + PIXEL, title="Предложение", language="ru")

    assert document.startswith('<!DOCTYPE html>\n<html lang="ru" ')
    assert '<meta charset="utf-8">' in document and "<title>Предложение</title>" in document
    article = '<div class="mailer-email" role="article" aria-roledescription="email" '
    article += 'aria-label="Предложение" lang="ru">'
    assert f"<body>\n{article}\n<p>Здравствуйте!</p>{PIXEL}\n</div>\n</body>\n</html>\n" in document
    assert is_document(document)


def test_the_frame_alone_is_longer_than_spamassassins_image_only_range() -> None:
    # HTML_IMAGE_ONLY_* fire for an image in at most 3,200 characters of HTML source: the
    # shortest email with the open pixel must be longer than that.
    assert SPAMASSASSIN_SHORT_HTML == 3200
    assert len(frame(PIXEL)) > SPAMASSASSIN_SHORT_HTML


@pytest.mark.parametrize(
    "document",
    [
        "<html><body><p>Hi</p></body></html>",
        "<BODY style='margin:0'><p>Hi</p></BODY>",
        "<!doctype html>\n<html lang='en'><head><title>x</title></head><body>Hi</body></html>",
    ],
)
def test_a_document_is_left_as_its_author_made_it(document: str) -> None:
    assert frame(document, title="Subject", language="en") == document


def test_the_title_is_escaped_and_a_language_that_is_no_language_tag_is_left_out() -> None:
    document = frame("<p>x</p>", title='"A" & <B>', language='ru" onload="x')

    assert "<title>&quot;A&quot; &amp; &lt;B&gt;</title>" in document
    assert 'aria-label="&quot;A&quot; &amp; &lt;B&gt;"' in document
    assert "lang=" not in document and "onload" not in document
    assert '<html lang="en-US" ' in frame("<p>x</p>", language="en_US")
