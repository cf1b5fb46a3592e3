"""The local stack's campaign, played over HTTP after the worked example, step by step.

Two sender mailboxes on the SMTP sink (each at its own rate) mail a Kommo filter's leads
(the stand-in's «Negotiation» stage: `seed.campaign_seed`, one address in it twice and one
contact without an address, so the exclusions show). When everything is sent, one recipient
unsubscribes as a mail client does, by POSTing the `List-Unsubscribe` URL of the email it
received (after a link scanner's GET, which must change nothing), and one address bounces:
an RFC 3464 report (5.1.1, user unknown) about its email is appended to the sending
mailbox's IMAP inbox (Dovecot) and the scheduler's clock is moved past the 5-minute bounce
poll (`DevStack.fast_forward`). The report then shows both, and the suppression list holds
both addresses. Without Dovecot the mailboxes read no inbox: the bounce step is skipped, and
the scenario says why.
"""

from __future__ import annotations

import imaplib
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from typing import Any

from devstack.kommo_standin import seed
from devstack.smtp_sink import SinkMessage
from devstack.system import SINK_PASSWORD, LocalSystem, Step, call
from devstack.worked_example import Play, fetch

BOUNCE_POLL_PERIOD = 300  # the bounce function's schedule: rate(5 minutes)
# The sender mailboxes: address, name, emails a second (high: a demo need not wait).
SENDERS = (
    ("news@mailerdemo.example", "Mailer Demo News", 20.0),
    ("offers@mailerdemo.example", "Mailer Demo Offers", 10.0),
)
OPTS_OUT = seed.campaign_address(3)
BOUNCES = seed.campaign_address(7)
CAMPAIGN = {
    "name": "Spring price list",
    "subject": "{{ contact.first_name }}, our spring price list",
    "html": (
        "<p>Hello, {{ contact.first_name }}!</p>"
        "<p>Our spring prices for «{{ lead.name }}» are ready: "
        '<a href="https://example.com/spring-prices">see the price list</a>.</p>'
        '<p style="font-size:12px"><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
    ),
    "audience": {
        "entity_type": "leads",
        "filter": {"pipeline_id": seed.PIPELINE_ID, "status_ids": [seed.CAMPAIGN_STAGE]},
    },
}
# The audience: every campaign lead but the duplicate and the one without an address.
RECIPIENTS = seed.CAMPAIGN_LEADS - 2


def expected_steps(system: LocalSystem) -> int:
    """The set-up and seven steps; the hard bounce (5) needs the mailboxes' IMAP inbox (Dovecot)."""
    return 8 if system.imap is not None else 7


def unsubscribe_url(email: SinkMessage) -> str | None:
    """The URL of the `List-Unsubscribe` header (folded or not), as a mail client reads it."""
    header = email.message().get("List-Unsubscribe")
    if header is None:
        return None
    value = "".join(str(header).split())
    return value[1:-1] if value.startswith("<") and value.endswith(">") else None


def post_one_click(url: str) -> int:
    """RFC 8058's one-click POST, as Gmail or Apple Mail send it."""
    request = urllib.request.Request(
        url,
        data=b"List-Unsubscribe=One-Click",
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        with error:
            return error.code


def delivery_report(*, sender: str, recipient: str, message_id: str, subject: str) -> bytes:
    """A Postfix-style RFC 3464 report: the remote server said 550 5.1.1 for `recipient`."""
    now = format_datetime(datetime.now(UTC))
    boundary = "dsn-boundary-mailerdemo"
    return (
        "Return-Path: <>\r\n"
        f"Delivered-To: {sender}\r\n"
        f"Date: {now}\r\n"
        "From: MAILER-DAEMON@mx1.mail.example.net (Mail Delivery System)\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"To: {sender}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        f"Message-Id: {make_msgid(domain='mx1.mail.example.net')}\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "This is the mail system at host mx1.mail.example.net.\r\n"
        "\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n"
        "\r\n"
        f"<{recipient}>: host mx.example.org[203.0.113.25] said: 550\r\n"
        f"    5.1.1 <{recipient}>: Recipient address rejected: User unknown in\r\n"
        "    virtual mailbox table (in reply to RCPT TO command)\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx1.mail.example.net\r\n"
        f"X-Postfix-Sender: rfc822; {sender}\r\n"
        f"Arrival-Date: {now}\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822;{recipient}\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        "Remote-MTA: dns; mx.example.org\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected:\r\n"
        "    User unknown in virtual mailbox table\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Undelivered Message Headers\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        f"Return-Path: <{sender}>\r\n"
        f"From: {sender}\r\n"
        f"To: {recipient}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n"
        "\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def _mailboxes(play: Play, token: str) -> list[dict[str, Any]] | None:
    system = play.system
    made = []
    for address, name, rate in SENDERS:
        imap: dict[str, Any] = {}
        if system.imap is not None:
            system.imap.add_user(address, SINK_PASSWORD)
            imap = {"imap_host": system.imap.host, "imap_port": system.imap.port, "imap_security": "none"}
        status, mailbox = call(
            "POST",
            f"{play.api}/v1/mailboxes",
            token,
            {
                "sender_name": name,
                "sender_email": address,
                "smtp_host": "127.0.0.1",
                "smtp_port": system.sink.smtp_port,
                "smtp_security": "none",
                "smtp_password": SINK_PASSWORD,
                "rate_per_second": rate,
                **imap,
            },
        )
        if status != 201:
            play.record("set-up. two sender mailboxes", False, f"{address}: HTTP {status} {mailbox}")
            return None
        made.append(mailbox)
    light = "green" if system.imap is not None else "gray"
    play.record(
        "set-up. two sender mailboxes on the SMTP sink, each at its own rate",
        all(m.get("status") == light for m in made),
        ", ".join(f"{m['sender_email']} {m.get('rate_per_second')}/s {m.get('status')}" for m in made),
    )
    return made if play.steps[-1].ok else None


def play_campaign(system: LocalSystem, say: Callable[[str], None] = print) -> list[Step]:
    """Play the campaign; each step says whether it happened; the report is printed at the end."""
    play = Play(system, say, [])
    token = system.widget_token()
    api = play.api
    say("\nCampaign: two sender mailboxes mail a Kommo stage's leads; one opts out, one bounces")
    mailboxes = _mailboxes(play, token)
    if mailboxes is None:
        return play.steps
    by_address = {m["sender_email"]: m for m in mailboxes}

    # 1. The campaign: a Draft whose audience is a Kommo filter (the pipeline's «Negotiation»).
    body = dict(CAMPAIGN, mailbox_ids=[m["id"] for m in mailboxes])
    status, created = call("POST", f"{api}/v1/campaigns", token, body)
    campaign_id = str((created or {}).get("campaign_id") or "")
    if not play.record(
        "1. a campaign «Spring price list» for the leads at «Negotiation» (a Kommo filter)",
        status == 201 and bool(campaign_id) and created.get("status") == "draft",
        f"HTTP {status}, {created.get('status') if status == 201 else created}",
    ):
        return play.steps

    # 2. Started now: the audience is read from Kommo in packages, each address once.
    status, started = call("POST", f"{api}/v1/campaigns/{campaign_id}/start", token, {})
    if not play.record(
        "2. started: the audience is read from the Kommo stand-in and queued",
        status == 200 and started.get("status") in ("sending", "sent"),
        f"HTTP {status}, {started.get('status') if status == 200 else started}",
    ):
        return play.steps

    # 3. Every email goes out, shared by the two mailboxes; the exclusions are counted.
    def view() -> dict[str, Any]:
        return dict(call("GET", f"{api}/v1/campaigns/{campaign_id}", token)[1] or {})

    done = play.wait(lambda: (v := view()).get("status") == "sent" and v, timeout=90)
    progress = (done or view()).get("progress") or {}
    excluded = {k: v for k, v in (progress.get("excluded") or {}).items() if v}
    emails = [m for m in system.sink.messages if m.subject.endswith("our spring price list")]
    senders = Counter(m.mail_from for m in emails)
    if not play.record(
        "3. sent: every address once, from both mailboxes; the duplicate and the lead without "
        "an address left out",
        bool(done)
        and progress.get("sent") == RECIPIENTS
        and len(emails) == RECIPIENTS
        and len({a for m in emails for a in m.rcpt_tos}) == RECIPIENTS
        and set(senders) == set(by_address)
        and excluded == {"duplicate": 1, "no_address": 1},
        f"status {(done or view()).get('status')}, "
        f"{progress.get('sent')} sent of {progress.get('recipients')}, "
        f"{len(emails)} received ({', '.join(f'{n} from {s}' for s, n in sorted(senders.items()))}), "
        f"excluded {excluded}",
    ):
        return play.steps

    # 4. One recipient unsubscribes: the mail client POSTs the List-Unsubscribe URL (RFC 8058).
    received = next((m for m in emails if m.rcpt_tos == (OPTS_OUT,)), None)
    url = unsubscribe_url(received) if received else None
    scanner = fetch(url)[0] if url else None  # a link scanner's GET shows a page, changes nothing
    posted = post_one_click(url) if url else None
    opted = play.wait(lambda: (view().get("progress") or {}).get("opted_out") == 1)
    status, row = call("GET", f"{api}/v1/suppressions/{OPTS_OUT}", token)
    if not play.record(
        f"4. {OPTS_OUT} unsubscribes: a POST to the email's List-Unsubscribe URL",
        scanner == 200
        and posted == 200
        and bool(opted)
        and status == 200
        and row.get("reason") == "opted_out",
        f"GET (a link scanner) {scanner}, POST {posted}; suppressed: "
        + (f"{row.get('reason')}" if status == 200 else f"HTTP {status}"),
    ):
        return play.steps

    # 5. One address is gone: its delivery report lands in the sending mailbox's inbox.
    if system.imap is None:
        say(
            "    (the hard bounce is skipped: the mailboxes have no IMAP server to read reports from, "
            f"because {system.imap_missing})"
        )
    elif not _bounce(play, token, emails, view):
        return play.steps

    # 6. The suppression list holds the unsubscribed address and the bounced one.
    status, listed = call("GET", f"{api}/v1/suppressions?limit=100", token)
    rows = {r["address"]: r.get("reason") for r in (listed or {}).get("items", [])} if status == 200 else {}
    wanted = {OPTS_OUT: "opted_out", **({BOUNCES: "user_unknown"} if system.imap is not None else {})}
    play.record(
        "6. the suppression list holds " + " and ".join(wanted),
        all(rows.get(a) == r for a, r in wanted.items()),
        ", ".join(f"{a} ({r})" for a, r in sorted(rows.items())) or f"HTTP {status}, empty",
    )

    # 7. The report: totals, rates, exclusions, and the log line by line.
    status, report = call("GET", f"{api}/v1/campaigns/{campaign_id}/report", token)
    log = _log(play, token, campaign_id)
    bounced = 1 if system.imap is not None else 0
    play.record(
        "7. the report: everyone sent, 1 opted out" + (", 1 bounced" if bounced else ""),
        status == 200
        and report.get("status") == "sent"
        and report.get("sent") == RECIPIENTS
        and report.get("opted_out") == 1
        and report.get("bounced") == bounced
        and len(log) == RECIPIENTS,
        f"HTTP {status}, {report.get('sent')} sent, {report.get('opted_out')} opted out, "
        f"{report.get('bounced')} bounced; {len(log)} log lines",
    )
    if status == 200:
        _print_report(play, report, log, {m["id"]: m["sender_email"] for m in mailboxes})
    return play.steps


def _bounce(play: Play, token: str, emails: list[SinkMessage], view: Callable[[], dict[str, Any]]) -> bool:
    system = play.system
    assert system.imap is not None
    email = next((m for m in emails if m.rcpt_tos == (BOUNCES,)), None)
    if email is None:
        return play.record("5. a hard bounce", False, f"no email to {BOUNCES} arrived")
    sender = email.mail_from  # the envelope sender: the mailbox whose inbox gets the report
    report = delivery_report(
        sender=sender, recipient=BOUNCES, message_id=email.message_id, subject=email.subject
    )
    client = imaplib.IMAP4(system.imap.host, system.imap.port)
    try:
        client.login(sender, SINK_PASSWORD)
        appended = client.append("INBOX", None, None, report)[0] == "OK"
    finally:
        client.logout()
    # The bounce function runs every 5 minutes: the scheduler's clock jumps past its next run.
    system.stack.fast_forward(BOUNCE_POLL_PERIOD + 1)
    bounced = play.wait(lambda: (view().get("progress") or {}).get("bounced") == 1, timeout=30)
    status, row = call("GET", f"{play.api}/v1/suppressions/{BOUNCES}", token)
    return play.record(
        f"5. {BOUNCES} is gone: a 5.1.1 report appended to {sender}'s IMAP inbox is read by the "
        "bounce poll 5 minutes later (the scheduler's clock moved ahead)",
        appended and bool(bounced) and status == 200 and row.get("reason") == "user_unknown",
        f"report {'appended' if appended else 'NOT appended'} for {email.message_id}; "
        + (f"suppressed: {row.get('reason')}" if status == 200 else f"not suppressed (HTTP {status})"),
    )


def _log(play: Play, token: str, campaign_id: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    cursor = ""
    while True:
        status, page = call("GET", f"{play.api}/v1/campaigns/{campaign_id}/log?limit=100{cursor}", token)
        if status != 200:
            return lines
        lines += page.get("items") or []
        if not page.get("cursor"):
            return lines
        cursor = f"&cursor={page['cursor']}"


def _print_report(
    play: Play, report: dict[str, Any], log: list[dict[str, Any]], senders: dict[str, str]
) -> None:
    say = play.say
    rates = report.get("rates") or {}
    excluded = report.get("excluded") or {}
    say(f"\nThe campaign's report ({report.get('status')}, {report.get('percent')} % done):")
    totals = ("sent", "failed", "bounced", "opted_out", "opened", "clicked", "complained")
    say(
        f"  totals     {report.get('recipients')} recipients: "
        + ", ".join(f"{report.get(name)} {name.replace('_', ' ')}" for name in totals)
    )
    say(
        "  rates      "
        + ", ".join(
            f"{name} {rates.get(name, 0.0)} %" for name in ("open", "click", "bounce", "complaint", "opt_out")
        )
    )
    say("  excluded   " + (", ".join(f"{k} {v}" for k, v in excluded.items() if v) or "nobody"))
    statuses = Counter(str(line.get("status")) for line in log)
    by_sender = Counter(senders.get(str(line.get("mailbox_id")), str(line.get("mailbox_id"))) for line in log)
    say(f"  log        {len(log)} lines: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
    say("  senders    " + ", ".join(f"{n} from {s}" for s, n in sorted(by_sender.items())))
    for line in log:
        events = [
            kind for kind in ("bounced", "opted_out", "complained", "opened", "clicked") if line.get(kind)
        ]
        if events or line.get("error"):
            say(
                f"  recipient  {line.get('address')}: {line.get('status')}, {', '.join(events)}"
                + (f" ({line['error']})" if line.get("error") else "")
            )
