"""An account's share of a shared worker pool: at most `share` of its jobs in flight at once.

One item per queue and account in the RateLimits table (`share#{queue}#{account}`) holds a map
`leases` from a job's holder (its SQS message id, the same on every delivery of that message)
to the epoch second its lease ends. Taking a lease is one conditional UpdateItem, never a read
followed by a write:

- `SET leases.#me = :until` when the holder is already in the map (a redelivered job renews its
  own lease: it never counts twice) or the map has fewer than `share` entries;
- the first lease of an item creates the map (`attribute_not_exists(leases)`).

A worker that dies leaves its lease in the map until `until`; the next taker refused because
the map is full removes the expired entries (one conditional UpdateItem naming them, each
still expired) and tries again, so a crashed worker's slot comes back after its lease, with no
sweeper. A worker passes its lease to its next job of the same account (`hand_over`, one
conditional UpdateItem), so a batch's run of one account's jobs keeps its slot from the first
to the last. Letting a lease go removes the holder's entry. The item expires (TTL) a day after its
last lease, so an account that stops sending leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from mailer_core.adapters import aws
from mailer_core.base.config import get_settings

PREFIX = "share#"
ITEM_LIFETIME_SECONDS = 86400  # the item outlives its last lease by a day (TTL)
_TRIES = 4  # a taker races others at most this often before it says "refused"
# The holder's lease is there (a redelivery), or the map has room for one more.
_ROOM = "attribute_exists(leases) AND (attribute_exists(leases.#me) OR size(leases) < :share)"


@dataclass(frozen=True)
class ShareDecision:
    """Whether the holder got a lease; when refused, the earliest end of the others' leases."""

    granted: bool
    in_flight: int = 0
    next_free: float = 0.0


def share_key(queue: str, account: str) -> str:
    return f"{PREFIX}{queue}#{account}"


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _leases(item: dict[str, Any]) -> dict[str, float]:
    raw = item.get("leases", {}).get("M", {})
    return {holder: float(value.get("N", "0")) for holder, value in raw.items()}


def acquire(
    queue: str, account: str, holder: str, *, share: int, now: float, lease_seconds: float
) -> ShareDecision:
    """Take (or renew) `holder`'s lease of the account's share of `queue` until now + lease_seconds."""
    client = aws.client("dynamodb")
    table = get_settings().rate_limits_table
    key = {"bucket_key": {"S": share_key(queue, account)}}
    until = {"N": repr(now + lease_seconds)}
    expires = {"N": str(int(now + lease_seconds + ITEM_LIFETIME_SECONDS))}
    old: dict[str, Any] = {}
    for _ in range(_TRIES):
        try:
            client.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET leases.#me = :until, expires_at = :exp",
                ConditionExpression=_ROOM,
                ExpressionAttributeNames={"#me": holder},
                ExpressionAttributeValues={":until": until, ":exp": expires, ":share": {"N": str(share)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return ShareDecision(True)
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            found: Any = exc.response.get("Item") or {}
            old = dict(found)
        if "leases" not in old:  # the account's first lease on this queue: create the map
            try:
                client.update_item(
                    TableName=table,
                    Key=key,
                    UpdateExpression="SET leases = :mine, expires_at = :exp",
                    ConditionExpression="attribute_not_exists(leases)",
                    ExpressionAttributeValues={":mine": {"M": {holder: until}}, ":exp": expires},
                )
                return ShareDecision(True)
            except ClientError as exc:
                if not _condition_failed(exc):
                    raise
                continue  # someone else created it meanwhile: take a lease as usual
        leases = _leases(old)
        expired = sorted(h for h, end in leases.items() if end <= now)
        if not expired:
            return ShareDecision(False, in_flight=len(leases), next_free=min(leases.values(), default=now))
        _sweep(client, table, key, expired, now)
    leases = _leases(old)
    return ShareDecision(False, in_flight=len(leases), next_free=min(leases.values(), default=now))


def _sweep(client: Any, table: str, key: dict[str, Any], expired: list[str], now: float) -> None:
    """Remove leases that ended (workers that died); each still expired, or nothing is removed."""
    names = {f"#h{n}": holder for n, holder in enumerate(expired[:50])}
    try:
        client.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="REMOVE " + ", ".join(f"leases.{name}" for name in names),
            ConditionExpression=" AND ".join(f"leases.{name} <= :now" for name in names),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":now": {"N": repr(now)}},
        )
    except ClientError as exc:
        if not _condition_failed(exc):
            raise


def hand_over(queue: str, account: str, old: str, new: str, *, now: float, lease_seconds: float) -> bool:
    """Pass `old`'s lease to `new` (the same worker's next job of the account) in one conditional
    UpdateItem; False when `old` holds none any more (then `acquire` as usual)."""
    if old == new:
        return False
    try:
        aws.client("dynamodb").update_item(
            TableName=get_settings().rate_limits_table,
            Key={"bucket_key": {"S": share_key(queue, account)}},
            UpdateExpression="REMOVE leases.#old SET leases.#new = :until, expires_at = :exp",
            ConditionExpression="attribute_exists(leases.#old)",
            ExpressionAttributeNames={"#old": old, "#new": new},
            ExpressionAttributeValues={
                ":until": {"N": repr(now + lease_seconds)},
                ":exp": {"N": str(int(now + lease_seconds + ITEM_LIFETIME_SECONDS))},
            },
        )
    except ClientError as exc:
        if not _condition_failed(exc):
            raise
        return False
    return True


def release(queue: str, account: str, holder: str) -> None:
    """Let `holder`'s lease go (nothing happens when it has none)."""
    try:
        aws.client("dynamodb").update_item(
            TableName=get_settings().rate_limits_table,
            Key={"bucket_key": {"S": share_key(queue, account)}},
            UpdateExpression="REMOVE leases.#me",
            ConditionExpression="attribute_exists(leases.#me)",
            ExpressionAttributeNames={"#me": holder},
        )
    except ClientError as exc:
        if not _condition_failed(exc):
            raise


def in_flight(queue: str, account: str) -> dict[str, float]:
    """The account's leases on `queue` now (holder → end), read strongly: for tests and operators."""
    item = (
        aws.client("dynamodb")
        .get_item(
            TableName=get_settings().rate_limits_table,
            Key={"bucket_key": {"S": share_key(queue, account)}},
            ConsistentRead=True,
        )
        .get("Item")
        or {}
    )
    return _leases(item)
