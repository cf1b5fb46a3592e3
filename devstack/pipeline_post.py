"""Play Kommo's digital pipeline against a running stack: the hook body exactly as Kommo posts it.

`dp_form_body` builds the `application/x-www-form-urlencoded` body Kommo's Mailer action sends
(bracket keys, every value a string, `+` for spaces and %XX for the rest, UTF-8), and
`post_stage_change` posts it to `{base_url}/hooks/kommo/dp`, as Kommo does when a lead reaches
the action's stage:

    status, body = post_stage_change(
        stack.api_url, account_id=31000001, subdomain="mailerdemo", secret=secret,
        lead_id=24000001, pipeline_id=7300001, status_id=7300102, template_id=template["id"],
    )
    # (202, {"status": "accepted", "message_id": "01J…"})
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

TYPE_CODES = {1: "lead_added", 14: "lead_status_changed", 15: "lead_appeared_in_status"}
LEAD = 2


def dp_form_body(
    *,
    account_id: int,
    subdomain: str,
    secret: str,
    lead_id: int,
    pipeline_id: int,
    status_id: int,
    template_id: str,
    event_type: int = 14,
    direction: str = "went_to_trigger",
    event_time: int | None = None,
    settings: Mapping[str, Any] | None = None,
) -> str:
    """The form Kommo posts; `settings` adds or overrides action settings (mailbox_id, to, delay …)."""
    widget = {"template_id": template_id, "secret": secret, **dict(settings or {})}
    fields: list[tuple[str, str]] = [
        ("event[type]", str(event_type)),
        ("event[type_code]", TYPE_CODES.get(event_type, "")),
        ("event[data][id]", str(lead_id)),
        ("event[data][element_type]", str(LEAD)),
        ("event[data][status_id]", str(status_id)),
        ("event[data][pipeline_id]", str(pipeline_id)),
        ("event[data][direction_of_movement]", direction),
        ("event[time]", str(int(time.time()) if event_time is None else event_time)),
        *((f"action[settings][widget][settings][{k}]", str(v)) for k, v in widget.items()),
        ("subdomain", subdomain),
        ("account_id", str(account_id)),
    ]
    return urlencode(fields, encoding="utf-8")


def post_form(url: str, body: str, *, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    """POST a form body; the status and the JSON answer (errors included)."""
    request = urllib.request.Request(
        url,
        data=body.encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "amoCRM-Webhooks/3.0"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1: never a proxy
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        with error:
            raw = error.read()
        try:
            return error.code, json.loads(raw or b"{}")
        except ValueError:
            return error.code, {"raw": raw.decode("utf-8", "replace")}


def post_stage_change(
    base_url: str,
    *,
    account_id: int,
    subdomain: str,
    secret: str,
    lead_id: int,
    pipeline_id: int,
    status_id: int,
    template_id: str,
    event_type: int = 14,
    direction: str = "went_to_trigger",
    event_time: int | None = None,
    settings: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, Any]]:
    """Post a lead's arrival at the action's stage to `{base_url}/hooks/kommo/dp`, as Kommo does."""
    body = dp_form_body(
        account_id=account_id,
        subdomain=subdomain,
        secret=secret,
        lead_id=lead_id,
        pipeline_id=pipeline_id,
        status_id=status_id,
        template_id=template_id,
        event_type=event_type,
        direction=direction,
        event_time=event_time,
        settings=settings,
    )
    return post_form(f"{base_url.rstrip('/')}/hooks/kommo/dp", body, timeout=timeout)
