"""An HTML body's plain-text alternative: plain text as a reader sees it, never Markdown."""

from __future__ import annotations

import pytest
from mailer_core.base.plain_text import from_html

SIGNED = (
    "<h1>Ивану Петрову: здравствуйте!</h1><p>Предложение действует до 24 декабря.</p>"
    '<div class="mailer-signature"><br><p>--<br>Мария Менеджер<br>+7 495 111-22-33</p></div>'
    '<img src="https://track.example/o/abc" width="1" height="1" alt="" />'
)


def test_a_signed_email_reads_as_plain_text_with_the_standard_signature_separator() -> None:
    assert from_html(SIGNED) == (
        "Ивану Петрову: здравствуйте!\n"
        "\n"
        "Предложение действует до 24 декабря.\n"
        "\n"
        "-- \n"
        "Мария Менеджер\n"
        "+7 495 111-22-33\n"
    )


def test_nothing_is_escaped_and_no_markdown_marks_appear() -> None:
    text = from_html("<h2>1. Итоги</h2><p>-- не подпись, + и * и # и \\ и _как есть_</p><p><b>жирный</b></p>")
    assert text == "1. Итоги\n\n-- не подпись, + и * и # и \\ и _как есть_\n\nжирный\n"


@pytest.mark.parametrize(
    "html",
    [
        "<p>a</p><br><br><br><p>b</p>",
        "<div>a</div><div><br></div><div><br></div><div><br></div><div>b</div>",
        "<p>a</p>\n\n\n\n<p></p><p> </p><p>b</p>",
    ],
)
def test_never_more_than_one_blank_line_in_a_row(html: str) -> None:
    assert from_html(html) == "a\n\nb\n"


def test_links_show_their_words_then_their_address_once() -> None:
    html = (
        '<p><a href="https://shop.example/offer?id=7&amp;x=1">наше предложение</a>, '
        '<a href="mailto:sales@shop.example">sales@shop.example</a>, '
        '<a href="mailto:boss@shop.example">напишите нам</a>, '
        '<a href="https://shop.example/">https://shop.example/</a>, '
        '<a href="https://shop.example/logo"><img src="logo.png" alt=""></a>, '
        '<a href="#top">наверх</a></p>'
    )
    assert from_html(html) == (
        "наше предложение (https://shop.example/offer?id=7&x=1), sales@shop.example, "
        "напишите нам (mailto:boss@shop.example), https://shop.example/, https://shop.example/logo, наверх\n"
    )


def test_lists_tables_and_preformatted_text_keep_their_shape() -> None:
    html = (
        "<ul><li>один</li><li>два<ol><li>first</li><li>second</li></ol></li></ul>"
        "<table><tr><th>Товар</th><td>Цена</td></tr><tr><td>Стол</td><td>100</td></tr></table>"
        "<pre>  код\n    отступ</pre>"
    )
    assert from_html(html) == (
        "- один\n- два\n  1. first\n  2. second\n\nТовар Цена\nСтол 100\n\n  код\n    отступ\n"
    )


def test_the_head_styles_scripts_and_images_without_alt_show_nothing() -> None:
    html = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Тема</title>"
        "<style>p { color: red }</style></head><body><script>var x = 1;</script>"
        "<!-- comment --><p>Текст <img src='a.png' alt='Логотип'> и <img src='p.gif' alt=''></p>"
        "</body></html>"
    )
    assert from_html(html) == "Текст Логотип и\n"


def test_a_signature_a_template_placed_itself_gets_the_separator_too() -> None:
    assert from_html("<p>Текст</p><p>--<br>Мария</p>") == "Текст\n\n-- \nМария\n"


def test_a_signature_without_a_dash_line_gets_the_separator() -> None:
    html = '<p>Текст</p><div class="mailer-signature"><br><p>Мария<br><i>менеджер</i></p></div>'
    assert from_html(html) == "Текст\n\n-- \nМария\nменеджер\n"


def test_an_empty_body_is_empty_text() -> None:
    assert from_html("") == ""
    assert from_html('<img src="https://track.example/o/abc" width="1" height="1" alt="">') == ""
