"""Attachments in the MIME: multipart/mixed, RFC 2231 names, streamed files, SMTP from the spool."""

from __future__ import annotations

import email.parser
import email.policy
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import cast

import pytest
from mailer_core.adapters.mime import Attachment, OutgoingEmail, build_message, spool, spooled
from mailer_core.adapters.smtp import SmtpSettings, open_session
from mailer_core.base.network_addresses import LOOPBACK_ALLOWED

from tests.support.smtp_servers import SmtpTestServer, smtp_server

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 64 + b"\n.\n..\n%%EOF"


def outgoing(*attachments: Attachment, html: str = "<p>Здравствуйте!</p>") -> OutgoingEmail:
    return OutgoingEmail(
        sender_name="Иван Петров",
        sender_email="ivan@sender.test",
        to=("anna@client.test",),
        subject="Коммерческое предложение",
        html=html,
        message_id="<01JATTACH@sender.test>",
        date=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
        attachments=attachments,
    )


def parse(data: bytes) -> EmailMessage:
    return cast(EmailMessage, email.parser.BytesParser(policy=email.policy.default).parsebytes(data))


class CountingOpener:
    """`open` for an Attachment that counts how often the file was read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.opened = 0

    def __call__(self) -> io.BytesIO:
        self.opened += 1
        return io.BytesIO(self.data)


@pytest.fixture
def server() -> Iterator[SmtpTestServer]:
    with smtp_server() as running:
        yield running


def test_an_email_with_files_is_mixed_with_the_alternative_body_first_and_cyrillic_names_intact() -> None:
    streamed = CountingOpener(PDF)
    message = build_message(
        outgoing(
            Attachment("Коммерческое предложение №7.pdf", "application/pdf", open=streamed),
            Attachment("Прайс-лист.csv", "text/csv", data="Товар;Цена\nСтол;100\n".encode()),
            Attachment("noext", "not a type", data=b"\x00\x01"),
        )
    )
    data = message.as_bytes()

    assert data.isascii()
    parsed = parse(data)
    assert parsed.get_content_type() == "multipart/mixed"
    body, *files = parsed.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in body.iter_parts()] == ["text/plain", "text/html"]
    assert [(f.get_filename(), f.get_content_type()) for f in files] == [
        ("Коммерческое предложение №7.pdf", "application/pdf"),
        ("Прайс-лист.csv", "text/csv"),
        ("noext", "application/octet-stream"),
    ]
    assert [f.get_content_disposition() for f in files] == ["attachment"] * 3
    assert files[0].get_content() == PDF
    assert files[1].get_payload(decode=True) == "Товар;Цена\nСтол;100\n".encode()  # the file's own bytes
    assert b"filename*0*=utf-8''%D0%9A%D0%BE%D0%BC" in data  # RFC 2231, continued over lines
    assert b"name*0*=utf-8''%D0%9A%D0%BE%D0%BC" in data  # Content-Type's name, for older clients
    assert streamed.opened == 1


def test_a_streamed_file_encodes_exactly_as_the_standard_library_would() -> None:
    for size in (0, 1, 56, 57, 58, 76, 57 * 1152, 57 * 1152 + 1, 300_001):
        payload = os.urandom(size)
        streamed = parse(
            build_message(outgoing(Attachment("a.bin", open=lambda p=payload: io.BytesIO(p)))).as_bytes()
        )
        in_memory = parse(build_message(outgoing(Attachment("a.bin", data=payload))).as_bytes())
        [streamed_part] = list(streamed.iter_attachments())
        [memory_part] = list(in_memory.iter_attachments())
        assert streamed_part.get_content() == payload, size
        assert streamed_part.get_payload() == memory_part.get_payload(), size  # same base64 lines


def test_once_spooled_the_message_is_read_once_and_its_bytes_come_from_the_spool() -> None:
    streamed = CountingOpener(PDF)
    message = build_message(outgoing(Attachment("offer.pdf", "application/pdf", open=streamed)))

    with spool(message) as written:
        assert spooled(message) is written
        first = message.as_bytes()
        assert message.as_bytes() == first == written.read_bytes()
        assert written.size == len(first)
        assert all(line.endswith(b"\r\n") for line in written.lines())
    assert streamed.opened == 1


def test_an_error_reading_a_file_comes_out_of_spool_before_any_smtp() -> None:
    def broken() -> io.BytesIO:
        raise OSError("storage went away")

    message = build_message(outgoing(Attachment("offer.pdf", open=broken)))

    with pytest.raises(OSError, match="storage went away"):
        spool(message)
    assert spooled(message) is None


def test_smtp_sends_a_spooled_message_line_by_line_with_dots_stuffed(server: SmtpTestServer) -> None:
    # a body with lines that start with a dot: unstuffed, a lone "." would end DATA early
    html = "<pre>\n.hidden\n.\n..two\n</pre>"
    message = build_message(outgoing(Attachment("offer.pdf", open=lambda: io.BytesIO(PDF)), html=html))
    written = spool(message)
    session = open_session(
        SmtpSettings(
            host=server.host,
            port=server.port,
            security="none",
            login="",
            password="",
            timeout=5,
            addresses=LOOPBACK_ALLOWED,
        )
    )
    try:
        result = session.send(message, "ivan@sender.test", ["anna@client.test"])
    finally:
        session.close()

    assert result.reply.startswith("250")
    [received] = server.messages
    assert received.data.replace(b"\r\n", b"\n") == written.read_bytes().replace(b"\r\n", b"\n")
    parsed = received.parsed()
    html_part = parsed.get_body(("html",))
    assert html_part is not None
    assert "\n.hidden\n.\n..two\n" in html_part.get_content().replace("\r\n", "\n")
    assert next(parsed.iter_attachments()).get_content() == PDF


PEAK_OF_SPOOLING = """
import sys, tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from mailer_core.adapters.mime import Attachment, OutgoingEmail, build_message, spool

big = Path(sys.argv[1])
message = build_message(OutgoingEmail(
    sender_name="Ivan", sender_email="ivan@sender.test", to=("anna@client.test",),
    subject="Offer", html="<p>Hi</p>", message_id="<01JATTACH@sender.test>",
    date=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
    attachments=(Attachment("big.bin", open=lambda: big.open("rb"), size=big.stat().st_size),),
))
tracemalloc.start()
written = spool(message)
_, peak = tracemalloc.get_traced_memory()
print(written.size, peak)
"""


def test_a_large_file_is_streamed_not_held_in_memory(tmp_path: Path) -> None:
    size = 24 * 1024 * 1024
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        for _ in range(24):
            fh.write(os.urandom(1024 * 1024))

    # measured in a process of its own: tracemalloc counts every thread's allocations, and the
    # test process may run servers of other tests' fixtures meanwhile
    measured = subprocess.run(
        [sys.executable, "-c", PEAK_OF_SPOOLING, str(big)], capture_output=True, text=True, check=True
    )
    written_size, peak = map(int, measured.stdout.split())

    assert written_size > size * 4 // 3  # the base64 of 24 MB went into the spool …
    assert peak < 12 * 1024 * 1024  # … while memory held at most the 8 MB in-memory part and a chunk
