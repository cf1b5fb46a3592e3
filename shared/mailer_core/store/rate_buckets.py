"""Per-mailbox send rate and daily cap, shared by every concurrent worker through DynamoDB.

The bucket is a GCRA token bucket (the "virtual scheduling" form of a token bucket): one
item per mailbox holds the theoretical arrival time `tat` of the next send. Taking a token
is one conditional UpdateItem, never a read followed by a write:

- bucket idle (`tat <= now`): set `tat = now + T` where T = 1 / rate;
- with a burst B > 1, a bucket running ahead by at most (B - 1) * T also grants:
  `tat = tat + T`.

The daily cap lives in the same item as a counter attribute named for the UTC day (`d_20261124`),
incremented by the same UpdateItem and guarded by the same condition, and yesterday's counter
is removed on the way. When the condition fails, DynamoDB hands back the old item, which
says how long to wait: until `tat` for the rate, until midnight UTC for the daily cap.

A bucket can be held (`hold`): its `tat` moves forward to a time given by someone else (Kommo
answered 429 and asked to wait), so every taker is refused until then, with the reason
`held`, at no extra cost (the same UpdateItem refuses).

A manager's email goes before the bulk lane's (`announce_priority`): composing one counts it
in the bucket (`prio`, with `prio_until` a little later), and while one is pending the bulk
lane's takers are refused (reason `priority`) by the same conditional UpdateItem; the priority
email's own take counts it off. A pending email that never takes its token (canceled, failed)
holds the bulk lane back until `prio_until` at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import ClientError

from mailer_core.adapters import aws
from mailer_core.base.config import get_settings

Reason = Literal["rate", "daily_cap", "held", "priority"]

# How long a manager's email composed on a mailbox keeps the bulk lane's takers away at most:
# enough for its job to reach a send worker and be prepared (it is counted off at its take).
PRIORITY_WINDOW_SECONDS = 30.0


def mailbox_key(account_id: int, mailbox_id: str) -> str:
    """The rate bucket of a mailbox (shared by both lanes, every worker and compose)."""
    return f"mailbox#{account_id}#{mailbox_id}"


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: float = 0.0
    reason: Reason | None = None
    # With `count` > 1: how many tokens were granted, usable `interval` seconds apart from now.
    granted: int = 1
    interval: float = 0.0


def _day_attr(day: datetime) -> str:
    return f"d_{day:%Y%m%d}"


def take(
    bucket_key: str,
    *,
    rate_per_second: float,
    daily_cap: int,
    now: float,
    burst: int = 1,
    count: int = 1,
    lane: str = "priority",
) -> RateDecision:
    """Try to take one send token from the bucket at time `now` (epoch seconds).

    A `bulk` take is refused (reason `priority`) while a manager's email announced on the
    mailbox is pending; a `priority` take that finds one counts it off (`announce_priority`).

    With `count` > 1 an idle bucket grants that many tokens in the same single request, to be
    used one `interval` apart (the caller paces them): a batch of emails costs one request.
    A busy bucket, or a daily cap too close for all of them, grants one token as usual.
    """
    interval = 1.0 / rate_per_second
    tolerance = max(0, burst - 1) * interval
    today = datetime.fromtimestamp(now, tz=UTC)
    day, yesterday = _day_attr(today), _day_attr(today - timedelta(days=1))
    midnight = (today + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    table = get_settings().rate_limits_table
    client = aws.client("dynamodb")
    names = {
        "#tat": "tat",
        "#day": day,
        "#old": yesterday,
        "#exp": "expires_at",
        "#prio": "prio",
        "#prio_until": "prio_until",
    }
    common = {
        ":one": {"N": "1"},
        ":cap": {"N": str(int(daily_cap))},
        ":exp": {"N": str(int(midnight + 86400 * 2))},
        ":zero": {"N": "0"},
        ":at_now": {"N": repr(now)},
    }
    # a bulk take while a manager's email is pending on the mailbox: refused, it goes first
    prio_ok = _PRIORITY_FIRST if lane == "bulk" else ""
    cap_ok = "(attribute_not_exists(#day) OR #day < :cap)" + prio_ok
    granted_new: list[dict[str, Any]] = []

    def attempt(update: str, condition: str, values: dict[str, Any]) -> dict[str, Any] | None:
        """Run one conditional update; None when granted, else the old item."""
        try:
            answer = client.update_item(
                TableName=table,
                Key={"bucket_key": {"S": bucket_key}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={k: v for k, v in names.items() if k in update or k in condition},
                ExpressionAttributeValues={
                    k: v for k, v in {**common, **values}.items() if k in update or k in condition
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ReturnValues="ALL_NEW" if lane != "bulk" else "NONE",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            old_item: Any = exc.response.get("Item") or {}
            return dict(old_item)
        granted_new.append(answer.get("Attributes") or {})
        return None

    def granted(decision: RateDecision) -> RateDecision:
        _count_off_priority(client, table, bucket_key, granted_new[-1] if granted_new else {})
        return decision

    count = min(count, int(daily_cap))  # a fresh day's counter must fit the cap too
    if count > 1:
        reserved = attempt(
            "SET #tat = :next, #exp = :exp ADD #day :count REMOVE #old",
            "(attribute_not_exists(#tat) OR #tat <= :now) AND (attribute_not_exists(#day) OR #day <= :room)"
            + prio_ok,
            {
                ":now": {"N": repr(now)},
                ":next": {"N": repr(now + count * interval)},
                ":count": {"N": str(count)},
                ":room": {"N": str(int(daily_cap) - count)},
            },
        )
        if reserved is None:
            return granted(RateDecision(True, granted=count, interval=interval))
    old = attempt(
        "SET #tat = :next, #exp = :exp ADD #day :one REMOVE #old",
        f"(attribute_not_exists(#tat) OR #tat <= :now) AND {cap_ok}",
        {":now": {"N": repr(now)}, ":next": {"N": repr(now + interval)}},
    )
    if old is None:
        return granted(RateDecision(True))
    used_today = int(old.get(day, {}).get("N", "0"))
    if used_today >= daily_cap:
        return RateDecision(False, retry_after=max(1.0, midnight - now), reason="daily_cap")
    tat = float(old.get("tat", {}).get("N", repr(now)))
    if tolerance > 0 and tat <= now + tolerance:
        old = attempt(
            "SET #tat = #tat + :interval, #exp = :exp ADD #day :one REMOVE #old",
            f"#tat > :now AND #tat <= :limit AND {cap_ok}",
            {
                ":now": {"N": repr(now)},
                ":limit": {"N": repr(now + tolerance)},
                ":interval": {"N": repr(interval)},
            },
        )
        if old is None:
            return granted(RateDecision(True))
        tat = float(old.get("tat", {}).get("N", repr(now)))
    return _refused(old, now=now, tat=tat, tolerance=tolerance, interval=interval, lane=lane)


def _refused(
    old: dict[str, Any], *, now: float, tat: float, tolerance: float, interval: float, lane: str
) -> RateDecision:
    """Why a take was refused (the bucket's old item says), and how long to wait."""
    held = float(old.get("held_until", {}).get("N", "0"))
    if lane == "bulk" and held <= now and _priority_pending(old, now):
        # the manager's email takes the next turn; this one tries again one interval later
        return RateDecision(False, retry_after=max(interval, tat - now), reason="priority")
    reason: Reason = "held" if held > now else "rate"
    return RateDecision(False, retry_after=max(0.001, tat - tolerance - now), reason=reason)


def _priority_pending(item: dict[str, Any], now: float) -> bool:
    return (
        int(item.get("prio", {}).get("N", "0")) > 0 and float(item.get("prio_until", {}).get("N", "0")) > now
    )


_PRIORITY_FIRST = " AND (attribute_not_exists(#prio) OR #prio <= :zero OR #prio_until <= :at_now)"


def _count_off_priority(client: Any, table: str, bucket_key: str, new_item: dict[str, Any]) -> None:
    """A token taken off a bucket whose new item (the priority lane's take returns it) counts
    a pending manager's email: one fewer (never below zero)."""
    if int(new_item.get("prio", {}).get("N", "0")) <= 0:
        return
    try:
        client.update_item(
            TableName=table,
            Key={"bucket_key": {"S": bucket_key}},
            UpdateExpression="ADD #prio :minus",
            ConditionExpression="#prio > :zero",
            ExpressionAttributeNames={"#prio": "prio"},
            ExpressionAttributeValues={":minus": {"N": "-1"}, ":zero": {"N": "0"}},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise


def announce_priority(bucket_key: str, *, now: float, window: float = PRIORITY_WINDOW_SECONDS) -> None:
    """A manager's email was queued for the mailbox now: the bulk lane's takers stand back
    until its take counts it off, or `window` seconds at most. One UpdateItem."""
    aws.client("dynamodb").update_item(
        TableName=get_settings().rate_limits_table,
        Key={"bucket_key": {"S": bucket_key}},
        UpdateExpression="SET #until = :until, #exp = if_not_exists(#exp, :exp) ADD #prio :one",
        ExpressionAttributeNames={"#until": "prio_until", "#prio": "prio", "#exp": "expires_at"},
        ExpressionAttributeValues={
            ":until": {"N": repr(now + window)},
            ":one": {"N": "1"},
            ":exp": {"N": str(int(now + 86400 * 2))},
        },
    )


def hold(bucket_key: str, *, until: float, now: float) -> bool:
    """Grant no token of the bucket before `until` (epoch seconds); False when it was already
    held as long. One conditional UpdateItem that only ever moves the bucket's `tat` forward."""
    expires = max(now + 86400 * 2, until + 86400)
    try:
        aws.client("dynamodb").update_item(
            TableName=get_settings().rate_limits_table,
            Key={"bucket_key": {"S": bucket_key}},
            UpdateExpression="SET #tat = :until, held_until = :until, #exp = :exp",
            ConditionExpression="attribute_not_exists(#tat) OR #tat < :until",
            ExpressionAttributeNames={"#tat": "tat", "#exp": "expires_at"},
            ExpressionAttributeValues={":until": {"N": repr(until)}, ":exp": {"N": str(int(expires))}},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        return False
    return True


@dataclass(frozen=True)
class NextTurn:
    """When a bucket grants its next token, as far as one read can tell, and why not sooner."""

    at: float  # epoch seconds; at or before now: a token is there
    reason: Reason = "rate"


def peek(bucket_key: str, *, daily_cap: int, now: float) -> NextTurn:
    """The bucket's next turn, read (eventually consistent, half a read unit) without taking
    anything: a sender that learns its turn is far off need not prepare the email at all."""
    item = (
        aws.client("dynamodb")
        .get_item(
            TableName=get_settings().rate_limits_table,
            Key={"bucket_key": {"S": bucket_key}},
            ProjectionExpression="#tat, held_until, #day",
            ExpressionAttributeNames={"#tat": "tat", "#day": _day_attr(datetime.fromtimestamp(now, tz=UTC))},
        )
        .get("Item")
        or {}
    )
    today = datetime.fromtimestamp(now, tz=UTC)
    if int(item.get(_day_attr(today), {}).get("N", "0")) >= daily_cap:
        midnight = (today + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return NextTurn(midnight.timestamp(), "daily_cap")
    held = float(item.get("held_until", {}).get("N", "0"))
    tat = float(item.get("tat", {}).get("N", "0"))
    return NextTurn(tat, "held" if held > now else "rate")


def used_today(bucket_keys: list[str], *, now: float) -> dict[str, int]:
    """How many tokens each bucket granted today (UTC), as its daily cap counts them: one
    BatchGetItem per 100 buckets (eventually consistent; a bucket never used: 0)."""
    day = _day_attr(datetime.fromtimestamp(now, tz=UTC))
    table = get_settings().rate_limits_table
    client = aws.client("dynamodb")
    used = dict.fromkeys(bucket_keys, 0)
    unique = list(used)
    for start in range(0, len(unique), 100):
        request: dict[str, Any] = {
            table: {
                "Keys": [{"bucket_key": {"S": key}} for key in unique[start : start + 100]],
                "ProjectionExpression": "bucket_key, #day",
                "ExpressionAttributeNames": {"#day": day},
            }
        }
        for _ in range(5):  # unprocessed keys (throttling) asked again; what is left counts 0
            answer = client.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(table, []):
                used[item["bucket_key"]["S"]] = int(item.get(day, {}).get("N", "0"))
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
    return used


def give_back(bucket_key: str, *, at: float, rate_per_second: float) -> None:
    """Return a token granted for the moment `at` that was not used (it came back too late to
    be used then): today's count goes down by one, and the bucket's turn moves back to `at`
    unless someone took a later token meanwhile. Two small writes at most, only on this rare
    path; a failure costs one slot of the day, never a second email in a slot."""
    client = aws.client("dynamodb")
    table = get_settings().rate_limits_table
    day = _day_attr(datetime.fromtimestamp(at, tz=UTC))
    mine = at + 1.0 / rate_per_second
    try:
        client.update_item(
            TableName=table,
            Key={"bucket_key": {"S": bucket_key}},
            UpdateExpression="SET #tat = :at ADD #day :minus",
            ConditionExpression="#tat = :mine AND #day > :zero",
            ExpressionAttributeNames={"#tat": "tat", "#day": day},
            ExpressionAttributeValues={
                ":at": {"N": repr(at)},
                ":mine": {"N": repr(mine)},
                ":minus": {"N": "-1"},
                ":zero": {"N": "0"},
            },
        )
        return
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
    try:  # a later token was taken: only the day's count comes back
        client.update_item(
            TableName=table,
            Key={"bucket_key": {"S": bucket_key}},
            UpdateExpression="ADD #day :minus",
            ConditionExpression="#day > :zero",
            ExpressionAttributeNames={"#day": day},
            ExpressionAttributeValues={":minus": {"N": "-1"}, ":zero": {"N": "0"}},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise


def move_later(bucket_key: str, *, at: float, to: float, rate_per_second: float) -> bool:
    """Move a token granted for the moment `at` (and not used) to the later moment `to`, when
    nobody took a token after it meanwhile: one conditional UpdateItem, the day's count
    unchanged. False when someone did (then `give_back` it and take another)."""
    interval = 1.0 / rate_per_second
    try:
        aws.client("dynamodb").update_item(
            TableName=get_settings().rate_limits_table,
            Key={"bucket_key": {"S": bucket_key}},
            UpdateExpression="SET #tat = :new",
            ConditionExpression="#tat = :mine",
            ExpressionAttributeNames={"#tat": "tat"},
            ExpressionAttributeValues={
                ":new": {"N": repr(to + interval)},
                ":mine": {"N": repr(at + interval)},
            },
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        return False
    return True
