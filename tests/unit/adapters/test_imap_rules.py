"""IMAP rules that need no server: folder-name codec, LIST parsing, choosing the Sent folder."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from mailer_core.adapters.imap import (
    Folder,
    choose_sent_folder,
    decode_folder_name,
    encode_folder_name,
    parse_list_response,
    quote,
)

# (readable, wire) pairs: RFC 3501 §5.1.3's own example, Dovecot's name for "Отправленные"
# (seen in a LIST reply), "&" itself, and characters outside the BMP (UTF-16 surrogates).
VECTORS = [
    ("Sent", "Sent"),
    ("Sent Items", "Sent Items"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
    ("Tom & Jerry", "Tom &- Jerry"),
    ("&", "&-"),
    ("Входящие/Архив 2026", "&BBIERQQ+BDQETwRJBDgENQ-/&BBAEQARFBDgEMg- 2026"),
    ("📧 Sent", "&2D3c5w- Sent"),
    ("", ""),
]


@pytest.mark.parametrize(("readable", "wire"), VECTORS)
def test_folder_names_are_encoded_and_decoded_as_modified_utf7(readable: str, wire: str) -> None:
    assert encode_folder_name(readable) == wire
    assert decode_folder_name(wire) == readable


@pytest.mark.parametrize("name", ["Отправленные письма", "a&b&c", "Ünïcødé—“quotes”", "日本語&English", "\t"])
def test_every_name_survives_the_round_trip(name: str) -> None:
    wire = encode_folder_name(name)
    assert wire.isascii() and all(0x20 <= ord(c) <= 0x7E for c in wire)
    assert decode_folder_name(wire) == name


@pytest.mark.skipif(shutil.which("doveadm") is None, reason="Dovecot's doveadm is not installed")
@pytest.mark.parametrize("name", ["Отправленные", "Sent & Co", "日本語", "Корзина/Старое"])
def test_the_codec_agrees_with_dovecot(name: str) -> None:
    done = subprocess.run(["doveadm", "mailbox", "mutf7", name], capture_output=True, text=True, check=True)
    assert encode_folder_name(name) == done.stdout.strip()


@pytest.mark.parametrize("broken", ["&Jjo", "&!!!-", "&BB4-x&"])
def test_a_name_that_is_not_modified_utf7_is_kept_as_it_is(broken: str) -> None:
    assert decode_folder_name(broken) == broken


def test_list_replies_are_parsed_with_flags_delimiters_quoting_and_literals() -> None:
    items = [
        b'(\\HasNoChildren \\Sent) "/" Sent',
        b'(\\HasNoChildren) "/" "Sent Items"',
        b'(\\HasNoChildren) "." "INBOX.Say \\"hi\\""',
        (b'(\\HasNoChildren) "/" {34}', b"&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
        b"(\\Noselect) NIL Public",
        b"garbage",
        None,
    ]

    folders = parse_list_response(items)

    assert [(f.name, f.delimiter) for f in folders] == [
        ("Sent", "/"),
        ("Sent Items", "/"),
        ('INBOX.Say "hi"', "."),
        ("Отправленные", "/"),
        ("Public", None),
    ]
    assert folders[0].flags == {"\\hasnochildren", "\\sent"}
    assert folders[3].raw == "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"
    assert not folders[4].selectable


def folder(name: str, *flags: str, delimiter: str = "/") -> Folder:
    return Folder(name, encode_folder_name(name), frozenset(f.lower() for f in flags), delimiter)


def test_the_special_use_attribute_wins_over_any_name() -> None:
    folders = [folder("INBOX"), folder("Sent"), folder("[Gmail]/Отправленные", "\\Sent")]
    assert choose_sent_folder(folders) == folders[2]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["INBOX", "Drafts", "Sent Items"], "Sent Items"),
        (["INBOX", "Sent Messages", "Sent"], "Sent"),  # the usual order decides
        (["INBOX", "Отправленные", "Черновики"], "Отправленные"),
        (["INBOX", "INBOX.Trash", "INBOX.Sent"], "INBOX.Sent"),
        (["INBOX", "INBOX/Sent Items"], "INBOX/Sent Items"),
        (["INBOX", "SENT"], "SENT"),
        (["INBOX", "Drafts"], None),
    ],
)
def test_without_special_use_the_usual_names_are_tried(names: list[str], expected: str | None) -> None:
    delimiter = "." if any("INBOX." in n for n in names) else "/"
    found = choose_sent_folder([folder(n, delimiter=delimiter) for n in names])
    assert (found.name if found else None) == expected


def test_a_folder_that_cannot_be_selected_is_never_chosen() -> None:
    assert choose_sent_folder([folder("Sent", "\\Noselect"), folder("Sent Items")]) == folder("Sent Items")


def test_quoting_escapes_backslashes_and_quotes() -> None:
    assert quote('Say "hi" \\ bye') == '"Say \\"hi\\" \\\\ bye"'
