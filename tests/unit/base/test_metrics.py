"""base.metrics: one EMF line per event, for the totals and for the account and mailbox."""

from __future__ import annotations

import pytest
from mailer_core.base import metrics

from tests.support.metrics import counted, emf_lines


def test_an_event_is_one_emf_line_with_the_totals_and_the_account_and_mailbox(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics.count("sent", 31000001, "01JMAILBOX")

    [line] = emf_lines(capsys.readouterr().out)
    assert line["_aws"]["CloudWatchMetrics"] == [
        {
            "Namespace": "Mailer",
            "Dimensions": [["service"], ["service", "account", "mailbox"]],
            "Metrics": [{"Name": "sent", "Unit": "Count"}],
        }
    ]
    assert (line["service"], line["account"], line["mailbox"], line["sent"]) == (
        "mailer",
        "31000001",
        "01JMAILBOX",
        [1.0],
    )


def test_an_email_without_a_mailbox_is_counted_under_none(capsys: pytest.CaptureFixture[str]) -> None:
    metrics.count("failed", 7, None)

    assert counted(capsys.readouterr().out) == [("failed", "7", "none")]


def test_metrics_switched_off_print_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")

    metrics.count("sent", 1, "m")

    assert capsys.readouterr().out == ""


def test_a_metric_that_cannot_be_made_never_fails_what_it_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics.count("delivered", 1, "m")  # type: ignore[arg-type]

    assert emf_lines(capsys.readouterr().out) == []
