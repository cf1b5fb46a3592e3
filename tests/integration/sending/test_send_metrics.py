"""What the send worker counts in CloudWatch (base.metrics): each email once, as what became of it."""

from __future__ import annotations

import pytest
from mailer_core.base.clock import FakeClock
from mailer_core.sending.worker import SendWorker

from devstack.resources import StackResources
from tests.support.api_client import ApiClient
from tests.support.fixtures.core import ACCOUNT, LOGIN, PASSWORD, mailbox_body
from tests.support.imap_helpers import compose, take_jobs
from tests.support.metrics import counted
from tests.support.smtp_servers import Credentials, ScriptedHandler, SmtpTestServer, smtp_server


def _mailbox(user: ApiClient, server: SmtpTestServer) -> str:
    reply = user.post("/v1/mailboxes", mailbox_body(server))
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def test_a_retried_email_counts_once_as_sent_and_a_redelivered_job_adds_nothing(
    user: ApiClient, aws_stack: StackResources, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = ScriptedHandler(data_replies=["451 4.3.0 try again later"])
    with smtp_server(handler, authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        mailbox_id = _mailbox(user, server)
        compose(user)
        [job] = take_jobs(aws_stack)
        capsys.readouterr()
        with SendWorker(clock=FakeClock()) as worker:
            assert worker.process(job) == "retrying"
        with SendWorker(clock=FakeClock()) as worker:
            assert [worker.process(job), worker.process(job)] == ["sent", "skipped"]

    assert counted(capsys.readouterr().out) == [("sent", str(ACCOUNT), mailbox_id)]


def test_an_email_the_server_refuses_counts_as_failed(
    user: ApiClient, aws_stack: StackResources, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = ScriptedHandler(rcpt_replies={"client@example.com": "550 5.1.1 No such user"})
    with smtp_server(handler, authenticator=Credentials(LOGIN, PASSWORD), auth_require_tls=False) as server:
        mailbox_id = _mailbox(user, server)
        compose(user)
        [job] = take_jobs(aws_stack)
        capsys.readouterr()
        with SendWorker(clock=FakeClock()) as worker:
            assert worker.process(job) == "failed"

    assert counted(capsys.readouterr().out) == [("failed", str(ACCOUNT), mailbox_id)]
