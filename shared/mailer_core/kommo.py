"""Kommo's API v4: the only module that talks to Kommo.

Every call goes through `KommoClient.request`, which sends the bearer token, speaks JSON,
retries what is safe to retry (429 always, 5xx and network errors for reads and PATCH) with
exponential backoff through the injected clock, and turns Kommo's problem+json answers into
`KommoError` (with Kommo's own words), `KommoAccessDenied` (401/403: stop calling) or
`KommoNotFound`. Redirects are never followed, so the token never leaves the account's host.

Later: OAuth token refresh and a rate limiter shared by every Lambda (7 requests per second
per account) slot in at `_send` and `client_for_account`.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from mailer_core import secrets
from mailer_core.clock import SYSTEM_CLOCK, Clock
from mailer_core.errors import Conflict, InvalidInput, NotFound, UpstreamError
from mailer_core.models import AccountModel
from mailer_core.settings import get_settings

EntityType = Literal["leads", "contacts", "companies"]

MAX_PAGE_SIZE = 250  # Kommo's largest `limit`
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_SUBDOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)
_USER_AGENT = "Mailer/0.1 (+kommo widget backend)"


@dataclass(frozen=True)
class Contact:
    """A Kommo contact reduced to what an email needs; `is_main` as the lead links it."""

    id: int
    name: str
    emails: tuple[str, ...]
    is_main: bool


class KommoError(UpstreamError):
    """Kommo answered with an error (or not at all). `kommo_status` is None for no answer."""

    def __init__(
        self,
        message: str,
        *,
        kommo_status: int | None = None,
        title: str | None = None,
        detail: str | None = None,
        validation_errors: list[Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        details: dict[str, Any] = {"kommo_status": kommo_status}
        if title:
            details["kommo_title"] = title
        if detail:
            details["kommo_detail"] = detail
        if validation_errors:
            details["kommo_validation_errors"] = validation_errors
        super().__init__(message, **details)
        self.kommo_status = kommo_status
        self.title = title
        self.detail = detail
        self.validation_errors = validation_errors or []
        self.retry_after = retry_after


class KommoAccessDenied(KommoError):
    """401 or 403: the token is bad, revoked, lacks rights, or the IP is blocked. Stop calling."""


class KommoNotFound(NotFound):
    """The entity does not exist in Kommo (Kommo answers 204 No Content, or 404)."""

    def __init__(self, message: str, *, kommo_status: int, **details: Any) -> None:
        super().__init__(message, kommo_status=kommo_status, **details)
        self.kommo_status = kommo_status


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it could carry the bearer token to another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _problem(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def emails_of(entity: dict[str, Any]) -> tuple[str, ...]:
    """The EMAIL multitext values of a contact or company, in order, without duplicates."""
    found: list[str] = []
    for fv in entity.get("custom_fields_values") or []:
        if fv.get("field_code") != "EMAIL":
            continue
        for value in fv.get("values") or []:
            email = str(value.get("value") or "").strip()
            if email and email.lower() not in {e.lower() for e in found}:
                found.append(email)
    return tuple(found)


class KommoClient:
    """A client for one Kommo account. It keeps no state between calls, so it may be shared."""

    def __init__(
        self,
        subdomain: str,
        access_token: str,
        *,
        base_url: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        max_retries: int = 4,
        timeout: float = 10.0,
        backoff_base: float = 0.5,
        max_retry_wait: float = 8.0,
    ) -> None:
        if not _SUBDOMAIN.fullmatch(subdomain or ""):
            raise InvalidInput("this is not a Kommo subdomain", field="subdomain")
        if not access_token:
            raise Conflict("the account is not connected to Kommo", field=None)
        template = base_url if base_url is not None else get_settings().kommo_base_url
        self.base_url = template.replace("{subdomain}", subdomain.lower()).rstrip("/")
        parts = urlsplit(self.base_url)
        loopback = _is_loopback(parts.hostname or "")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise InvalidInput(
                "the Kommo base URL must be https (http only on this machine)", field="base_url"
            )
        self.subdomain = subdomain
        self._token = access_token
        self.clock = clock
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.max_retry_wait = max_retry_wait
        # On this machine (the local stack) skip any proxy from the environment.
        proxies = urllib.request.ProxyHandler({} if loopback else None)
        self._opener = urllib.request.build_opener(proxies, _NoRedirect)

    def __repr__(self) -> str:
        return f"KommoClient({self.base_url!r})"

    # -- HTTP ------------------------------------------------------------------------------

    def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> dict[str, Any] | None:
        """GET a path of the API; None when Kommo answers 204 No Content."""
        answer = self.request("GET", path, params)
        if answer is not None and not isinstance(answer, dict):
            raise KommoError(f"Kommo answered GET {path} with something other than an object")
        return answer

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body=body)

    def post(self, path: str, body: Any) -> Any:
        """POST (tasks, notes, leads). A 5xx is not retried: Kommo may have created them."""
        return self.request("POST", path, body=body, retry_server_errors=False)

    def request(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        body: Any = None,
        retry_server_errors: bool | None = None,
    ) -> Any:
        """One call; the decoded JSON answer (an object, or a list for a few endpoints), None for 204."""
        if not path.startswith("/api/v4/") or ".." in path or "?" in path or "#" in path:
            raise ValueError(f"not an API v4 path: {path!r}")
        if retry_server_errors is None:
            retry_server_errors = method in ("GET", "PATCH")
        url = self.base_url + path + (f"?{urlencode(list(params))}" if params else "")
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        attempt = 0
        while True:
            try:
                status, headers, raw = self._send(method, url, data)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                if retry_server_errors and attempt < self.max_retries:
                    self.clock.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                raise KommoError(f"Kommo did not answer {method} {path}: {exc}") from exc
            if 200 <= status < 300:
                if status == 204 or not raw.strip():
                    return None
                try:
                    return json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise KommoError(
                        f"Kommo answered {method} {path} with no JSON", kommo_status=status
                    ) from exc
            problem = _problem(raw)
            retry_after = _seconds(problem.get("retry_after"))
            if retry_after is None:
                retry_after = _seconds(headers.get("Retry-After"))
            retryable = status == 429 or (status >= 500 and retry_server_errors)
            if retryable and attempt < self.max_retries:
                wait = (
                    self._backoff(attempt) if retry_after is None else min(retry_after, self.max_retry_wait)
                )
                self.clock.sleep(wait)
                attempt += 1
                continue
            raise self._error(method, path, status, problem, retry_after)

    def _send(self, method: str, url: str, data: bytes | None) -> tuple[int, Message, bytes]:
        req = urllib.request.Request(url, data=data, method=method)
        req.add_unredirected_header("Authorization", f"Bearer {self._token}")
        req.add_header("Accept", "application/hal+json, application/json, application/problem+json")
        req.add_header("User-Agent", _USER_AGENT)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return resp.status, resp.headers, resp.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.headers, err.read(MAX_RESPONSE_BYTES)

    def _backoff(self, attempt: int) -> float:
        return min(self.max_retry_wait, self.backoff_base * (2**attempt))

    @staticmethod
    def _error(
        method: str, path: str, status: int, problem: dict[str, Any], retry_after: float | None
    ) -> KommoError | KommoNotFound:
        title = str(problem.get("title") or "") or None
        detail = str(problem.get("detail") or "") or None
        words = ": ".join(w for w in (title, detail) if w) or "no details"
        message = f"Kommo answered {status} to {method} {path} ({words})"
        if status == 404:
            return KommoNotFound(message, kommo_status=status)
        kind = KommoAccessDenied if status in (401, 403) else KommoError
        return kind(
            message,
            kommo_status=status,
            title=title,
            detail=detail,
            validation_errors=problem.get("validation-errors"),
            retry_after=retry_after,
        )

    # -- pages and entities ----------------------------------------------------------------

    def iter_pages(
        self, path: str, key: str, params: Sequence[tuple[str, str]] = (), *, limit: int = MAX_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, page after page while Kommo links a next page.

        Pages are asked for by number on the same host rather than by following the
        `_links.next` URL, so an answer cannot send the token anywhere else.
        """
        base = [(k, v) for k, v in params if k not in ("page", "limit")]
        page = 1
        while True:
            answer = self.get(path, [*base, ("page", str(page)), ("limit", str(limit))])
            if answer is None:
                return
            yield from answer.get("_embedded", {}).get(key, [])
            if "next" not in answer.get("_links", {}):
                return
            page += 1

    def get_entity(
        self, entity_type: EntityType, entity_id: int, with_: Sequence[str] = ()
    ) -> dict[str, Any]:
        """One lead, contact or company; KommoNotFound when Kommo has none by that id."""
        params = [("with", ",".join(with_))] if with_ else []
        answer = self.get(f"/api/v4/{entity_type}/{int(entity_id)}", params)
        if answer is None:
            raise KommoNotFound(
                f"Kommo has no {entity_type} with id {entity_id}",
                kommo_status=204,
                entity_type=entity_type,
                entity_id=entity_id,
            )
        return answer

    def contacts_by_ids(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Contacts by id in batches of 250 (`filter[id][]`); missing ids are left out."""
        unique = list(dict.fromkeys(int(i) for i in ids))
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(unique), MAX_PAGE_SIZE):
            chunk = unique[start : start + MAX_PAGE_SIZE]
            params = [("filter[id][]", str(i)) for i in chunk]
            for contact in self.iter_pages("/api/v4/contacts", "contacts", params):
                found[int(contact["id"])] = contact
        return found

    def entity_contacts(self, entity_type: EntityType, entity_id: int) -> list[Contact]:
        """The contacts to email for a lead, a contact or a company; main contact first.

        A lead costs two requests whatever its number of contacts (up to 250): the lead with
        its links, then one batch of contacts. A company's contacts carry no "main" flag in
        Kommo, so none of them is main.
        """
        if entity_type == "contacts":
            contact = self.get_entity("contacts", entity_id)
            return [_contact(contact, is_main=True)]
        if entity_type not in ("leads", "companies"):
            raise ValueError(f"not an entity type: {entity_type!r}")
        entity = self.get_entity(entity_type, entity_id, with_=("contacts",))
        links = entity.get("_embedded", {}).get("contacts") or []
        if not links:
            return []
        main = {int(link["id"]): bool(link.get("is_main")) for link in links}
        contacts = self.contacts_by_ids(list(main))
        ordered = sorted(main, key=lambda cid: not main[cid])  # stable: Kommo's order otherwise
        return [_contact(contacts[cid], is_main=main[cid]) for cid in ordered if cid in contacts]


def _contact(entity: dict[str, Any], *, is_main: bool) -> Contact:
    name = str(entity.get("name") or "").strip()
    if not name:
        name = " ".join(str(entity.get(k) or "").strip() for k in ("first_name", "last_name")).strip()
    return Contact(id=int(entity["id"]), name=name, emails=emails_of(entity), is_main=is_main)


def client_for_account(account: AccountModel) -> KommoClient:
    """A client for an installed account, with its access token decrypted from KMS."""
    if not account.kommo_token_ciphertext:
        raise Conflict("the account is not connected to Kommo", field=None)
    token = secrets.decrypt(
        account.kommo_token_ciphertext,
        {"account_id": str(int(account.account_id)), "purpose": "kommo_access_token"},
    )
    return KommoClient(account.subdomain, token)
