"""The sample Kommo account the stand-in serves: users, a sales pipeline, fields, leads, contacts.

Every entity is written in the shape Kommo's API v4 answers a GET with, minus `_links` (the
stand-in adds them) and with links between entities kept as `_embedded` references:
a lead holds `_embedded.contacts[{id, is_main}]` and `_embedded.companies[{id}]`, a contact holds
`_embedded.companies[{id}]`; the reverse links are derived. `demo_seed()` builds fresh data on
every call, so a test may change its copy freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACCOUNT_ID = 31000001
SUBDOMAIN = "mailerdemo"

ADMIN_USER_ID = 8100001
MANAGER_USER_ID = 8100002

PIPELINE_ID = 7300001
STATUS_INCOMING = 7300101
STATUS_QUALIFIED = 7300102
STATUS_OFFER_SENT = 7300103
STATUS_FAMILIAR = 7300104
STATUS_NEGOTIATION = 7300105
STATUS_WON = 142
STATUS_LOST = 143

# Lead custom fields.
FIELD_PRODUCT = 560001  # text
FIELD_QUANTITY = 560002  # numeric
FIELD_DELIVERY = 560003  # select
FIELD_INTERESTS = 560004  # multiselect
FIELD_OFFER_VALID_UNTIL = 560005  # date
FIELD_NEWSLETTER = 560006  # checkbox
# Contact custom fields.
FIELD_PHONE = 570001
FIELD_EMAIL = 570002
FIELD_POSITION = 570003
# Company custom fields.
FIELD_COMPANY_PHONE = 580001
FIELD_COMPANY_EMAIL = 580002
FIELD_COMPANY_WEB = 580003

LEAD_OFFER = 24000001  # main contact Иван Петров, second contact Olga Smirnova, company Ромашка
LEAD_REDESIGN = 24000002  # one contact, John Smith
LEAD_CONSULTING = 24000003  # one contact without an email
CONTACT_IVAN = 25000001
CONTACT_OLGA = 25000002
CONTACT_JOHN = 25000003
CONTACT_MARIA = 25000004
COMPANY_ROMASHKA = 26000001

TAG_VIP = 41001

_T0 = 1763971200  # 2025-11-24T08:00:00Z: when the sample data was "created"

EMAIL_ENUM_CODES = ("WORK", "PRIV", "OTHER")
PHONE_ENUM_CODES = ("WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER")


@dataclass
class Seed:
    """Everything the stand-in starts from. Lists keep Kommo's order (sort, then id)."""

    account: dict[str, Any]
    users: list[dict[str, Any]]
    task_types: list[dict[str, Any]]
    pipelines: list[dict[str, Any]]
    custom_fields: dict[str, list[dict[str, Any]]]
    leads: list[dict[str, Any]] = field(default_factory=list)
    contacts: list[dict[str, Any]] = field(default_factory=list)
    companies: list[dict[str, Any]] = field(default_factory=list)


def custom_field(
    field_id: int,
    entity_type: str,
    name: str,
    type_: str,
    *,
    code: str | None = None,
    sort: int = 500,
    enums: list[tuple[int, str]] | None = None,
) -> dict[str, Any]:
    """A field definition as `GET /api/v4/{entity}/custom_fields` lists it."""
    return {
        "id": field_id,
        "name": name,
        "type": type_,
        "account_id": ACCOUNT_ID,
        "code": code,
        "sort": sort,
        "is_api_only": False,
        "enums": (
            [{"id": eid, "value": value, "sort": (i + 1) * 2} for i, (eid, value) in enumerate(enums)]
            if enums
            else None
        ),
        "group_id": None,
        "required_statuses": [],
        "is_deletable": code is None,
        "is_predefined": code is not None,
        "entity_type": entity_type,
        "remind": None,
        "triggers": [],
        "currency": None,
        "hidden_statuses": [],
        "chained_lists": None,
    }


def _enum_block(first_id: int, codes: tuple[str, ...]) -> list[tuple[int, str]]:
    return [(first_id + i, code) for i, code in enumerate(codes)]


def _multitext(field_id: int, name: str, code: str, values: list[tuple[str, str]], enums: dict[str, int]):
    return {
        "field_id": field_id,
        "field_name": name,
        "field_code": code,
        "field_type": "multitext",
        "values": [{"value": v, "enum_id": enums[c], "enum_code": c} for v, c in values],
    }


def _plain(field_id: int, name: str, type_: str, values: list[dict[str, Any]], code: str | None = None):
    return {
        "field_id": field_id,
        "field_name": name,
        "field_code": code,
        "field_type": type_,
        "values": values,
    }


def _user(user_id: int, name: str, email: str, *, admin: bool) -> dict[str, Any]:
    access = "A" if admin else "M"
    entity_rights = {"view": access, "edit": access, "add": "A", "delete": access, "export": access}
    return {
        "id": user_id,
        "name": name,
        "email": email,
        "lang": "en",
        "rights": {
            "leads": entity_rights,
            "contacts": entity_rights,
            "companies": entity_rights,
            "tasks": {"edit": access, "delete": access},
            "mail_access": True,
            "catalog_access": True,
            "is_admin": admin,
            "is_free": False,
            "is_active": True,
            "group_id": None,
            "role_id": None,
        },
    }


def _status(status_id: int, name: str, sort: int, color: str, *, type_: int = 0, editable: bool = True):
    return {
        "id": status_id,
        "name": name,
        "sort": sort,
        "is_editable": editable,
        "pipeline_id": PIPELINE_ID,
        "color": color,
        "type": type_,
        "account_id": ACCOUNT_ID,
    }


def _entity_base(entity_id: int, name: str, responsible: int) -> dict[str, Any]:
    return {
        "id": entity_id,
        "name": name,
        "responsible_user_id": responsible,
        "group_id": 0,
        "created_by": ADMIN_USER_ID,
        "updated_by": ADMIN_USER_ID,
        "created_at": _T0,
        "updated_at": _T0,
        "closest_task_at": None,
        "is_deleted": False,
        "account_id": ACCOUNT_ID,
    }


def _lead(
    lead_id: int,
    name: str,
    *,
    price: int,
    status_id: int,
    contacts: list[tuple[int, bool]],
    company_id: int | None,
    fields: list[dict[str, Any]] | None,
    tags: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    lead = _entity_base(lead_id, name, MANAGER_USER_ID)
    lead.update(
        {
            "price": price,
            "status_id": status_id,
            "pipeline_id": PIPELINE_ID,
            "loss_reason_id": None,
            "source_id": None,
            "closed_at": None,
            "custom_fields_values": fields,
            "score": None,
            "labor_cost": None,
            "is_price_modified_by_robot": False,
            "_embedded": {
                "tags": tags or [],
                "contacts": [{"id": cid, "is_main": main} for cid, main in contacts],
                "companies": [{"id": company_id}] if company_id else [],
            },
        }
    )
    return lead


def _contact(
    contact_id: int,
    first: str,
    last: str,
    *,
    fields: list[dict[str, Any]],
    company_id: int | None,
) -> dict[str, Any]:
    contact = _entity_base(contact_id, f"{first} {last}", MANAGER_USER_ID)
    contact.update(
        {
            "first_name": first,
            "last_name": last,
            "is_unsorted": False,
            "custom_fields_values": fields or None,
            "_embedded": {"tags": [], "companies": [{"id": company_id}] if company_id else []},
        }
    )
    return contact


def demo_seed() -> Seed:
    """The sample account "mailerdemo" used by the local stack and the tests."""
    email_enums = dict((code, eid) for eid, code in _enum_block(590001, EMAIL_ENUM_CODES))
    phone_enums = dict((code, eid) for eid, code in _enum_block(590011, PHONE_ENUM_CODES))
    company_email_enums = dict((code, eid) for eid, code in _enum_block(590021, EMAIL_ENUM_CODES))
    company_phone_enums = dict((code, eid) for eid, code in _enum_block(590031, PHONE_ENUM_CODES))
    delivery = [(591001, "Pickup"), (591002, "Courier"), (591003, "Post")]
    interests = [(592001, "Email marketing"), (592002, "CRM integration"), (592003, "Analytics")]

    custom_fields = {
        "leads": [
            custom_field(FIELD_PRODUCT, "leads", "Product", "text", sort=510),
            custom_field(FIELD_QUANTITY, "leads", "Quantity", "numeric", sort=520),
            custom_field(FIELD_DELIVERY, "leads", "Delivery", "select", sort=530, enums=delivery),
            custom_field(FIELD_INTERESTS, "leads", "Interests", "multiselect", sort=540, enums=interests),
            custom_field(FIELD_OFFER_VALID_UNTIL, "leads", "Offer valid until", "date", sort=550),
            custom_field(FIELD_NEWSLETTER, "leads", "Newsletter consent", "checkbox", sort=560),
        ],
        "contacts": [
            custom_field(
                FIELD_PHONE,
                "contacts",
                "Phone",
                "multitext",
                code="PHONE",
                sort=4,
                enums=sorted((eid, c) for c, eid in phone_enums.items()),
            ),
            custom_field(
                FIELD_EMAIL,
                "contacts",
                "Email",
                "multitext",
                code="EMAIL",
                sort=6,
                enums=sorted((eid, c) for c, eid in email_enums.items()),
            ),
            custom_field(FIELD_POSITION, "contacts", "Position", "text", code="POSITION", sort=2),
        ],
        "companies": [
            custom_field(
                FIELD_COMPANY_PHONE,
                "companies",
                "Phone",
                "multitext",
                code="PHONE",
                sort=4,
                enums=sorted((eid, c) for c, eid in company_phone_enums.items()),
            ),
            custom_field(
                FIELD_COMPANY_EMAIL,
                "companies",
                "Email",
                "multitext",
                code="EMAIL",
                sort=6,
                enums=sorted((eid, c) for c, eid in company_email_enums.items()),
            ),
            custom_field(FIELD_COMPANY_WEB, "companies", "Web", "url", code="WEB", sort=8),
        ],
    }

    def email(values: list[tuple[str, str]]) -> dict[str, Any]:
        return _multitext(FIELD_EMAIL, "Email", "EMAIL", values, email_enums)

    def phone(values: list[tuple[str, str]]) -> dict[str, Any]:
        return _multitext(FIELD_PHONE, "Phone", "PHONE", values, phone_enums)

    def position(text: str) -> dict[str, Any]:
        return _plain(FIELD_POSITION, "Position", "text", [{"value": text}], code="POSITION")

    contacts = [
        _contact(
            CONTACT_IVAN,
            "Иван",
            "Петров",
            fields=[
                phone([("+7 495 123-45-67", "WORK")]),
                email([("ivan.petrov@example.com", "WORK")]),
                position("Директор по закупкам"),
            ],
            company_id=COMPANY_ROMASHKA,
        ),
        _contact(
            CONTACT_OLGA,
            "Olga",
            "Smirnova",
            fields=[
                email([("olga.smirnova@example.com", "WORK"), ("olga.home@example.org", "PRIV")]),
                position("Chief accountant"),
            ],
            company_id=COMPANY_ROMASHKA,
        ),
        _contact(
            CONTACT_JOHN,
            "John",
            "Smith",
            fields=[email([("john.smith@example.com", "WORK")]), position("Marketing manager")],
            company_id=None,
        ),
        _contact(
            CONTACT_MARIA,
            "Мария",
            "Иванова",
            fields=[phone([("+7 916 555-01-02", "MOB")])],
            company_id=None,
        ),
    ]

    company = _entity_base(COMPANY_ROMASHKA, "ООО «Ромашка»", MANAGER_USER_ID)
    company.update(
        {
            "custom_fields_values": [
                _multitext(
                    FIELD_COMPANY_PHONE, "Phone", "PHONE", [("+7 495 000-11-22", "WORK")], company_phone_enums
                ),
                _multitext(
                    FIELD_COMPANY_EMAIL,
                    "Email",
                    "EMAIL",
                    [("office@example.com", "WORK")],
                    company_email_enums,
                ),
                _plain(
                    FIELD_COMPANY_WEB, "Web", "url", [{"value": "https://romashka.example.com"}], code="WEB"
                ),
            ],
            "_embedded": {"tags": []},
        }
    )

    leads = [
        _lead(
            LEAD_OFFER,
            "Поставка оборудования для ООО «Ромашка»",
            price=150000,
            status_id=STATUS_INCOMING,
            contacts=[(CONTACT_IVAN, True), (CONTACT_OLGA, False)],
            company_id=COMPANY_ROMASHKA,
            fields=[
                _plain(FIELD_PRODUCT, "Product", "text", [{"value": "Mailer Pro, annual plan"}]),
                _plain(FIELD_QUANTITY, "Quantity", "numeric", [{"value": "12"}]),
                _plain(
                    FIELD_DELIVERY,
                    "Delivery",
                    "select",
                    [{"value": "Courier", "enum_id": 591002, "enum_code": None}],
                ),
                _plain(
                    FIELD_INTERESTS,
                    "Interests",
                    "multiselect",
                    [
                        {"value": "Email marketing", "enum_id": 592001, "enum_code": None},
                        {"value": "Analytics", "enum_id": 592003, "enum_code": None},
                    ],
                ),
                _plain(FIELD_OFFER_VALID_UNTIL, "Offer valid until", "date", [{"value": _T0 + 30 * 86400}]),
                _plain(FIELD_NEWSLETTER, "Newsletter consent", "checkbox", [{"value": True}]),
            ],
            tags=[{"id": TAG_VIP, "name": "VIP", "color": None}],
        ),
        _lead(
            LEAD_REDESIGN,
            "Website redesign for Blue Harbor",
            price=4800,
            status_id=STATUS_INCOMING,
            contacts=[(CONTACT_JOHN, True)],
            company_id=None,
            fields=[_plain(FIELD_PRODUCT, "Product", "text", [{"value": "Landing pages"}])],
        ),
        _lead(
            LEAD_CONSULTING,
            "Консультация по автоматизации",
            price=0,
            status_id=STATUS_INCOMING,
            contacts=[(CONTACT_MARIA, True)],
            company_id=None,
            fields=None,
        ),
    ]

    statuses = [
        _status(7300100, "Incoming leads", 10, "#c1c1c1", type_=1, editable=False),
        _status(STATUS_INCOMING, "First contact", 20, "#99ccff"),
        _status(STATUS_QUALIFIED, "Qualified", 30, "#ffff99"),
        _status(STATUS_OFFER_SENT, "Offer sent", 40, "#ffcc66"),
        _status(STATUS_FAMILIAR, "Familiar with the offer", 50, "#ccff66"),
        _status(STATUS_NEGOTIATION, "Negotiation", 60, "#ff99cc"),
        _status(STATUS_WON, "Closed - won", 10000, "#ccff66", editable=False),
        _status(STATUS_LOST, "Closed - lost", 11000, "#d5d8db", editable=False),
    ]

    return Seed(
        account={
            "id": ACCOUNT_ID,
            "name": "Mailer Demo",
            "subdomain": SUBDOMAIN,
            "created_at": _T0,
            "created_by": ADMIN_USER_ID,
            "updated_at": _T0,
            "updated_by": ADMIN_USER_ID,
            "country": "US",
            "currency": "USD",
            "currency_symbol": "$",
            "customers_mode": "disabled",
            "is_unsorted_on": True,
            "mobile_feature_version": 0,
            "is_loss_reason_enabled": True,
            "is_helpbot_enabled": False,
            "is_technical_account": False,
            "contact_name_display_order": 1,
        },
        users=[
            _user(ADMIN_USER_ID, "Anna Admin", "anna.admin@example.com", admin=True),
            _user(MANAGER_USER_ID, "Мария Менеджер", "maria.manager@example.com", admin=False),
        ],
        task_types=[
            {"id": 1, "name": "Follow-up", "color": None, "icon_id": None, "code": "FOLLOW_UP"},
            {"id": 2, "name": "Meeting", "color": None, "icon_id": None, "code": "MEETING"},
        ],
        pipelines=[
            {
                "id": PIPELINE_ID,
                "name": "Sales",
                "sort": 1,
                "is_main": True,
                "is_unsorted_on": True,
                "is_archive": False,
                "account_id": ACCOUNT_ID,
                "_embedded": {"statuses": statuses},
            }
        ],
        custom_fields=custom_fields,
        leads=leads,
        contacts=contacts,
        companies=[company],
    )


# The local stack's campaign (devstack/campaign_demo.py): leads at «Negotiation», where the
# demo seed has none, each with a contact of its own, except one that shares the first lead's
# contact (a duplicate address) and one whose contact has no address.
CAMPAIGN_STAGE = STATUS_NEGOTIATION
CAMPAIGN_LEADS = 30
FIRST_CAMPAIGN_LEAD = 24200001
FIRST_CAMPAIGN_CONTACT = 25200001
_CAMPAIGN_NAMES = (
    "Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Felix", "Greta", "Hugo", "Irina", "Jonas",
)  # fmt: skip


def campaign_address(n: int) -> str:
    return f"client{n:02d}@example.org"


def campaign_seed() -> Seed:
    """The demo seed plus `CAMPAIGN_LEADS` leads at `CAMPAIGN_STAGE` for the local campaign.

    Leads 0 … N-3 have a contact each with one address (`campaign_address(n)`); lead N-2's
    main contact is lead 0's (so its address comes twice); lead N-1's contact has no address.
    """
    data = demo_seed()
    john = next(c for c in data.contacts if c["id"] == CONTACT_JOHN)
    email_field = next(f for f in john["custom_fields_values"] if f["field_code"] == "EMAIL")
    last = CAMPAIGN_LEADS - 1
    for n in range(CAMPAIGN_LEADS):
        contact_id = FIRST_CAMPAIGN_CONTACT + n
        first = _CAMPAIGN_NAMES[n % len(_CAMPAIGN_NAMES)]
        address = {**email_field["values"][0], "value": campaign_address(n)}
        fields = [] if n == last else [{**email_field, "values": [address]}]
        if n != last - 1:
            data.contacts.append(
                _contact(contact_id, first, f"Client {n:02d}", fields=fields, company_id=None)
            )
        main = FIRST_CAMPAIGN_CONTACT if n == last - 1 else contact_id
        data.leads.append(
            _lead(
                FIRST_CAMPAIGN_LEAD + n,
                f"Spring order {n:02d}",
                price=1000 + 100 * n,
                status_id=CAMPAIGN_STAGE,
                contacts=[(main, True)],
                company_id=None,
                fields=None,
            )
        )
    return data
