"""A campaign to Kommo leads through the real path: the audience read from the Kommo stand-in
250 to a request, each email rendered with its lead's and contact's data from the package's
snapshot, and the Kommo requests per email counted (the aim: at most 0.05)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mailer_core.base.config import reset_settings
from mailer_core.rendering import variables

from devstack.kommo_standin import seed
from devstack.kommo_standin.seed import Seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import StackResources
from tests.integration.campaigns.test_campaign_sending import fast_mailbox, status_of
from tests.support.api_client import ApiClient
from tests.support.campaigns import work_queues
from tests.support.fixtures.audiences import bulk_address, bulk_lead, bulk_seed
from tests.support.kommo_accounts import save_account_with_token
from tests.support.smtp_servers import SmtpTestServer

LEADS = 300
TOKEN = "campaign-kommo-token"


@pytest.fixture
def kommo(aws_stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[KommoStandIn]:
    """The stand-in with 300 leads (each its own contact), installed in Mailer; Kommo's limit
    of 7 requests a second lifted (these tests count requests, they do not pace them)."""
    variables.forget_account_data()
    sample: Seed = bulk_seed(LEADS)
    with KommoStandIn(sample, rate_limit=1000) as standin:
        standin.add_token(seed.ACCOUNT_ID, TOKEN)
        monkeypatch.setenv("MAILER_KOMMO_REQUESTS_PER_SECOND", "1000")
        monkeypatch.setenv("MAILER_KOMMO_BASE_URL", standin.base_url)
        reset_settings()
        save_account_with_token(TOKEN)
        yield standin
    variables.forget_account_data()


def test_a_campaign_to_kommo_leads_costs_under_0_05_kommo_requests_an_email(
    user: ApiClient, smtp: SmtpTestServer, aws_stack: StackResources, kommo: KommoStandIn
) -> None:
    # GIVEN 300 leads picked in Kommo's list view and a template with their CRM data
    mailbox = fast_mailbox(user, smtp)
    ids = [bulk_lead(n) for n in range(LEADS)]
    made = user.post(
        "/v1/campaigns",
        {
            "name": "Spring offer",
            "subject": "{{ contact.first_name }} {{ contact.last_name }}: {{ lead.name }}",
            "html": "<p>Dear {{ contact.name }}, about {{ lead.name }}.</p>",
            "mailbox_ids": [mailbox],
            "audience": {"entity_type": "leads", "ids": ids},
        },
    )
    assert made.status == 201, made.body
    campaign_id = made.json()["campaign_id"]
    before = len(kommo.requests)
    # WHEN it is started and worked through
    assert user.post(f"/v1/campaigns/{campaign_id}/start", {}).status == 200
    work_queues(aws_stack, until=lambda: status_of(user, campaign_id) == "sent", timeout=120)
    # THEN every lead's contact got one email with its own data, for a few Kommo requests
    requests = len(kommo.requests) - before
    assert sorted(r for m in smtp.messages for r in m.rcpt_tos) == sorted(
        bulk_address(n) for n in range(LEADS)
    )
    subjects = {m.parsed()["Subject"] for m in smtp.messages}
    assert "Buyer 7: " in " | ".join(subjects)
    assert requests / LEADS <= 0.05, f"{requests} Kommo requests for {LEADS} emails"
