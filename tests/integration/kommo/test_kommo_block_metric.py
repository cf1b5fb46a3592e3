"""The template's metric filter counts the line the Kommo client writes when Kommo bans our IP,
and only that line (the KommoBlocksAlarm reads what it counts: docs/operations.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from mailer_core.base.clock import FakeClock
from mailer_core.base.logs import logger
from mailer_core.kommo.accounts import client_for_account
from mailer_core.kommo.errors import KommoAccessDenied
from mailer_core.store.models import AccountModel

from devstack.kommo_standin import seed
from devstack.kommo_standin.seed import Seed
from devstack.kommo_standin.server import KommoStandIn
from devstack.resources import load_template
from tests.support.kommo_accounts import point_at, save_account_with_token, serialize_moto
from tests.support.kommo_helpers import TOKEN
from tests.support.metric_filters import matches

pytestmark = pytest.mark.usefixtures("aws_stack")


@pytest.fixture
def kommo(clock: FakeClock, sample: Seed, monkeypatch: pytest.MonkeyPatch) -> Iterator[KommoStandIn]:
    serialize_moto(monkeypatch)
    with KommoStandIn(sample, clock=clock) as running:
        running.add_token(seed.ACCOUNT_ID, TOKEN)
        point_at(running, monkeypatch)
        save_account_with_token(TOKEN)
        yield running


def kommo_block_pattern() -> str:
    """The one pattern every log group's filter of Mailer/kommo_blocks uses."""
    patterns = {
        resource["Properties"]["FilterPattern"]
        for resource in load_template()["Resources"].values()
        if resource["Type"] == "AWS::Logs::MetricFilter"
        and resource["Properties"]["MetricTransformations"][0]["MetricName"] == "kommo_blocks"
    }
    assert len(patterns) == 1, patterns
    return str(patterns.pop())


def test_the_ban_line_the_client_writes_is_counted_as_a_kommo_block(
    kommo: KommoStandIn, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    worker = client_for_account(AccountModel.get(seed.ACCOUNT_ID, consistent_read=True), clock=clock)
    kommo.fail_next(403, body={"title": "Forbidden", "status": 403, "detail": "Your IP address is blocked"})
    # WHEN Kommo bans our IP for the account
    with pytest.raises(KommoAccessDenied):
        worker.get("/api/v4/account")
    # THEN the line written to the function's log (Powertools' JSON) is counted, once
    lines = [json.loads(logger.registered_formatter.format(r)) for r in caplog.records]
    counted = [line for line in lines if matches(kommo_block_pattern(), line)]
    assert [(line["level"], line["account_id"]) for line in counted] == [("ERROR", seed.ACCOUNT_ID)]


@pytest.mark.parametrize(
    "line",
    [
        # a 403 that refuses one call for lack of rights is no ban
        {"level": "ERROR", "message": "Kommo answered 403 to GET /api/v4/users (Forbidden: no rights)"},
        # the ban's words at another level
        {
            "level": "INFO",
            "message": "Kommo answered 403 (the IP is banned): no request through this address",
        },
        {"level": "ERROR", "message": "Kommo answers the account again: unblocked"},
    ],
)
def test_other_lines_are_not_counted_as_kommo_blocks(line: dict[str, str]) -> None:
    assert not matches(kommo_block_pattern(), line)
