"""A campaign part's send jobs in SQS messages: one mailbox's jobs of one second together."""

from __future__ import annotations

from mailer_core.adapters import sqs
from mailer_core.campaigns.expansion import bundled


def job(n: int, mailbox: str) -> sqs.SendJob:
    return sqs.SendJob(1, f"m{n:03d}", mailbox, "bulk", recipients=(f"r{n}@example.com",))


def test_jobs_of_one_mailbox_and_second_share_a_message_up_to_its_rate() -> None:
    # GIVEN a 3/s mailbox with 7 emails in second 0, and a 1/s one with two emails
    jobs = [(job(n, "fast"), 0) for n in range(7)] + [(job(7, "slow"), 0), (job(8, "slow"), 1)]
    bundles = bundled(jobs, {"fast": 3.0, "slow": 1.0})
    # THEN the fast one's second is three messages (3, 3, 1); the slow one's emails go alone
    assert [([j.message_id for j in js], delay) for js, delay in bundles] == [
        (["m000", "m001", "m002"], 0),
        (["m003", "m004", "m005"], 0),
        (["m006"], 0),
        (["m007"], 0),
        (["m008"], 1),
    ]


def test_a_bundle_never_holds_more_than_the_most_whatever_the_rate() -> None:
    jobs = [(job(n, "fast"), 2) for n in range(60)]
    sizes = [len(js) for js, _ in bundled(jobs, {"fast": 100.0})]
    assert sizes == [sqs.BUNDLE_MOST, sqs.BUNDLE_MOST, 60 - 2 * sqs.BUNDLE_MOST]


def test_a_bundle_body_reads_back_as_its_jobs_and_a_single_job_stays_a_plain_body() -> None:
    jobs = [job(n, "fast") for n in range(3)]
    assert sqs.send_bodies(sqs.bundle_body(jobs)) == jobs
    assert sqs.bundle_body(jobs[:1]) == jobs[0].to_body()
    assert sqs.send_bodies(jobs[0].to_body()) == jobs[:1]
