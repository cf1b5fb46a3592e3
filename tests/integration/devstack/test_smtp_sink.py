"""The local stack's SMTP sink keeps what it receives and shows it safely."""

from __future__ import annotations

import json
import smtplib
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from devstack.smtp_sink import SmtpSink

HOSTILE_HTML = '<p>Hi</p><script>alert("x")</script><img src=x onerror="alert(1)">'


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


def _email(
    subject: str, *, to: str = "Иван Петров <ivan.petrov@example.com>", html: str | None = None
) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = "Anna <anna.admin@example.com>"
    msg["To"] = to
    msg["Message-ID"] = f"<{abs(hash(subject))}@mailer.test>"
    msg.set_content("Здравствуйте, Иван!\nThe offer: https://example.com/offer\n")
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


def test_a_plain_message_is_kept_with_its_envelope_and_parts(sink: SmtpSink) -> None:
    # GIVEN a message with a text and an HTML part, and a Bcc recipient only in the envelope
    msg = _email("Коммерческое предложение", html="<p>Здравствуйте, <b>Иван</b>!</p>")
    with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=5) as smtp:
        smtp.send_message(msg, to_addrs=["ivan.petrov@example.com", "audit@example.com"])
    # WHEN it arrives
    got = sink.wait_for(lambda m: m.subject == "Коммерческое предложение")
    # THEN the envelope, the headers and both parts are there
    assert got.mail_from == "anna.admin@example.com"
    assert got.rcpt_tos == ("ivan.petrov@example.com", "audit@example.com")
    assert got.to == "Иван Петров <ivan.petrov@example.com>"
    assert got.message_id == msg["Message-ID"]
    assert got.text is not None and "Здравствуйте, Иван!" in got.text
    assert got.html is not None and "<b>Иван</b>" in got.html
    assert got.auth_login is None
    assert got.message()["Subject"] == "Коммерческое предложение"
    # AND /messages.json shows the same
    status, headers, body = _get(f"{sink.web_url}/messages.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    [item] = json.loads(body)
    assert (item["id"], item["subject"], item["rcpt_tos"]) == (got.id, got.subject, list(got.rcpt_tos))
    assert item["html"] == got.html and item["text"] == got.text


def test_auth_with_any_login_succeeds_and_only_the_login_is_kept(sink: SmtpSink) -> None:
    for mechanism in ("PLAIN", "LOGIN"):
        with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=5) as smtp:
            smtp.ehlo()
            assert "auth" in smtp.esmtp_features
            smtp.user, smtp.password = f"{mechanism.lower()}@example.com", "s3cret-pass"
            smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))
            smtp.send_message(_email(f"via {mechanism}"))
    messages = sink.wait_for_count(2)
    assert [(m.subject, m.auth_login) for m in messages] == [
        ("via PLAIN", "plain@example.com"),
        ("via LOGIN", "login@example.com"),
    ]
    _, _, listing = _get(f"{sink.web_url}/messages.json")
    assert b"s3cret-pass" not in listing


def test_the_page_lists_newest_first_and_escapes_everything(sink: SmtpSink) -> None:
    with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=5) as smtp:
        smtp.send_message(_email("first"))
        smtp.send_message(_email('<script>alert("subject")</script>', html=HOSTILE_HTML))
    sink.wait_for_count(2)

    status, headers, raw = _get(sink.web_url + "/")
    page = raw.decode("utf-8")
    assert status == 200
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;subject&quot;)&lt;/script&gt;" in page
    assert page.index("alert(&quot;subject&quot;)") < page.index(">first<")
    assert "script-src 'none'" in headers["Content-Security-Policy"]

    second = sink.messages[1]
    _, _, raw = _get(f"{sink.web_url}/messages/{second.id}")
    view = raw.decode("utf-8")
    assert "<script>" not in view and "<img" not in view
    assert '<iframe sandbox="allow-popups allow-popups-to-escape-sandbox"' in view
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in view

    order = [m["subject"] for m in json.loads(_get(f"{sink.web_url}/messages.json")[2])]
    assert order == ['<script>alert("subject")</script>', "first"]
    assert _get(f"{sink.web_url}/messages/999")[0] == 404
    assert _get(f"{sink.web_url}/messages/{second.id}/raw")[2] == second.raw


def test_wait_for_wakes_when_the_message_arrives_and_times_out_otherwise(sink: SmtpSink) -> None:
    with pytest.raises(TimeoutError):
        sink.wait_for(lambda m: True, timeout=0.05)

    def send_later() -> None:
        with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=5) as smtp:
            smtp.send_message(_email("late"))

    sender = threading.Thread(target=send_later)
    sender.start()
    assert sink.wait_for(lambda m: m.subject == "late", timeout=5).subject == "late"
    sender.join()
    sink.clear()
    assert sink.messages == []
