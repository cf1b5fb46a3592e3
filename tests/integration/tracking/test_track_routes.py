"""The open pixel and click routes of the track function, against moto."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mailer_core.events import message_events
from mailer_core.store import timeline
from mailer_core.store.models import AccountModel
from mailer_core.tracking import routes as tracking

from tests.support.fixtures.tracking import (
    ACCOUNT,
    BASE,
    click_path,
    fresh,
    hit,
    open_path,
    sent_message,
)
from tests.support.kommo_accounts import serialize_moto

pytestmark = pytest.mark.usefixtures("tracked")
OFFER = "https://shop.example.com/offer?utm=1&x=2"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[int, str], datetime]]:
    calls: list[tuple[tuple[int, str], datetime]] = []
    lock = threading.Lock()

    def record(key: tuple[int, str], when: datetime) -> None:
        with lock:
            calls.append((key, when))

    monkeypatch.setattr(message_events, "on_message_opened", record)
    return calls


def assert_pixel(reply: Any) -> None:
    assert reply.status == 200
    assert reply.body == tracking.PIXEL_GIF and len(reply.body) == 43 and reply.body.startswith(b"GIF89a")
    assert reply.headers["content-type"] == "image/gif"
    assert "no-store" in reply.headers["cache-control"]


def test_a_first_open_is_recorded_once_and_later_opens_are_counted(opened: list[Any]) -> None:
    # GIVEN a sent message
    sent_message("M1", [OFFER])
    # WHEN a person opens it three times
    replies = [hit(open_path("M1")) for _ in range(3)]
    # THEN each answer is the pixel; the first open is set once; the hook ran once
    for reply in replies:
        assert_pixel(reply)
    message = fresh("M1")
    assert int(message.opens) == 3 and not message.machine_opens
    assert message.first_open_at is not None
    assert [key for key, _ in opened] == [(ACCOUNT, "M1")]
    assert opened[0][1] == message.first_open_at


def test_twenty_concurrent_first_opens_run_the_hook_once(
    opened: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a sent message and moto's requests made atomic, as DynamoDB's single-item writes are
    serialize_moto(monkeypatch)
    sent_message("M2", [])
    start = threading.Barrier(20)
    replies: list[Any] = []

    def one() -> None:
        start.wait()
        replies.append(hit(open_path("M2")))

    # WHEN 20 opens arrive at once
    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN all got the pixel, 20 opens are counted and the hook ran exactly once
    assert len(replies) == 20 and all(r.body == tracking.PIXEL_GIF for r in replies)
    assert int(fresh("M2").opens) == 20
    assert len(opened) == 1


@pytest.mark.parametrize(
    ("method", "agent", "ip", "headers"),
    [
        ("HEAD", "Mozilla/5.0 Chrome/131.0", "198.51.100.7", {}),
        (
            "GET",
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com YahooMailProxy)",
            "1.2.3.4",
            {},
        ),
        (
            "GET",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
            "1.2.3.4",
            {},
        ),
        ("GET", "Mozilla/5.0 Chrome/131.0", "40.107.22.10", {}),  # Microsoft 365 protection range
        ("GET", "Mozilla/5.0 Chrome/131.0", "198.51.100.7", {"sec-purpose": "prefetch"}),
    ],
    ids=["head", "yahoo-proxy", "apple-mpp", "microsoft-eop", "prefetch"],
)
def test_machine_opens_are_counted_apart_and_never_set_the_first_open(
    opened: list[Any], method: str, agent: str, ip: str, headers: dict[str, str]
) -> None:
    sent_message("M3", [])
    reply = hit(open_path("M3"), method=method, agent=agent, ip=ip, **headers)
    assert reply.status == 200 and reply.headers["content-type"] == "image/gif"
    message = fresh("M3")
    assert int(message.machine_opens) == 1 and not message.opens
    assert message.first_open_at is None and opened == []
    # AND a person's open afterwards is still the first one
    hit(open_path("M3"))
    assert fresh("M3").first_open_at is not None and len(opened) == 1


def test_an_account_can_turn_the_machine_filter_off(opened: list[Any]) -> None:
    AccountModel(ACCOUNT, subdomain="demo", filter_machine_traffic=False).save()
    sent_message("M4", [])
    hit(
        open_path("M4"),
        agent="Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    )
    message = fresh("M4")
    assert int(message.opens) == 1 and not message.machine_opens and len(opened) == 1


def test_gmail_image_proxy_counts_as_a_person() -> None:
    """Gmail fetches the pixel when the reader opens the email, not on delivery."""
    sent_message("M5", [])
    hit(
        open_path("M5"),
        agent="Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    )
    assert int(fresh("M5").opens) == 1


def test_forged_and_altered_open_tokens_get_the_pixel_and_record_nothing(opened: list[Any]) -> None:
    sent_message("M6", [])
    good = open_path("M6")[3:]
    altered = good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB")
    flipped = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    for token in (altered, flipped, "garbage", "x" * 300, good + "A"):
        assert_pixel(hit("/o/" + token))
    # a click token is not an open token
    assert_pixel(hit("/o/" + click_path("M6", 0, OFFER)[3:]))
    message = fresh("M6")
    assert not message.opens and not message.machine_opens and opened == []


def test_the_pixel_is_the_same_when_dynamodb_fails(
    opened: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent_message("M7", [])

    def down(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("DynamoDB is down")

    monkeypatch.setattr(timeline, "_update", down)  # the open's one UpdateItem (and the timeline's)
    assert_pixel(hit(open_path("M7")))
    assert opened == []


def test_an_open_of_an_unknown_message_creates_nothing() -> None:
    assert_pixel(hit(open_path("NOPE")))
    from mailer_core.store.models import MessageModel

    assert MessageModel.count(ACCOUNT) == 0


def test_a_click_redirects_to_the_stored_target_and_is_counted() -> None:
    sent_message("C1", ["https://a.example.com/", OFFER])
    reply = hit(click_path("C1", 1, OFFER))
    assert reply.status == 302 and reply.headers["location"] == OFFER
    hit(click_path("C1", 1, OFFER))
    message = fresh("C1")
    assert [int(n) for n in message.link_clicks] == [0, 2]
    assert [int(n) for n in message.machine_link_clicks] == [0, 0]


def test_scanner_clicks_redirect_but_count_as_machines() -> None:
    sent_message("C2", [OFFER])
    head = hit(click_path("C2", 0, OFFER), method="HEAD")
    scanner = hit(click_path("C2", 0, OFFER), agent="Mozilla/5.0 (compatible; Proofpoint URL Defense)")
    network = hit(click_path("C2", 0, OFFER), ip="104.47.1.1")
    assert {head.status, scanner.status, network.status} == {302}
    assert [int(n) for n in fresh("C2").machine_link_clicks] == [3]
    assert [int(n) for n in fresh("C2").link_clicks] == [0]


def test_a_click_seconds_after_sending_is_a_machine() -> None:
    just_now = datetime.now(UTC) - timedelta(seconds=2)
    sent_message("C3", [OFFER], sent=just_now)
    assert hit(click_path("C3", 0, OFFER, sent=just_now)).status == 302
    assert [int(n) for n in fresh("C3").machine_link_clicks] == [1]


def test_forged_clicks_get_link_not_found_and_there_is_no_open_redirect() -> None:
    sent_message("C4", [OFFER])
    good = click_path("C4", 0, OFFER)[3:]
    altered = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    evil = click_path("C4", 0, "https://evil.example.net/")  # signed, but not the stored target
    beyond = click_path("C4", 5, OFFER)  # signed, no such link
    other = click_path("C-unknown", 0, OFFER)
    for path in ("/c/" + altered, "/c/garbage", evil, beyond, other, "/c/" + open_path("C4")[3:]):
        reply = hit(path)
        assert reply.status == 404, path
        assert "location" not in reply.headers
        assert b"Link not found" in reply.body and reply.headers["content-type"].startswith("text/html")
    assert [int(n) for n in fresh("C4").link_clicks] == [0]
    assert [int(n) for n in fresh("C4").machine_link_clicks] == [0]


def test_the_message_view_shows_opens_and_clicks(aws_stack: Any) -> None:
    from mailer_core.messages.views import public_view

    sent_message("V1", [OFFER])
    hit(open_path("V1"))
    hit(open_path("V1"), method="HEAD")
    hit(click_path("V1", 0, OFFER))
    view = public_view(fresh("V1"))
    assert view["opens"] == {"people": 1, "machines": 1}
    assert view["first_open_at"] is not None
    assert view["clicks"] == [{"url": OFFER, "people": 1, "machines": 0}]
    assert BASE  # the base URL is configured for these tests


def test_the_function_answers_only_its_own_routes() -> None:
    """The track function reads its routes from the event itself (no resolver): health, the
    pixel and clicks for GET and HEAD; anything else is the link-not-found page, recording nothing."""
    sent_message("R1", [OFFER])
    health = hit("/t/health")
    assert health.status == 200 and json.loads(health.body) == {"status": "ok", "function": "track"}
    pixel = hit(open_path("R1"))
    assert pixel.status == 200 and pixel.headers["content-type"] == "image/gif"
    for method, path in (
        ("POST", open_path("R1")),
        ("DELETE", click_path("R1", 0, OFFER)),
        ("GET", open_path("R1") + "/extra"),
        ("GET", "/o/"),
        ("GET", "/x/" + open_path("R1")[3:]),
        ("POST", "/t/health"),
    ):
        reply = hit(path, method=method)
        assert reply.status == 404 and b"Link not found" in reply.body, (method, path)
    assert fresh("R1").first_open_at is not None  # the GET pixel counted; nothing else did
    assert [int(n) for n in fresh("R1").link_clicks] == [0]
