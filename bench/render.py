"""Template rendering: renders per second, and Kommo requests per email for a 1,000-lead mailing.

    .venv/bin/python bench/render.py [--renders 300] [--leads 1000]

Everything runs in this process on 127.0.0.1: the Kommo stand-in (devstack) with the demo
account, extended by generated leads (each with its own contact, some with a company, all
with custom fields), and the same code the send worker runs (mailer_core.rendering.personalize).

1. Render speed. A realistic template: about 30 KB of HTML (a styled offer with a table,
   a <style> block and Cyrillic text) using 40 variables and modifiers (declension, numbers
   in words, money, dates, plurals, multi-select values, custom fields by name and id, the
   signature). The context is read once; then the template is rendered `--renders` times:
   - "render": subject, signature and body through the sandbox (rendering.py);
   - "email": the same plus what makes it email-ready (CSS inlining), i.e. `render_email`.
   The first render (compiling the template, loading pymorphy3's dictionaries) is reported
   apart, as a cold start would pay it once.
2. Kommo requests for a mailing of `--leads` leads, counted by the stand-in, for the
   batch sizes that matter: 1 (every email reads its own data), 10 (one SQS batch of the
   send worker: `SendWorker.prefetch`) and 250 (Kommo's page size). Users, pipelines and the
   account are read once per process (per warm Lambda container), as in production.

It prints renders per second and requests per email; the aim is well under one request per
email (the send worker's batches of 10 read 3 lists per batch).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]

from mailer_core.kommo.client import KommoClient  # noqa: E402
from mailer_core.rendering import personalize as personalization  # noqa: E402
from mailer_core.rendering import sandbox as rendering  # noqa: E402
from mailer_core.rendering import variables  # noqa: E402

from devstack.kommo_standin import seed  # noqa: E402
from devstack.kommo_standin.seed import Seed, demo_seed  # noqa: E402
from devstack.kommo_standin.server import KommoStandIn  # noqa: E402

TOKEN = "bench-render-token"
FIRST_LEAD = 24_100_000
FIRST_CONTACT = 25_100_000

SUBJECT = "{{ contact.first_name }}, предложение по сделке «{{ lead.name }}» на {{ lead.price|money('RUB') }}"
SIGNATURE = "<p>--<br>{{ manager.name }}<br>{{ manager.phone }}<br>{{ manager.email }}</p>"

# 40 variable uses with modifiers, spread through the body; the rest is realistic markup.
VARIABLES = [
    "{{ contact.name|inflect('datv') }}",
    "{{ contact.first_name }}",
    "{{ contact|gender('Уважаемый', 'Уважаемая') }}",
    "{{ lead.name }}",
    "{{ lead.price|in_words(currency='RUB') }}",
    "{{ lead.price|amount('RUB') }}",
    "{{ lead.price|money('RUB') }}",
    "{{ lead.stage }}",
    "{{ lead.pipeline }}",
    "{{ lead.responsible }}",
    "{{ lead.responsible.email }}",
    "{{ lead.tags|join_values(', ') }}",
    "{{ lead.cf['Product'] }}",
    "{{ lead.cf[560002] }}",
    "{{ lead.cf['Quantity']|plural('единица', 'единицы', 'единиц', number=True) }}",
    "{{ lead.cf['Delivery'] }}",
    "{{ lead.cf['Interests']|join_values(', ', last=' и ') }}",
    "{{ lead.cf['Offer valid until']|date('long') }}",
    "{{ lead.cf['Newsletter consent'] }}",
    "{{ lead.created_at|date }}",
    "{{ contact.email }}",
    "{{ contact.phone }}",
    "{{ contact.position }}",
    "{{ contact.cf['POSITION']|inflect('gent') }}",
    "{{ contact.name|first_name }}",
    "{{ contact.name|last_name|inflect('gent') }}",
    "{{ company.name }}",
    "{{ company.phone }}",
    "{{ company.web }}",
    "{{ manager.name|inflect('ablt') }}",
    "{{ manager.phone }}",
    "{{ message.subject }}",
    "{{ message.id }}",
    "{{ message.sent_at|datetime }}",
    "{{ today|date('long') }}",
    "{{ 14|plural('день', 'дня', 'дней', number=True) }}",
    "{{ (lead.price * 0.2)|money('RUB') }}",
    "{{ (lead.price * 1.2)|in_words(currency='RUB') }}",
    "{{ account.name }}",
    "{{ contacts|length }}",
]

STYLE = """<style>
body { font-family: Arial, sans-serif; color: #222; }
h1 { font-size: 22px; color: #0a3d62; }
table.offer { border-collapse: collapse; width: 100%; }
table.offer td, table.offer th { border: 1px solid #ccc; padding: 6px 8px; }
.muted { color: #888; font-size: 12px; }
.button { background: #0a3d62; color: #fff; padding: 10px 18px; text-decoration: none; }
</style>"""

PARAGRAPH = (
    "<p>Мы внимательно изучили ваши задачи и подготовили решение, которое поможет автоматизировать "
    "рассылки, отслеживать открытия и клики, а также запускать действия в CRM без участия менеджера. "
    "Ниже приведены условия поставки, сроки и стоимость.</p>"
)


def offer_template(size: int = 30_000) -> str:
    """About `size` characters of HTML using the 40 variables, twice the rows a real offer has."""
    rows = "".join(
        f'<tr><td class="muted">{i + 1}</td><td>Позиция {i + 1}: {VARIABLES[i]}</td>'
        f"<td>{PARAGRAPH[:120]}</td></tr>"
        for i in range(len(VARIABLES))
    )
    head = (
        f"<html><head>{STYLE}</head><body><h1>{VARIABLES[2]} {VARIABLES[0]}!</h1>"
        f'<table class="offer"><tr><th>№</th><th>Данные</th><th>Комментарий</th></tr>{rows}</table>'
        '<p><a class="button" href="{triggerlink:8}">Открыть предложение</a></p>'
    )
    tail = "<p class='muted'>{{ manager.signature }}</p></body></html>"
    filler = []
    while len(head) + sum(len(f) for f in filler) + len(tail) < size:
        filler.append(PARAGRAPH)
    return head + "".join(filler) + tail


def mailing_seed(leads: int) -> Seed:
    data = demo_seed()
    template_lead = data.leads[0]
    template_contact = data.contacts[0]
    for i in range(leads):
        contact = {
            **template_contact,
            "id": FIRST_CONTACT + i,
            "name": f"Клиент Номер{i}",
            "first_name": "Анна" if i % 2 else "Иван",
            "last_name": f"Клиентов{i}",
            "custom_fields_values": [
                {**cf, "values": [{**v, "value": f"client{i}@example.com"} for v in cf["values"]]}
                if cf["field_code"] == "EMAIL"
                else cf
                for cf in template_contact["custom_fields_values"]
            ],
        }
        data.contacts.append(contact)
        lead = {
            **template_lead,
            "id": FIRST_LEAD + i,
            "name": f"Сделка {i}",
            "price": 1000 + i,
            "_embedded": {
                "tags": template_lead["_embedded"]["tags"],
                "contacts": [{"id": FIRST_CONTACT + i, "is_main": True}],
                "companies": [{"id": seed.COMPANY_ROMASHKA}] if i % 3 == 0 else [],
            },
        }
        data.leads.append(lead)
    return data


def manager() -> variables.Manager:
    return variables.Manager(
        user_id=seed.MANAGER_USER_ID,
        name="Мария Менеджер",
        email="maria.manager@example.com",
        phone="+7 495 111-22-33",
        signature_html=SIGNATURE,
    )


def render_one(html: str, data: variables.KommoData, lead_id: int) -> personalization.RenderedEmail:
    return personalization.render_email(
        subject_src=SUBJECT,
        html_src=html,
        data=data,
        entity=("leads", lead_id),
        manager=manager(),
        message_id="01BENCH",
        sent_at=datetime.now(UTC),
        locale="ru",
        timezone="Europe/Moscow",
    )


def speed(html: str, client: KommoClient, renders: int) -> None:
    data = variables.KommoData(client)
    started = time.perf_counter()
    first = render_one(html, data, seed.LEAD_OFFER)
    cold = time.perf_counter() - started
    if first.missing:
        raise SystemExit(f"the benchmark template has variables without a value: {first.missing}")
    context = variables.build_context(
        data=data,
        entity=("leads", seed.LEAD_OFFER),
        manager=manager(),
        message=variables.MessageFacts("01BENCH", "", datetime.now(UTC)),
        timezone="Europe/Moscow",
    )
    options: dict[str, Any] = {"locale": "ru", "timezone": "Europe/Moscow", "currency": "RUB"}
    laps = []
    for _ in range(renders):
        t = time.perf_counter()
        rendering.render_subject(SUBJECT, context, **options)
        rendering.render_html(SIGNATURE, context, **options)
        rendering.render_html(html, context, **options)
        laps.append(time.perf_counter() - t)
    email_laps = []
    for _ in range(renders):
        t = time.perf_counter()
        render_one(html, data, seed.LEAD_OFFER)  # context from the cached data, CSS inlined
        email_laps.append(time.perf_counter() - t)
    print(
        f"template: {len(html):,} characters, {len(VARIABLES)} variables; "
        f"rendered HTML {len(first.html):,} characters"
    )
    print(f"first render (compile, load dictionaries): {cold * 1000:.0f} ms")
    print(f"render (subject + signature + body): median {statistics.median(laps) * 1000:.2f} ms")
    print(f"email (+ context, CSS inlined): median {statistics.median(email_laps) * 1000:.2f} ms")
    print(
        f"templates rendered per second: {1 / statistics.median(laps):.0f} (render), "
        f"{1 / statistics.median(email_laps):.0f} (email-ready)"
    )


def mailing(html: str, standin: KommoStandIn, client: KommoClient, leads: int, batch: int) -> float:
    variables.forget_account_data()
    before = len(standin.requests)
    started = time.perf_counter()
    ids = [FIRST_LEAD + i for i in range(leads)]
    for start in range(0, leads, batch):
        data = variables.KommoData(client)  # one per send-worker batch, as in SendWorker
        chunk = ids[start : start + batch]
        if batch > 1:
            data.prefetch("leads", chunk)
        for lead_id in chunk:
            rendered = render_one(html, data, lead_id)
            if f"Сделка {lead_id - FIRST_LEAD}" not in rendered.subject:
                raise SystemExit(f"lead {lead_id} rendered wrong: {rendered.subject}")
    seconds = time.perf_counter() - started
    made = len(standin.requests) - before
    by_path: dict[str, int] = {}
    for record in standin.requests[before:]:
        by_path[record.path] = by_path.get(record.path, 0) + 1
    print(
        f"mailing of {leads} leads, batches of {batch}: {made} Kommo requests = "
        f"{made / leads:.3f} per email ({', '.join(f'{p} {n}' for p, n in sorted(by_path.items()))}); "
        f"{leads / seconds:.0f} emails rendered per second"
    )
    return made / leads


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--renders", type=int, default=300)
    parser.add_argument("--leads", type=int, default=1000)
    args = parser.parse_args()
    html = offer_template()
    with KommoStandIn(mailing_seed(args.leads), rate_limit=100_000) as standin:
        standin.add_token(seed.ACCOUNT_ID, TOKEN)
        client = KommoClient(seed.SUBDOMAIN, TOKEN, base_url=standin.base_url)
        speed(html, client, args.renders)
        per_email = {batch: mailing(html, standin, client, args.leads, batch) for batch in (1, 10, 250)}
    print(f"Kommo requests per email (send worker, SQS batches of 10): {per_email[10]:.3f}")


if __name__ == "__main__":
    main()
