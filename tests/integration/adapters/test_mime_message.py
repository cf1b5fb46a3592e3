"""The MIME builder: messages that parse back intact and keep Bcc out of the bytes."""

from __future__ import annotations

import email.parser
import email.policy
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage, MIMEPart
from email.utils import parsedate_to_datetime
from typing import cast

import pytest
from mailer_core.adapters.mime import (
    OutgoingEmail,
    build_message,
    envelope_recipients,
    html_to_text,
    make_message_id,
)
from mailer_core.base import html_document

MOSCOW = timezone(timedelta(hours=3))
HTML = (
    "<html><body><h1>Коммерческое предложение</h1>"
    "<p>Здравствуйте, <b>Анна</b>! Откройте <a href='https://offer.test/o?id=7&amp;x=1'>наше предложение</a>"
    " или <a href='mailto:sales@sender.test'>напишите нам</a>.</p>"
    "<img src='https://track.test/p/abc.gif' width='1' height='1' alt=''>"
    "</body></html>"
)


def outgoing(**changes: object) -> OutgoingEmail:
    fields: dict[str, object] = {
        "sender_name": "Иван Петров",
        "sender_email": "ivan@sender.test",
        "to": ("anna@client.test",),
        "cc": ("boss@client.test",),
        "bcc": ("archive@sender.test",),
        "subject": "Коммерческое предложение: скидка 15% до пятницы",
        "html": HTML,
        "message_id": "<01JDX5Q0@sender.test>",
        "date": datetime(2026, 11, 24, 12, 30, tzinfo=MOSCOW),
    }
    fields.update(changes)
    return OutgoingEmail(**fields)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    return cast(EmailMessage, email.parser.BytesParser(policy=email.policy.default).parsebytes(data))


def body(part: MIMEPart) -> str:
    """A text part's decoded content; base64 text carries canonical CRLF line ends."""
    return str(part.get_content()).replace("\r\n", "\n").rstrip("\n")


def test_cyrillic_subject_and_sender_name_round_trip_through_ascii_bytes() -> None:
    # GIVEN an email from a sender with a Cyrillic name and a Cyrillic subject
    data = build_message(outgoing()).as_bytes()

    # THEN the wire form is pure ASCII (RFC 2047 headers, 7-bit bodies) with CRLF lines
    assert data.isascii()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    # AND it parses back to the same words
    parsed = parse(data)
    assert parsed["Subject"] == "Коммерческое предложение: скидка 15% до пятницы"
    sender = parsed["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Иван Петров", "ivan@sender.test")
    assert [a.addr_spec for a in parsed["To"].addresses] == ["anna@client.test"]
    assert [a.addr_spec for a in parsed["Cc"].addresses] == ["boss@client.test"]
    assert parsed["MIME-Version"] == "1.0"


def test_a_display_name_with_a_comma_and_quotes_stays_one_address() -> None:
    parsed = parse(build_message(outgoing(sender_name='Петров, Иван "Sales"')).as_bytes())
    (sender,) = parsed["From"].addresses
    assert sender.display_name == 'Петров, Иван "Sales"'
    assert sender.addr_spec == "ivan@sender.test"


def test_bcc_is_only_in_the_envelope() -> None:
    email = outgoing()
    data = build_message(email).as_bytes()

    assert b"archive@sender.test" not in data
    assert b"bcc:" not in data.lower()
    assert envelope_recipients(email) == ["anna@client.test", "boss@client.test", "archive@sender.test"]


def test_text_alternative_comes_first_and_carries_the_words_and_link_targets() -> None:
    parsed = parse(build_message(outgoing()).as_bytes())

    assert parsed.get_content_type() == "multipart/alternative"
    plain, html = parsed.iter_parts()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    text = body(plain)
    for words in ("Коммерческое предложение", "Здравствуйте", "Анна", "наше предложение", "напишите нам"):
        assert words in text
    assert "https://offer.test/o?id=7&x=1" in text
    assert "mailto:sales@sender.test" in text
    assert "<" not in text.replace("<mailto", "")  # no markup left behind
    assert body(html) == HTML
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"


def test_tracking_pixel_leaves_nothing_in_the_text() -> None:
    assert "track.test" not in html_to_text(HTML)


def test_the_signature_separator_keeps_its_trailing_space_through_the_transfer_encoding() -> None:
    signed = "<p>Hello, Anna.</p><div class='mailer-signature'><br><p>--<br>Ivan Petrov</p></div>"
    for html in (signed, "<p>Здравствуйте, Анна.</p>" + signed):  # quoted-printable, then base64
        plain, _ = parse(build_message(outgoing(html=html)).as_bytes()).iter_parts()
        assert "\n\n-- \nIvan Petrov" in body(plain)


def test_a_very_long_html_line_is_wrapped_by_the_transfer_encoding_and_decodes_unchanged() -> None:
    # GIVEN a body with one 20,000-character line (minified HTML does this)
    long_html = "<p>" + " ".join(f"слово{i}" for i in range(2500)) + "</p>"
    assert "\n" not in long_html and len(long_html) > 20_000

    data = build_message(outgoing(html=long_html)).as_bytes()

    # THEN no line on the wire comes near SMTP's 998-character limit
    assert max(len(line) for line in data.split(b"\r\n")) <= 78
    # AND the HTML decodes back exactly (inside the document that frames a fragment)
    _, html = parse(data).iter_parts()
    assert html["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert f"\n{long_html}\n" in body(html)
    assert body(html) == html_document.frame(long_html, title=outgoing().subject).rstrip("\n")


def test_a_fragment_goes_out_as_a_whole_document_in_the_emails_language() -> None:
    fragment = "<p>Здравствуйте, Анна!</p>"
    _, html = parse(build_message(outgoing(html=fragment, language="ru")).as_bytes()).iter_parts()

    document = body(html)
    assert document.startswith('<!DOCTYPE html>\n<html lang="ru" ')
    assert "<title>Коммерческое предложение: скидка 15% до пятницы</title>" in document
    assert f"\n{fragment}\n</div>\n</body>\n</html>" in document


def test_date_and_message_id_are_the_callers() -> None:
    email = outgoing()
    parsed = parse(build_message(email).as_bytes())

    assert parsedate_to_datetime(parsed["Date"]) == email.date
    assert parsed["Date"].endswith("+0300")
    assert parsed["Message-ID"] == "<01JDX5Q0@sender.test>"


def test_extra_headers_are_added_but_cannot_replace_the_builders_own() -> None:
    unsubscribe = ("List-Unsubscribe", "<https://track.test/u/abc>")
    parsed = parse(build_message(outgoing(extra_headers=(unsubscribe,))).as_bytes())
    assert parsed["List-Unsubscribe"] == "<https://track.test/u/abc>"

    with pytest.raises(ValueError, match="Bcc"):
        build_message(outgoing(extra_headers=(("Bcc", "spy@evil.test"),)))
    with pytest.raises(ValueError):
        build_message(outgoing(extra_headers=(("X-Injected", "a\r\nBcc: spy@evil.test"),)))


@pytest.mark.parametrize(
    "changes",
    [{"date": None}, {"date": datetime(2026, 11, 24, 12, 30)}, {"message_id": ""}],
    ids=["no date", "naive date", "no message id"],
)
def test_date_and_message_id_are_required(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build_message(outgoing(**changes))


def test_envelope_recipients_drop_repeats_case_insensitively_in_order() -> None:
    email = outgoing(
        to=("Anna@Client.test", "petr@client.test"),
        cc=("anna@client.test", "olga@client.test"),
        bcc=("PETR@CLIENT.TEST", "archive@sender.test"),
    )
    assert envelope_recipients(email) == [
        "Anna@Client.test",
        "petr@client.test",
        "olga@client.test",
        "archive@sender.test",
    ]


def test_message_id_uses_the_senders_domain() -> None:
    assert make_message_id("01JDX5Q0", "Ivan@Sender.Test") == "<01JDX5Q0@sender.test>"
    with pytest.raises(ValueError):
        make_message_id("01JDX5Q0", "not-an-address")
