"""Replies and forwards: the subject prefixed once, the threading headers, the quoted body."""

from __future__ import annotations

import pytest
from mailer_core.base.errors import InvalidInput
from mailer_core.messages import threads


@pytest.mark.parametrize(
    ("subject", "reply", "forward"),
    [
        ("Offer", "Re: Offer", "Fwd: Offer"),
        ("Re: Offer", "Re: Offer", "Fwd: Re: Offer"),
        ("RE: Re: re:Offer", "Re: Offer", "Fwd: RE: Re: re:Offer"),
        ("Re[2]: Offer", "Re: Offer", "Fwd: Re[2]: Offer"),
        ("AW: Angebot", "Re: Angebot", "Fwd: AW: Angebot"),
        ("Fwd: Offer", "Re: Fwd: Offer", "Fwd: Offer"),
        ("FW: fwd: Offer", "Re: FW: fwd: Offer", "Fwd: Offer"),
        ("Отв: Предложение", "Re: Предложение", "Fwd: Отв: Предложение"),
        ("", "Re: ", "Fwd: "),
        ("Reply about Fwd", "Re: Reply about Fwd", "Fwd: Reply about Fwd"),
    ],
)
def test_the_subject_is_prefixed_once(subject: str, reply: str, forward: str) -> None:
    assert threads.prefixed_subject("reply", subject) == reply
    assert threads.prefixed_subject("forward", subject) == forward
    assert threads.prefixed_subject("reply", threads.prefixed_subject("reply", subject)) == reply


def test_a_reply_sets_in_reply_to_and_references_a_forward_references_only() -> None:
    received = threads.parse(
        {"message_id_header": "<b@mail.example>", "references": "<a@mail.example>  <x@y.example>"}
    )
    assert received is not None
    assert received.threading() == (
        "<b@mail.example>",
        ["<a@mail.example>", "<x@y.example>", "<b@mail.example>"],
    )
    assert received.threading("<ours@example.com>")[1][0] == "<ours@example.com>"
    forward = threads.parse({"mode": "forward", "message_id_header": "b@mail.example"})
    assert forward is not None and forward.threading() == (None, ["<b@mail.example>"])


def test_the_quoted_body_is_text_and_never_a_variable() -> None:
    received = threads.parse(
        {
            "message_id_header": "<b@mail.example>",
            "from": "Client <c@example.com>",
            "text": "Price {{ lead.price }} and {subject}\n<script>x</script> 100%",
        }
    )
    assert received is not None
    html = threads.answer_html(received, "<p>Thanks</p>")
    assert html.startswith("<p>Thanks</p>")
    assert "{" not in html and "}" not in html and "<script>" not in html
    assert "&#123;&#123; lead.price &#125;&#125;" in html and "<blockquote" in html
    assert "Client &lt;c@example.com&gt; wrote:" in html


def test_a_forward_names_the_original_sender_date_and_subject() -> None:
    received = threads.parse(
        {
            "mode": "forward",
            "message_id_header": "<b@m.example>",
            "from": "c@example.com",
            "subject": "Q",
            "html": "<p>Hi</p>",
        }
    )
    assert received is not None
    html = threads.quoted_html(received)
    assert (
        "Forwarded message" in html
        and "From: c@example.com" in html
        and "Subject: Q" in html
        and "Hi" in html
    )


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("text", "received"),
        ({}, "received.message_id_header"),
        ({"message_id_header": "no-at-sign"}, "received.message_id_header"),
        ({"message_id_header": "<a@b>", "mode": "reply_all"}, "received.mode"),
        ({"message_id_header": "<a@b>", "references": ["bad"]}, "received.references[0]"),
        ({"message_id_header": "<a@b>", "text": 5}, "received.text"),
        ({"message_id_header": "<a@b>", "other": 1}, "received.other"),
    ],
)
def test_a_malformed_received_email_names_the_field(value: object, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        threads.parse(value)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "subject",
    [
        "Offer {{ lead.name }}",
        "Re: {subject} and {% if x %}",
        'quote " and \\ back',
        "{# not a comment #}",
        "100% }}",
    ],
)
def test_a_received_subject_renders_as_itself(subject: str) -> None:
    from mailer_core.rendering import sandbox

    assert sandbox.render_subject(threads.literal_subject(subject), {}).text == subject
