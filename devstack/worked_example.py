"""The worked example of the design, played against the local system over HTTP, step by step.

The widget is set up as the manual's example says (triggers, the one-time link «Link to the
offer», the templates «Offer» and «Second offer»), then the seven steps happen for real:
Kommo's digital pipeline posts the stage change, the email goes out through the SMTP sink,
the stand-in Kommo records every change the triggers make, the pixel and the link are fetched
from the received email as a mail client would, and the 24-hour not-opened timer is met by
moving the local scheduler's clock a day ahead (`DevStack.fast_forward`).
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devstack.kommo_standin import seed
from devstack.pipeline_post import post_stage_change
from devstack.smtp_sink import SinkMessage
from devstack.system import SINK_LOGIN, SINK_PASSWORD, LocalSystem, Step, call

EXPECTED_STEPS = 9  # two set-up steps and the seven of the example
DAY = 86400
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)
OFFER_PAGE = "https://example.com/offer.pdf"
# The worked example's template: the lead's and contact's data, Russian modifiers, a trigger link.
OFFER_TEMPLATE: dict[str, Any] = {
    "name": "Offer",
    "subject": "{{ contact.first_name }}, коммерческое предложение по сделке «{{ lead.name }}»",
    "html": (
        "<h1>{{ contact.name|inflect('datv') }}: здравствуйте!</h1>"
        "<p>Направляем наше предложение на {{ lead.price|amount('RUB') }}"
        " ({{ lead.price|in_words(currency='RUB') }}).</p>"
        "<p>Оно действует до {{ lead.cf['Offer valid until']|date('long') }}.</p>"
        '<p><a href="{triggerlink:LINK}">Открыть предложение</a></p>'
        '<p><a href="{web:PAGE}">Страница предложения</a> · <a href="{weblink}">Веб-версия письма</a></p>'
    ),
    "locale": "ru",
    "timezone": "Europe/Moscow",
    "is_public": True,
}
SECOND_OFFER = {
    "name": "Second offer",
    "subject": "{{ contact.first_name }}, напоминаем о предложении",
    "html": "<p>{{ contact.name|inflect('datv') }}: вы ещё не открыли наше письмо.</p>",
    "locale": "ru",
    "is_public": True,
}


# The offer's public web page (docs/pages.md): the lead's data and a form whose answers go to
# the lead's fields by name (a select, a multiselect, a flag, a number) with a note.
OFFER_PAGE_SETTINGS: dict[str, Any] = {
    "name": "Offer page",
    "header": "Предложение: {{ lead.name }}",
    "title": "offer",
    "lifetime_days": 30,
    "cache_minutes": 5,
    "html": (
        "<h1>{{ contact.name|inflect('datv') }}: ваше предложение</h1>"
        "<p>«{{ lead.name }}» на {{ lead.price|amount('RUB') }}.</p>"
        '<form action="{formlink}" method="post">'
        '<p>Доставка: <select name="field[Delivery]"><option>Pickup</option><option>Courier</option>'
        "<option>Post</option></select></p>"
        '<p>Интересы: <label><input type="checkbox" name="field[Interests][]" value="Analytics">'
        " Analytics</label>"
        ' <label><input type="checkbox" name="field[Interests][]" value="CRM integration"> CRM</label></p>'
        '<p>Количество: <input name="field[Quantity]" type="number"></p>'
        '<p><label><input type="checkbox" name="field[Newsletter consent]" value="1"> Рассылка</label></p>'
        '<p><button type="submit">Отправить</button></p></form>'
    ),
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch(url: str, *, agent: str = BROWSER, method: str = "GET") -> tuple[int, str]:
    """Fetch as a mail client does, without following redirects: the status and the Location."""
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, method=method, headers={"User-Agent": agent})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers.get("Location", "")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get("Location", "")


def link_in(email: SinkMessage, text: str) -> str | None:
    match = re.search(r'<a[^>]+href="([^"]+)"[^>]*>\s*' + re.escape(text), email.html or "")
    return match.group(1).replace("&amp;", "&") if match else None


def pixel_in(email: SinkMessage) -> str | None:
    match = re.search(r'<img[^>]+src="([^"]+/o/[^"]+)"', email.html or "")
    return match.group(1).replace("&amp;", "&") if match else None


@dataclass
class Play:
    """A scenario being played: its steps recorded and said as they happen (also the campaign's)."""

    system: LocalSystem
    say: Callable[[str], None]
    steps: list[Step]

    @property
    def api(self) -> str:
        return self.system.stack.api_url

    def record(self, title: str, ok: bool, detail: str) -> bool:
        self.steps.append(Step(title, ok, detail))
        self.say(f"  {'✓' if ok else '✗'} {title}: {detail}")
        return ok

    def wait(self, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Drain the queues and schedules until `check()` is true (returned) or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            self.system.stack.drain(timeout=max(0.1, deadline - time.monotonic()))
            found = check()
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def message(self, token: str, message_id: str) -> dict[str, Any]:
        return dict(call("GET", f"{self.api}/v1/messages/{message_id}", token)[1] or {})

    def arrived(self, header: str) -> SinkMessage | None:
        try:
            return self.system.sink.wait_for(lambda m: m.message_id == header, timeout=30)
        except TimeoutError:
            return None


def _mailbox(play: Play, token: str) -> bool:
    system = play.system
    imap = (
        {"imap_host": system.imap.host, "imap_port": system.imap.port, "imap_security": "none"}
        if system.imap is not None
        else {}
    )
    status, mailbox = call(
        "POST",
        f"{play.api}/v1/mailboxes",
        token,
        {
            "sender_name": "Мария Менеджер",
            "sender_email": SINK_LOGIN,
            "smtp_host": "127.0.0.1",
            "smtp_port": system.sink.smtp_port,
            "smtp_security": "none",
            "smtp_password": SINK_PASSWORD,
            "is_default": True,
            "sender_phone": "+7 495 111-22-33",
            "signature": "<p>--<br>{{ manager.name }}<br>{{ manager.phone }}</p>",
            **imap,
        },
    )
    light = mailbox.get("status") if status == 201 else None
    ok = play.record(
        "set-up 1. the manager's mailbox",
        status == 201 and light == ("green" if system.imap is not None else "gray"),
        f"HTTP {status}, {light}"
        + (f": {mailbox['last_check']['summary']}" if status == 201 else f" {mailbox}"),
    )
    if ok and system.imap is None:
        play.say(
            "    (gray, not green: the demo mailbox has no IMAP server because "
            f"{system.imap_missing}. It sends, but cannot file into Sent or read bounces.)"
        )
    return ok


def _set_up_widget(play: Play, admin: str) -> dict[str, Any] | None:
    """The manual's example: four triggers, the one-time link, the two templates."""
    made: dict[str, Any] = {}

    def post(path: str, body: dict[str, Any]) -> Any:
        status, answer = call("POST", f"{play.api}{path}", admin, body)
        if status != 201:
            raise RuntimeError(f"POST {path} answered {status}: {answer}")
        return answer

    try:
        stage = {"type": "stage", "delay_seconds": 0}
        made["offer_sent"] = post(
            "/v1/triggers",
            {"name": "Change stage to Offer sent", **stage, "params": {"status_id": seed.STATUS_OFFER_SENT}},
        )["id"]
        made["familiar"] = post(
            "/v1/triggers",
            {
                "name": "Change stage to Familiar with the offer",
                **stage,
                "params": {"status_id": seed.STATUS_FAMILIAR},
            },
        )["id"]
        made["task"] = post(
            "/v1/triggers",
            {
                "name": "Set task",
                "type": "task",
                "params": {
                    "text": "Call the client that has opened the offer",
                    "deadline_seconds": 3600,
                },
            },
        )["id"]
        second = post("/v1/templates", SECOND_OFFER)
        made["resend"] = post(
            "/v1/triggers", {"name": "Resend email", "type": "email", "params": {"template_id": second["id"]}}
        )["id"]
        link = post(
            "/v1/links",
            {
                "name": "Link to the offer",
                "once": True,
                "target": OFFER_PAGE,
                "trigger_ids": [made["familiar"]],
            },
        )
        page = post("/v1/web-pages", OFFER_PAGE_SETTINGS)
        made["page"] = page["page_id"]
        html = OFFER_TEMPLATE["html"].replace("LINK", str(link["id"])).replace("PAGE", str(page["page_id"]))
        offer = dict(OFFER_TEMPLATE, html=html)
        offer["triggers"] = {
            "sent": [made["offer_sent"]],
            "opened": [made["task"]],
            "not_opened": [made["resend"]],
        }
        offer["not_opened_after"] = DAY
        made["offer"] = post("/v1/templates", offer)["id"]
        made["link"] = link["id"]
        _, pipeline = call("GET", f"{play.api}/v1/pipeline/settings", admin)
        made["secret"] = pipeline["secret"]
    except (RuntimeError, KeyError, TypeError) as error:
        play.record("set-up 2. triggers, the trigger link and the templates", False, str(error))
        return None
    play.record(
        "set-up 2. triggers, the trigger link and the templates",
        True,
        f"4 triggers, link {{triggerlink:{made['link']}}} «Link to the offer» (once), "
        "«Offer» (sent → Offer sent, opened → Set task, not opened in 24 h → Resend email), «Second offer», "
        f"web page {{web:{made['page']}}} «Offer page» with a form",
    )
    return made


def _stage_post(play: Play, made: dict[str, Any], lead_id: int) -> tuple[int, dict[str, Any]]:
    return post_stage_change(
        play.api,
        account_id=seed.ACCOUNT_ID,
        subdomain=seed.SUBDOMAIN,
        secret=made["secret"],
        lead_id=lead_id,
        pipeline_id=seed.PIPELINE_ID,
        status_id=seed.STATUS_QUALIFIED,
        template_id=made["offer"],
    )


def play_example(system: LocalSystem, say: Callable[[str], None] = print) -> list[Step]:
    """Play the set-up and the seven steps; each says whether it happened."""
    play = Play(system, say, [])
    manager, admin = system.widget_token(), system.widget_token(user_id=seed.ADMIN_USER_ID)
    kommo = system.kommo
    say("Worked example: from a stage change in Kommo to every trigger of the offer email")
    if not _mailbox(play, manager):
        return play.steps
    made = _set_up_widget(play, admin)
    if made is None:
        return play.steps

    # 1. The lead moves to «Qualified»: the digital pipeline posts the action.
    started = time.monotonic()
    status, answer = _stage_post(play, made, seed.LEAD_OFFER)
    took = time.monotonic() - started
    message_id = str(answer.get("message_id") or "")
    if not play.record(
        "1. the lead reaches «Qualified»: Kommo's digital pipeline posts the Mailer action",
        status == 202 and bool(message_id),
        f"HTTP {status} in {took * 1000:.0f} ms, {answer}",
    ):
        return play.steps

    # 2. A message for the lead, with the template's triggers frozen in, is queued.
    stored = play.wait(
        lambda: play.message(manager, message_id).get("id") and play.message(manager, message_id)
    )
    frozen = (stored or {}).get("triggers") or {}
    if not play.record(
        "2. a message for the lead is stored with the template's triggers and queued",
        bool(stored) and stored.get("origin") == "pipeline" and frozen.get("opened") == [made["task"]],
        f"origin {stored.get('origin') if stored else None}, to {stored.get('to') if stored else None}, "
        f"triggers {sorted(frozen)}",
    ):
        return play.steps

    # 3. Sent through the manager's mailbox, rendered, tracked, filed into Sent.
    email = play.arrived(stored["message_id_header"])
    current = play.wait(lambda: (m := play.message(manager, message_id)).get("status") == "sent" and m)
    seen = [h["event"] for h in (current or {}).get("history", [])]
    filed = system.imap is None or play.wait(
        lambda: "filed" in [h["event"] for h in play.message(manager, message_id).get("history", [])]
    )
    if not play.record(
        "3. sent from the manager's mailbox, rendered with the lead's data"
        + (", filed into Sent" if system.imap is not None else ""),
        email is not None
        and bool(current)
        and bool(filed)
        and "{{" not in email.subject
        and pixel_in(email) is not None
        and link_in(email, "Открыть предложение") is not None,
        f"{email.subject!r} to {', '.join(email.rcpt_tos)}"
        if email
        else f"nothing arrived ({' → '.join(seen)})",
    ):
        return play.steps
    assert email is not None
    # The offer's page and the email's web version, for a person to open (the banner prints them).
    for name, kind in (("page", "p"), ("web version", "w")):
        found = re.search(r'href="([^"]*/' + kind + r'/[^"]+)"', email.html or "")
        if found:
            system.page_urls[name] = found.group(1).replace("&amp;", "&")

    # 4. "After sending": the lead moves to «Offer sent»; the not-opened timer waits 24 hours.
    moved = play.wait(lambda: (kommo.lead(seed.LEAD_OFFER) or {}).get("status_id") == seed.STATUS_OFFER_SENT)
    timer = play.wait(
        lambda: [h for h in play.message(manager, message_id)["history"] if h["event"] == "timer"]
    )
    if not play.record(
        "4. after sending: the lead moved to «Offer sent», a not-opened timer is set for 24 hours",
        bool(moved) and bool(timer),
        f"lead stage {(kommo.lead(seed.LEAD_OFFER) or {}).get('status_id')}; "
        + (timer[0]["detail"] if timer else "no timer"),
    ):
        return play.steps

    # 5. The client opens the email: the pixel fires once, the task is set, the timer is cancelled.
    pixel_status, _ = fetch(str(pixel_in(email)))
    fetch(str(pixel_in(email)))  # a second open is counted, and runs nothing
    task = play.wait(lambda: [t for t in kommo.tasks if t.get("entity_id") == seed.LEAD_OFFER])
    cancelled = play.wait(
        lambda: any("cancelled" in (h["detail"] or "") for h in play.message(manager, message_id)["history"])
    )
    if not play.record(
        "5. the client opens it: the task is set for the responsible manager, the timer is cancelled",
        pixel_status == 200 and len(task or []) == 1 and bool(cancelled),
        f"pixel HTTP {pixel_status}; task «{task[0]['text']}» for user {task[0]['responsible_user_id']}"
        if task
        else f"pixel HTTP {pixel_status}; no task",
    ):
        return play.steps

    # 6. The client clicks the one-time trigger link (a scanner fetched it first, as gateways do).
    link = str(link_in(email, "Открыть предложение"))
    scanner_status, _ = fetch(link, agent="Mozilla/5.0 (compatible; Barracuda Sentinel link scanner)")
    sent_at = datetime.fromisoformat(current["sent_at"]).timestamp()
    time.sleep(max(0.0, sent_at + 10.5 - time.time()))  # people click later than scanners do
    first, target = fetch(link)
    familiar = play.wait(lambda: (kommo.lead(seed.LEAD_OFFER) or {}).get("status_id") == seed.STATUS_FAMILIAR)
    second, _ = fetch(link)
    play.system.stack.drain(timeout=10)
    runs = [
        h
        for h in play.message(manager, message_id)["history"]
        if h["event"] == "trigger" and "Familiar" in (h["detail"] or "")
    ]
    if not play.record(
        "6. the client clicks «Link to the offer»: the lead moved to «Familiar with the offer»; "
        "a second click redirects and runs nothing",
        scanner_status == 302
        and first == 302
        and target == OFFER_PAGE
        and bool(familiar)
        and second == 302
        and len(runs) == 1,
        f"scanner {scanner_status} (ran nothing), click {first} → {target}, second click {second}, "
        f"link triggers ran {len(runs)} time(s)",
    ):
        return play.steps

    # 7. Another lead's email is not opened: a day later the timer sends «Second offer».
    status, answer = _stage_post(play, made, seed.LEAD_REDESIGN)
    other = str(answer.get("message_id") or "")
    play.wait(
        lambda: (
            play.message(manager, other).get("status") == "sent"
            and any(h["event"] == "timer" for h in play.message(manager, other)["history"])
        )
    )
    system.stack.fast_forward(DAY + 60)
    follow_up = play.wait(lambda: [m for m in system.sink.messages if "напоминаем" in m.subject])
    play.record(
        "7. a lead whose email is not opened: 24 hours later (the scheduler's clock moved ahead) "
        "«Second offer» is sent",
        status == 202 and bool(follow_up),
        f"{follow_up[0].subject!r} to {', '.join(follow_up[0].rcpt_tos)}" if follow_up else "no follow-up",
    )
    _print_kommo(play)
    return play.steps


def _print_kommo(play: Play) -> None:
    kommo = play.system.kommo
    names = {s["id"]: s["name"] for p in kommo.state()["pipelines"] for s in p["_embedded"]["statuses"]}
    play.say("\nWhat the stand-in Kommo now holds:")
    for change in kommo.changes:
        body = change.body if isinstance(change.body, list) else [change.body]
        for item in body:
            if isinstance(item, dict) and "status_id" in item:
                play.say(f"  stage   {change.path}: → «{names.get(item['status_id'], item['status_id'])}»")
    for task in kommo.tasks:
        play.say(
            f"  task    «{task['text']}» on {task['entity_type']} {task['entity_id']}, "
            f"for user {task['responsible_user_id']}"
        )
    for email in play.system.sink.messages:
        play.say(f"  email   {email.subject!r} → {', '.join(email.rcpt_tos)}")
