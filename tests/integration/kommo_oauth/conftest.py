"""Fixtures for the Kommo install and token tests: moto, the stand-in on simulated time, installs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
from mailer_core.kommo_hooks import install as kommo_oauth
from mailer_core.store.models import AccountModel

from devstack import kommo_seed as seed
from devstack.kommo_standin import KommoStandIn
from devstack.resources import StackResources
from tests.support.api_client import LambdaContext, http_event, load_handler
from tests.support.kommo_accounts import CLIENT_ID, point_at, serialize_moto
from tests.support.sim_clock import SimClock
from tests.support.sqs import deliver, receive_batch

Redirect = Callable[..., dict[str, Any]]


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


@pytest.fixture
def standin(
    aws_stack: StackResources, clock: SimClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KommoStandIn]:
    """The stand-in on the tests' clock, our integration registered, the settings pointing at it."""
    serialize_moto(monkeypatch)
    with KommoStandIn(seed.demo_seed(), clock=clock) as running:
        point_at(running, monkeypatch)
        yield running


@pytest.fixture
def redirect() -> Redirect:
    """Kommo's install redirect to the webhook function: GET /hooks/kommo/install?…"""
    webhook = load_handler("webhook")

    def call(**params: str) -> dict[str, Any]:
        url = "https://mailer.test.example/hooks/kommo/install?" + urlencode(params)
        event = http_event("GET", url, route_key="GET /hooks/kommo/install")
        return dict(webhook.lambda_handler(event, LambdaContext()))

    return call


@pytest.fixture
def run_exchanges(aws_stack: StackResources) -> Callable[[], dict[str, Any]]:
    """One poll of the KommoAuth queue into the kommo_auth function, as Lambda's event source does."""
    function = load_handler("kommo_auth")
    url, arn = aws_stack.refs["KommoAuthQueue"], aws_stack.attrs[("KommoAuthQueue", "Arn")]
    return lambda: deliver(function, url, arn)


@pytest.fixture
def installed(standin: KommoStandIn, aws_stack: StackResources, clock: SimClock) -> AccountModel:
    """The demo account installed through the real flow (code, redirect, queued exchange) on `clock`."""
    install_through_oauth(standin, aws_stack, clock)
    return AccountModel.get(seed.ACCOUNT_ID, consistent_read=True)


def install_through_oauth(standin: KommoStandIn, aws_stack: StackResources, clock: SimClock) -> None:
    code = standin.issue_code(CLIENT_ID)
    page = kommo_oauth.receive_install(
        {"code": code, "referer": f"{seed.SUBDOMAIN}.kommo.com", "from_widget": "1"}, clock=clock
    )
    assert page.status == 200
    [message] = receive_batch(aws_stack.refs["KommoAuthQueue"])
    boto3.client("sqs").delete_message(
        QueueUrl=aws_stack.refs["KommoAuthQueue"], ReceiptHandle=message["ReceiptHandle"]
    )
    assert (
        kommo_oauth.complete_install(kommo_oauth.InstallJob.from_body(message["Body"]), clock=clock)
        == "connected"
    )
