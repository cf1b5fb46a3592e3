"""Kommo's API v4: the only module that talks to Kommo (API calls and the OAuth token endpoint).

One HTTP layer (`KommoTransport`) serves both the API client and the token endpoint, so the
rules below hold for every byte sent to Kommo: JSON bodies, no redirects followed (the token
never leaves the account's host), https only (plain http only to this machine), no proxy on
this machine, bounded answers.

`KommoClient.request` is the one way to the API. Around every attempt it asks its `gate`
(for an installed account: `kommo_limits.AccountGate`) for the account's shared rate token
(7 requests per second per account, shared by every Lambda) and refuses an account Kommo has
blocked; it takes the bearer token from its `TokenProvider` (for an installed account:
`kommo_tokens.AccountTokens`, which refreshes before expiry). Then:

- 2xx: the decoded JSON (None for 204 No Content, which Kommo uses for "nothing found");
- 429: Kommo's wait (`retry_after` in the body, or a `Retry-After` header; exponential backoff
  without either) pauses the gate's budgets until then, for every caller. A wait within
  `max_retry_wait` is slept and the call repeated (for every method: Kommo did nothing); a
  longer one raises `KommoRateLimited` at once: repeated 429s make Kommo ban the IP;
- 401: the token provider is asked once for a newer token (a refresh), then the call is retried;
- 403 without a problem+json body (nginx's "403 Forbidden" page, or words about a blocked IP):
  Kommo banned our IP; the gate blocks the account for a cool-off and the client raises
  `KommoAccessDenied` without retrying. A 403 with a problem+json body refuses this one call
  for lack of rights (`KommoInsufficientRights`, e.g. `/api/v4/users` with a manager's token):
  nothing else changes;
- 5xx and network errors: retried with backoff only for idempotent calls: GET, PATCH (it sets
  values; `tags_to_add`/`tags_to_delete` are set operations), POST .../link (linking twice is
  one link) and the token endpoint. POST of tasks, notes and leads is never retried after a
  5xx or a lost answer, because Kommo may have created them;
- 504 on a batch (reads by ids, batch PATCH): the batch is halved and each half tried again
  (`_in_halving_batches`); a batch create (POST) is not split, for the reason above.

Errors carry Kommo's own words: `KommoError` (`kommo_status`, `title`, `detail`,
`validation_errors`), `KommoAccessDenied` (401, the ban: stop calling), `KommoInsufficientRights`
(403 for this call), `KommoNotFound`, `KommoBusy` (the shared rate limit would make the caller
wait too long: try again later), `KommoRateLimited` (a 429's long wait), `KommoInvalidGrant`
(the token endpoint refused the code or refresh token), `KommoMisconfigured` (it refused our
client id, secret or redirect URI).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar
from urllib.parse import urlencode, urlsplit

from mailer_core.base import backoff
from mailer_core.base.clock import SYSTEM_CLOCK, Clock
from mailer_core.base.config import get_settings
from mailer_core.base.errors import Conflict, InvalidInput
from mailer_core.base.logs import logger
from mailer_core.kommo import hosts
from mailer_core.kommo.errors import (
    KommoAccessDenied,
    KommoError,
    KommoInsufficientRights,
    KommoInvalidGrant,
    KommoMisconfigured,
    KommoNotFound,
    KommoRateLimited,
)

if TYPE_CHECKING:
    pass

EntityType = Literal["leads", "contacts", "companies"]
ENTITY_TYPES: tuple[EntityType, ...] = ("leads", "contacts", "companies")

MAX_PAGE_SIZE = 250  # Kommo's largest `limit`, and the most ids one filter may carry
MAX_WRITE_BATCH = 250  # the most entities one add/update request may carry
CUSTOM_FIELDS_PAGE = 50  # custom field definitions come at most 50 per page
MAX_COMPLEX_LEADS = 50  # POST /api/v4/leads/complex takes at most 50 leads
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
TOKEN_PATH = "/oauth2/access_token"
_USER_AGENT = "Mailer/0.1 (+kommo widget backend)"
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Contact:
    """A Kommo contact reduced to what an email needs; `is_main` as the lead links it."""

    id: int
    name: str
    emails: tuple[str, ...]
    is_main: bool


class TokenProvider(Protocol):
    """Where a client gets its bearer token."""

    def current(self) -> str:
        """A token to send now (refreshed first if it is about to expire)."""
        ...

    def renew(self, rejected: str) -> str | None:
        """Kommo answered 401 to `rejected`: a newer token, or None when there is none."""
        ...


class RequestGate(Protocol):
    """What a client does around each request to an installed account."""

    def before_request(self) -> None:
        """Refuse a blocked account (KommoAccessDenied) and take the account's rate token."""
        ...

    def after_success(self) -> None:
        """Kommo answered a request with 2xx."""
        ...

    def access_denied(self, error: KommoAccessDenied) -> None:
        """Kommo banned our IP (403): block the account for a while."""
        ...

    def pause(self, seconds: float, error: KommoError) -> None:
        """Kommo answered 429 asking for `seconds`: no request through this gate until then."""
        ...


@dataclass(frozen=True)
class StaticToken:
    """A token that never changes (tests, long-lived tokens of private integrations)."""

    token: str = field(repr=False)

    def current(self) -> str:
        return self.token

    def renew(self, rejected: str) -> str | None:
        return None


@dataclass(frozen=True)
class TokenGrant:
    """What the token endpoint answered. The tokens are secrets: never logged, never in repr."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    server_time: int | None = None

    def expires_at(self, now: float) -> int:
        """When the access token expires, by our clock (`now`: when the answer came; a bit late is safe)."""
        return int(now + self.expires_in)


# -- the HTTP layer ----------------------------------------------------------------------------


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


def account_base_url(subdomain: str, domain: str = "kommo.com", base_url: str | None = None) -> str:
    """`https://{subdomain}.{domain}` (or the configured template, e.g. the local stand-in)."""
    if not hosts.is_subdomain(subdomain or ""):
        raise InvalidInput("this is not a Kommo subdomain", field="subdomain")
    if not hosts.is_account_domain(domain):
        raise InvalidInput(f"Kommo accounts live on {', '.join(hosts.ACCOUNT_DOMAINS)}", field="domain")
    template = base_url if base_url is not None else get_settings().kommo_base_url
    url = template.replace("{subdomain}", subdomain.lower()).replace("{domain}", domain).rstrip("/")
    parts = urlsplit(url)
    loopback = _is_loopback(parts.hostname or "")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise InvalidInput("the Kommo base URL must be https (http only on this machine)", field="base_url")
    return url


class KommoTransport:
    """One HTTP exchange with one Kommo account host; knows nothing about tokens or retries."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url
        self.timeout = timeout
        loopback = _is_loopback(urlsplit(base_url).hostname or "")
        # On this machine (the local stack) skip any proxy from the environment.
        proxies = urllib.request.ProxyHandler({} if loopback else None)
        self._opener = urllib.request.build_opener(proxies, _NoRedirect)

    def send(
        self, method: str, path_and_query: str, data: bytes | None, *, bearer: str | None = None
    ) -> tuple[int, Message, bytes]:
        req = urllib.request.Request(self.base_url + path_and_query, data=data, method=method)
        if bearer is not None:
            req.add_unredirected_header("Authorization", f"Bearer {bearer}")
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


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError)


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


def _retry_after(problem: Mapping[str, Any], headers: Message) -> float | None:
    found = _seconds(problem.get("retry_after"))
    return found if found is not None else _seconds(headers.get("Retry-After"))


_BAN_WORDS = re.compile(r"\bip\b|\bblock|\bbann?ed\b", re.IGNORECASE)


def is_ip_ban(problem: Mapping[str, Any]) -> bool:
    """Whether a 403 is Kommo's ban of our IP rather than a refusal for lack of rights.

    The ban is nginx's plain "403 Forbidden" page (HTML, or nothing), not a problem+json body;
    a problem body refuses one call for lack of rights, unless its words speak of a blocked IP.
    """
    words = " ".join(str(problem.get(k) or "") for k in ("title", "detail", "hint"))
    return not problem or bool(_BAN_WORDS.search(words))


def _message(method: str, path: str, status: int, problem: Mapping[str, Any]) -> str:
    words = ": ".join(str(problem.get(k)) for k in ("title", "detail", "hint") if problem.get(k))
    return f"Kommo answered {status} to {method} {path} ({words or 'no details'})"


def _error(
    method: str, path: str, status: int, problem: Mapping[str, Any], retry_after: float | None
) -> KommoError:
    kind: type[KommoError] = KommoError
    if status == 401 or (status == 403 and is_ip_ban(problem)):
        kind = KommoAccessDenied
    elif status == 403:
        kind = KommoInsufficientRights
    return kind(
        _message(method, path, status, problem),
        kommo_status=status,
        title=str(problem.get("title") or "") or None,
        detail=str(problem.get("detail") or "") or None,
        validation_errors=problem.get("validation-errors"),
        retry_after=retry_after,
        hint=str(problem.get("hint") or "") or None,
    )


def _rate_limited(error: KommoError, wait: float) -> KommoRateLimited:
    return KommoRateLimited(
        f"{error.message}; Kommo asked to wait {wait:.0f} s: its budget is paused until then",
        kommo_status=429,
        title=error.title,
        detail=error.detail,
        retry_after=wait,
    )


_CLIENT_TITLE = re.compile(r"некорректный клиент|invalid.client", re.IGNORECASE)
_CLIENT_HINT = re.compile(r"client|redirect", re.IGNORECASE)
_DEAD_GRANT = re.compile(r"revoked|expired|cannot decrypt|invalid_grant", re.IGNORECASE)


def _token_refusal(status: int, problem: Mapping[str, Any], error: KommoError) -> KommoError:
    """What a 400 or 401 of the token endpoint means (see `request_token`)."""
    title = str(problem.get("title") or "")
    hint = " ".join(str(problem.get(k) or "") for k in ("error", "hint"))
    ours = _CLIENT_TITLE.search(title) or _CLIENT_HINT.search(hint)
    kind = KommoInvalidGrant if not ours and _DEAD_GRANT.search(hint) else KommoMisconfigured
    refusal = kind(
        error.message, kommo_status=status, title=error.title, detail=error.detail, hint=error.hint
    )
    if kind is KommoInvalidGrant:
        return refusal
    logger.error(
        "Kommo refused our integration at the token endpoint: check KOMMO_CLIENT_ID, "
        "KOMMO_CLIENT_SECRET and KOMMO_REDIRECT_URI; no account is disconnected",
        extra={"kommo_status": status, "kommo_title": error.title, "kommo_hint": error.hint},
    )
    return refusal


def _token_grant(status: int, problem: Mapping[str, Any]) -> TokenGrant:
    try:
        return TokenGrant(
            access_token=str(problem["access_token"]),
            refresh_token=str(problem["refresh_token"]),
            expires_in=int(problem["expires_in"]),
            server_time=int(problem["server_time"]) if problem.get("server_time") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise KommoError(f"Kommo answered POST {TOKEN_PATH} without tokens", kommo_status=status) from exc


def request_token(  # noqa: C901 - the documented answer of each status, in one loop of attempts
    subdomain: str,
    payload: Mapping[str, str],
    *,
    domain: str = "kommo.com",
    base_url: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
    gate: RequestGate | None = None,
    deadline: float | None = None,
    max_retries: int = 3,
    timeout: float = 10.0,
) -> TokenGrant:
    """POST the account's `/oauth2/access_token` (an authorization code or a refresh token).

    Retried on 5xx and network errors while `deadline` (epoch seconds, by `clock`) leaves
    time for another attempt: a request Kommo did not process changes nothing, and one it did
    process cannot be recovered by anything else (its new refresh token is lost either way).
    A 429 pauses the gate's budgets for Kommo's wait, and is retried only when that wait is
    short (at most 8 s; else `KommoRateLimited`).

    A 400 or 401 raises `KommoInvalidGrant` only when Kommo's hint says the code or refresh
    token is dead (revoked, expired, cannot be decrypted: `{"hint": "Token has been revoked",
    "title": "Некорректный запрос", "status": 401, …}`); that disconnects an account. Anything
    else, above all the answer to a wrong client id or secret (`401`, `"title": "Некорректный
    клиент"`, no hint), or a hint naming the client or the redirect URI, is our configuration:
    `KommoMisconfigured`, logged as an error, retryable, and no account is disconnected.
    """
    transport = KommoTransport(account_base_url(subdomain, domain, base_url), timeout=timeout)
    data = json.dumps(dict(payload)).encode("utf-8")
    attempt = 0

    def may_retry(wait: float) -> bool:
        return attempt < max_retries and (deadline is None or clock.timestamp() + wait + timeout < deadline)

    while True:
        if gate is not None:
            gate.before_request()
        try:
            status, headers, raw = transport.send("POST", TOKEN_PATH, data)
        except _NETWORK_ERRORS as exc:
            wait = backoff.exponential(attempt, base=0.5, cap=8.0)
            if may_retry(wait):
                clock.sleep(wait)
                attempt += 1
                continue
            raise KommoError(f"Kommo did not answer POST {TOKEN_PATH}: {exc}") from exc
        problem = _problem(raw)
        if 200 <= status < 300:
            return _token_grant(status, problem)
        retry_after = _retry_after(problem, headers)
        error = _error("POST", TOKEN_PATH, status, problem, retry_after)
        if status == 429 or status >= 500:
            wait = retry_after if retry_after is not None else backoff.exponential(attempt, base=0.5, cap=8.0)
            if status == 429 and gate is not None:
                gate.pause(wait, error)
            if status >= 500:
                wait = min(wait, 8.0)  # a 5xx's wait is only a hint; Kommo did nothing
            if wait <= 8.0 and may_retry(wait):
                clock.sleep(wait)
                attempt += 1
                continue
            if status == 429:
                raise _rate_limited(error, wait)
        if isinstance(error, KommoAccessDenied) and status == 403 and gate is not None:
            gate.access_denied(error)
        if status in (400, 401):
            raise _token_refusal(status, problem, error)
        raise error


# -- the API client ----------------------------------------------------------------------------


def emails_of(entity: Mapping[str, Any]) -> tuple[str, ...]:
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


@dataclass(frozen=True)
class NewTask:
    """A task for `add_tasks`: `complete_till` in epoch seconds; the token's user by default."""

    text: str
    complete_till: int
    entity_type: EntityType | None = None
    entity_id: int | None = None
    task_type_id: int = 1  # 1 = Follow-up, 2 = Meeting; custom types from the account
    responsible_user_id: int | None = None
    duration: int | None = None

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "text": self.text,
            "complete_till": int(self.complete_till),
            "task_type_id": self.task_type_id,
        }
        if self.entity_type is not None and self.entity_id is not None:
            body.update(entity_type=self.entity_type, entity_id=int(self.entity_id))
        if self.responsible_user_id is not None:
            body["responsible_user_id"] = int(self.responsible_user_id)
        if self.duration is not None:
            body["duration"] = int(self.duration)
        return body


@dataclass(frozen=True)
class NewNote:
    """A note for `add_notes`: `common` carries `{"text": …}`; service messages add `service`."""

    entity_id: int
    text: str
    note_type: str = "common"
    service: str | None = None

    def to_api(self) -> dict[str, Any]:
        params: dict[str, Any] = {"text": self.text}
        if self.service is not None:
            params["service"] = self.service
        return {"entity_id": int(self.entity_id), "note_type": self.note_type, "params": params}


class KommoClient:
    """A client for one Kommo account; it keeps no per-call state (its token provider caches the token)."""

    def __init__(
        self,
        subdomain: str,
        access_token: str | TokenProvider,
        *,
        domain: str = "kommo.com",
        base_url: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        gate: RequestGate | None = None,
        account_id: int | None = None,
        max_retries: int = 4,
        timeout: float = 10.0,
        backoff_base: float = 0.5,
        max_retry_wait: float = 8.0,
    ) -> None:
        if isinstance(access_token, str):
            if not access_token:
                raise Conflict("the account is not connected to Kommo", field=None)
            access_token = StaticToken(access_token)
        self.base_url = account_base_url(subdomain, domain, base_url)
        self.subdomain = subdomain
        self.account_id = account_id
        self.tokens: TokenProvider = access_token
        self.gate = gate
        self.clock = clock
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.max_retry_wait = max_retry_wait
        self._transport = KommoTransport(self.base_url, timeout=timeout)

    def __repr__(self) -> str:
        return f"KommoClient({self.base_url!r})"

    @property
    def timeout(self) -> float:
        return self._transport.timeout

    # -- HTTP ------------------------------------------------------------------------------

    def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> dict[str, Any] | None:
        """GET a path of the API; None when Kommo answers 204 No Content."""
        answer = self.request("GET", path, params)
        if answer is not None and not isinstance(answer, dict):
            raise KommoError(f"Kommo answered GET {path} with something other than an object")
        return answer

    def patch(self, path: str, body: Any) -> Any:
        """PATCH (idempotent: it sets values), retried on 5xx."""
        return self.request("PATCH", path, body=body)

    def post(self, path: str, body: Any, *, idempotent: bool = False) -> Any:
        """POST. A 5xx is not retried unless `idempotent`: Kommo may have created the entities."""
        return self.request("POST", path, body=body, retry_server_errors=idempotent)

    def request(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        body: Any = None,
        retry_server_errors: bool | None = None,
        split_on_504: bool = False,
    ) -> Any:
        """One call; the decoded JSON answer (an object, or a list for a few endpoints), None for 204.

        With `split_on_504` a 504 is raised at once (the caller halves its batch) instead of
        being retried with the same body.
        """
        if not path.startswith("/api/v4/") or ".." in path or "?" in path or "#" in path:
            raise ValueError(f"not an API v4 path: {path!r}")
        if retry_server_errors is None:
            retry_server_errors = method in ("GET", "PATCH")
        target = path + (f"?{urlencode(list(params))}" if params else "")
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        attempt = 0
        renewed = False
        while True:
            if self.gate is not None:
                self.gate.before_request()
            token = self.tokens.current()
            try:
                status, headers, raw = self._transport.send(method, target, data, bearer=token)
            except _NETWORK_ERRORS as exc:
                if retry_server_errors and attempt < self.max_retries:
                    self.clock.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                raise KommoError(f"Kommo did not answer {method} {path}: {exc}") from exc
            if 200 <= status < 300:
                return self._success(method, path, status, raw)
            if status == 401 and not renewed and self.tokens.renew(token) is not None:
                renewed = True
                continue
            retry_5xx = retry_server_errors and not (status == 504 and split_on_504)
            self.clock.sleep(self._wait_or_raise(method, path, (status, headers, raw), attempt, retry_5xx))
            attempt += 1

    def _success(self, method: str, path: str, status: int, raw: bytes) -> Any:
        if self.gate is not None:
            self.gate.after_success()
        if status == 204 or not raw.strip():
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise KommoError(f"Kommo answered {method} {path} with no JSON", kommo_status=status) from exc

    def _wait_or_raise(
        self, method: str, path: str, answer: tuple[int, Message, bytes], attempt: int, retry_5xx: bool
    ) -> float:
        """How long to wait before the call is tried again after an error answer, or the error."""
        status, headers, raw = answer
        problem = _problem(raw)
        if status == 404:
            raise KommoNotFound(_message(method, path, status, problem), kommo_status=status)
        retry_after = _retry_after(problem, headers)
        error = _error(method, path, status, problem, retry_after)
        if status == 429:
            wait = self._backoff(attempt) if retry_after is None else retry_after
            if self.gate is not None:
                self.gate.pause(wait, error)
            if wait <= self.max_retry_wait and attempt < self.max_retries:
                return wait
            raise _rate_limited(error, wait)
        if status == 403 and isinstance(error, KommoAccessDenied) and self.gate is not None:
            self.gate.access_denied(error)
        if status >= 500 and retry_5xx and attempt < self.max_retries:
            return self._backoff(attempt) if retry_after is None else min(retry_after, self.max_retry_wait)
        raise error

    def _backoff(self, attempt: int) -> float:
        return backoff.exponential(attempt, base=self.backoff_base, cap=self.max_retry_wait)

    # -- pages and batches -----------------------------------------------------------------

    def iter_pages(
        self,
        path: str,
        key: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        limit: int = MAX_PAGE_SIZE,
        split_on_504: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, page after page while Kommo links a next page.

        Pages are asked for by number on the same host rather than by following the
        `_links.next` URL, so an answer cannot send the token anywhere else.
        """
        base = [(k, v) for k, v in params if k not in ("page", "limit")]
        page = 1
        while True:
            query = [*base, ("page", str(page)), ("limit", str(limit))]
            answer = self.request("GET", path, query, split_on_504=split_on_504)
            if answer is None:
                return
            if not isinstance(answer, dict):
                raise KommoError(f"Kommo answered GET {path} with something other than an object")
            yield from answer.get("_embedded", {}).get(key, [])
            if "next" not in answer.get("_links", {}):
                return
            page += 1

    @staticmethod
    def _in_halving_batches(items: Sequence[_T], size: int, call: Callable[[list[_T]], _R]) -> list[_R]:
        """`call` over chunks of at most `size`; a chunk Kommo answers 504 to is halved and tried again."""
        pending = deque(list(items[i : i + size]) for i in range(0, len(items), size))
        results: list[_R] = []
        while pending:
            chunk = pending.popleft()
            try:
                results.append(call(chunk))
            except KommoError as exc:
                if exc.kommo_status != 504 or len(chunk) < 2:
                    raise
                middle = len(chunk) // 2
                pending.extendleft([chunk[middle:], chunk[:middle]])
        return results

    # -- reads -----------------------------------------------------------------------------

    def account(self, with_: Sequence[str] = ()) -> dict[str, Any]:
        """`GET /api/v4/account`: `id` (the account id), `subdomain`, and `with` extras (task_types …)."""
        params = [("with", ",".join(with_))] if with_ else []
        answer = self.get("/api/v4/account", params)
        if answer is None:
            raise KommoError("Kommo answered GET /api/v4/account with nothing")
        return answer

    def users(self) -> list[dict[str, Any]]:
        """Every user of the account (`GET /api/v4/users`, 250 per page; administrators' tokens only)."""
        return list(self.iter_pages("/api/v4/users", "users"))

    def custom_fields(self, entity_type: EntityType) -> list[dict[str, Any]]:
        """Every custom field definition of leads, contacts or companies (50 per page, every page)."""
        _check_entity_type(entity_type)
        path = f"/api/v4/{entity_type}/custom_fields"
        return list(self.iter_pages(path, "custom_fields", limit=CUSTOM_FIELDS_PAGE))

    def get_entity(
        self, entity_type: EntityType, entity_id: int, with_: Sequence[str] = ()
    ) -> dict[str, Any]:
        """One lead, contact or company; KommoNotFound when Kommo has none by that id."""
        _check_entity_type(entity_type)
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

    def get_lead(self, lead_id: int) -> dict[str, Any]:
        """A lead with `_embedded.contacts[{id, is_main}]`, `_embedded.companies[{id}]` and its tags."""
        return self.get_entity("leads", lead_id, with_=("contacts",))

    def entities_by_ids(self, entity_type: EntityType, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Leads, contacts or companies by id, 250 per request (`filter[id][]`); missing ids are left out.

        A 504 halves the batch (250 → 125 → …) and tries again.
        """
        _check_entity_type(entity_type)
        unique = list(dict.fromkeys(int(i) for i in ids))
        found: dict[int, dict[str, Any]] = {}

        def read(chunk: list[int]) -> None:
            params = [("filter[id][]", str(i)) for i in chunk]
            pages = self.iter_pages(
                f"/api/v4/{entity_type}",
                entity_type,
                params,
                limit=MAX_PAGE_SIZE,
                split_on_504=len(chunk) > 1,
            )
            for entity in pages:
                found[int(entity["id"])] = entity

        self._in_halving_batches(unique, MAX_PAGE_SIZE, read)
        return found

    def contacts_by_ids(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Contacts by id in batches of 250 (`filter[id][]`); missing ids are left out."""
        return self.entities_by_ids("contacts", ids)

    def companies_by_ids(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Companies by id in batches of 250 (`filter[id][]`); missing ids are left out."""
        return self.entities_by_ids("companies", ids)

    def entity_contacts(self, entity_type: EntityType, entity_id: int) -> list[Contact]:
        """The contacts to email for a lead, a contact or a company; main contact first.

        A lead costs two requests whatever its number of contacts (up to 250): the lead with
        its links, then one batch of contacts. A company's contacts carry no "main" flag in
        Kommo, so none of them is main.
        """
        if entity_type == "contacts":
            contact = self.get_entity("contacts", entity_id)
            return [contact_of(contact, is_main=True)]
        if entity_type not in ("leads", "companies"):
            raise ValueError(f"not an entity type: {entity_type!r}")
        entity = self.get_entity(entity_type, entity_id, with_=("contacts",))
        links = entity.get("_embedded", {}).get("contacts") or []
        if not links:
            return []
        main = {int(link["id"]): bool(link.get("is_main")) for link in links}
        contacts = self.contacts_by_ids(list(main))
        ordered = sorted(main, key=lambda cid: not main[cid])  # stable: Kommo's order otherwise
        return [contact_of(contacts[cid], is_main=main[cid]) for cid in ordered if cid in contacts]

    # -- writes ----------------------------------------------------------------------------

    def update_entity(
        self, entity_type: EntityType, entity_id: int, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """`PATCH /api/v4/{entity}/{id}` with one object (fields, custom fields, tags, stage)."""
        _check_entity_type(entity_type)
        answer = self.patch(f"/api/v4/{entity_type}/{int(entity_id)}", dict(body))
        return answer if isinstance(answer, dict) else {}

    def update_entities(self, entity_type: EntityType, items: Sequence[Mapping[str, Any]]) -> list[int]:
        """`PATCH /api/v4/{entity}` with objects that carry their `id`, 250 per request.

        Idempotent, so a 504 halves the batch and tries again. Returns the updated ids.
        """
        _check_entity_type(entity_type)
        for n, item in enumerate(items):
            if not isinstance(item.get("id"), int):
                raise InvalidInput("every item needs its integer id", field=f"items.{n}.id")

        def write(chunk: list[Mapping[str, Any]]) -> list[int]:
            answer = self.request(
                "PATCH", f"/api/v4/{entity_type}", body=[dict(i) for i in chunk], split_on_504=len(chunk) > 1
            )
            return [int(e["id"]) for e in _embedded(answer, entity_type)]

        return [i for ids in self._in_halving_batches(list(items), MAX_WRITE_BATCH, write) for i in ids]

    def move_lead(self, lead_id: int, *, status_id: int, pipeline_id: int | None = None) -> None:
        """Move a lead to a stage (`PATCH /api/v4/leads/{id}`); name the pipeline when it changes.

        Closed won (142) and closed lost (143) exist in every pipeline, so they need `pipeline_id`.
        """
        body: dict[str, Any] = {"status_id": int(status_id)}
        if pipeline_id is not None:
            body["pipeline_id"] = int(pipeline_id)
        self.update_entity("leads", lead_id, body)

    def set_custom_fields(
        self, entity_type: EntityType, entity_id: int, values: Sequence[Mapping[str, Any]]
    ) -> None:
        """Write `custom_fields_values` elements (see `kommo_fields.field_value`) to one entity."""
        self.update_entity(entity_type, entity_id, {"custom_fields_values": [dict(v) for v in values]})

    def change_tags(
        self,
        entity_type: EntityType,
        entity_id: int,
        *,
        add: Sequence[str | int] = (),
        delete: Sequence[str | int] = (),
    ) -> None:
        """Add and remove tags without touching the others (`tags_to_add` / `tags_to_delete`).

        A tag is named by its name (a new name creates the tag) or by its id.
        """
        body: dict[str, Any] = {}
        if add:
            body["tags_to_add"] = [_tag_ref(t) for t in add]
        if delete:
            body["tags_to_delete"] = [_tag_ref(t) for t in delete]
        if body:
            self.update_entity(entity_type, entity_id, body)

    def add_tasks(self, tasks: Sequence[NewTask]) -> list[int]:
        """`POST /api/v4/tasks` (an array, 250 per request); the new tasks' ids. Not retried on 5xx."""
        ids: list[int] = []
        for start in range(0, len(tasks), MAX_WRITE_BATCH):
            chunk = [t.to_api() for t in tasks[start : start + MAX_WRITE_BATCH]]
            ids += [int(t["id"]) for t in _embedded(self.post("/api/v4/tasks", chunk), "tasks")]
        return ids

    def add_notes(self, entity_type: EntityType, notes: Sequence[NewNote]) -> list[int]:
        """`POST /api/v4/{entity}/notes` (an array, 250 per request); the new ids. Not retried on 5xx."""
        _check_entity_type(entity_type)
        ids: list[int] = []
        for start in range(0, len(notes), MAX_WRITE_BATCH):
            chunk = [n.to_api() for n in notes[start : start + MAX_WRITE_BATCH]]
            answer = self.post(f"/api/v4/{entity_type}/notes", chunk)
            ids += [int(n["id"]) for n in _embedded(answer, "notes")]
        return ids

    def create_leads_complex(self, leads: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """`POST /api/v4/leads/complex`: leads with one new or existing contact and company each.

        Each lead may embed `_embedded.contacts[0]` and `_embedded.companies[0]` (a new entity's
        fields, or `{"id": …}`), at most 40 custom field values per entity, 50 leads per request.
        Kommo answers `[{id, contact_id, company_id, request_id, merged}]` (merged: duplicate
        control joined an existing contact). Not retried on 5xx: Kommo may have created them.
        """
        if len(leads) > MAX_COMPLEX_LEADS:
            raise InvalidInput(f"at most {MAX_COMPLEX_LEADS} leads per request", field="leads")
        answer = self.post("/api/v4/leads/complex", [dict(lead) for lead in leads])
        if not isinstance(answer, list):
            raise KommoError("Kommo answered POST /api/v4/leads/complex with something other than a list")
        return answer

    def link_lead(self, lead_id: int, *, contact_id: int, is_main: bool = False) -> None:
        """Link a contact to a lead (`POST /api/v4/leads/{id}/link`); idempotent, so retried on 5xx."""
        body = [
            {
                "to_entity_id": int(contact_id),
                "to_entity_type": "contacts",
                "metadata": {"main_contact": bool(is_main)},
            }
        ]
        self.post(f"/api/v4/leads/{int(lead_id)}/link", body, idempotent=True)

    def continue_salesbot(
        self,
        return_url: str,
        data: Mapping[str, Any],
        execute_handlers: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Let a Salesbot go on after its `widget_request` step: `POST {return_url}`.

        The bot reads `data` as `{{json.<key>}}` in its next steps; Kommo answers 202. Only a
        `return_url` on this account's own host is called (`salesbot_continue_path`). A repeat
        is harmless (the continue id is single-use), so a 5xx is retried.
        """
        body: dict[str, Any] = {"data": dict(data)}
        if execute_handlers:
            body["execute_handlers"] = [dict(h) for h in execute_handlers]
        self.post(salesbot_continue_path(self.base_url, return_url), body, idempotent=True)


_SALESBOT_CONTINUE = re.compile(r"/api/v4/salesbot/[0-9]{1,19}/continue/[A-Za-z0-9_-]{1,128}")


def salesbot_continue_path(base_url: str, return_url: str) -> str:
    """The path of a Salesbot `return_url`, if it names the bot's continue method on `base_url`'s host.

    The account's bearer token goes to that URL, so any other scheme, host, port, path,
    query or user part is refused (`InvalidInput`, field `return_url`): a forged hook must not
    make Mailer send the token elsewhere (SSRF).
    """
    try:
        parts = urlsplit(return_url)
        base = urlsplit(base_url)
        port_matches = parts.port == base.port
    except (ValueError, TypeError):
        raise InvalidInput("is not a URL", field="return_url") from None
    same_host = (
        parts.scheme == base.scheme
        and (parts.hostname or "").lower() == (base.hostname or "").lower()
        and port_matches
        and parts.username is None
        and parts.password is None
    )
    if not same_host:
        raise InvalidInput("is not on the account's Kommo host", field="return_url")
    if parts.query or parts.fragment or not _SALESBOT_CONTINUE.fullmatch(parts.path):
        raise InvalidInput("is not a Salesbot continue URL", field="return_url")
    return parts.path


def _check_entity_type(entity_type: str) -> None:
    if entity_type not in ENTITY_TYPES:
        raise ValueError(f"not an entity type: {entity_type!r}")


def _tag_ref(tag: str | int) -> dict[str, Any]:
    if isinstance(tag, bool):
        raise InvalidInput("a tag is a name or an id", field="tags")
    if isinstance(tag, int):
        return {"id": tag}
    name = str(tag).strip()
    if not name:
        raise InvalidInput("a tag name must not be blank", field="tags")
    return {"name": name}


def _embedded(answer: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(answer, dict):
        return []
    items = answer.get("_embedded", {}).get(key) or []
    return [i for i in items if isinstance(i, dict)]


def contact_of(entity: Mapping[str, Any], *, is_main: bool) -> Contact:
    """A contact's JSON reduced to a `Contact` (its name, its EMAIL values)."""
    name = str(entity.get("name") or "").strip()
    if not name:
        name = " ".join(str(entity.get(k) or "").strip() for k in ("first_name", "last_name")).strip()
    return Contact(id=int(entity["id"]), name=name, emails=emails_of(entity), is_main=is_main)
