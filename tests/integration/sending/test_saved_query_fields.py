"""The saved Logs Insights queries (infra/template.yaml) filter on fields the send function's
log lines really carry: an email's lines answer "why did this email fail" and "what did this
account do"."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator

import pytest
from mailer_core.base.clock import FakeClock
from mailer_core.base.logs import logger
from mailer_core.sending.worker import SendWorker

from devstack.resources import StackResources, load_template
from tests.support.api_client import ApiClient
from tests.support.fixtures.core import ACCOUNT, LOGIN, PASSWORD, mailbox_body
from tests.support.imap_helpers import compose, take_jobs
from tests.support.smtp_servers import Credentials, ScriptedHandler, smtp_server


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, object]]]]:
    """The lines the functions' logger wrote so far in the test, as JSON, as CloudWatch gets them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)


def saved_query(name: str) -> str:
    [query] = [
        str(r["Properties"]["QueryString"])
        for r in load_template()["Resources"].values()
        if r["Type"] == "AWS::Logs::QueryDefinition"
        and str(r["Properties"]["Name"]["Fn::Sub"]).endswith(name)
    ]
    return query


def filtered_field(query: str) -> str:
    found = re.search(r"\|\s*filter (\w+) = ", query)
    assert found, query
    return found.group(1)


def test_a_failed_emails_lines_carry_its_id_and_its_account(
    user: ApiClient, aws_stack: StackResources, log_lines: Callable[[], list[dict[str, object]]]
) -> None:
    handler = ScriptedHandler(rcpt_replies={"client@example.com": "550 5.1.1 No such user"})
    with smtp_server(handler, authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        user.post("/v1/mailboxes", mailbox_body(server))
        message_id = compose(user)
        [job] = take_jobs(aws_stack)
        with SendWorker(clock=FakeClock()) as worker:
            assert worker.process(job) == "failed"
    email_field = filtered_field(saved_query("/Why did this email fail"))
    account_field = filtered_field(saved_query("/What did this account do"))
    # the lines the email query finds tell why it failed, with the server's words
    about = [line for line in log_lines() if line.get(email_field) == message_id]
    assert any(
        line["message"] == "message failed" and "No such user" in str(line["reason"]) for line in about
    )
    # and the account query finds them all
    assert about and all(line.get(account_field) == ACCOUNT for line in about)
