"""The stand-in's limits per IP address, as Kommo documents them (kommo-api.md §3.2 and its
dated "Answers as Kommo gives them").

- Kommo counts requests per IP address: the 8th request within one second, whatever its token,
  answers 429 with a problem+json body that carries `retry_after` (the documentation's example
  says 300 seconds; `wait` here, 300 by default). No `Retry-After` header: none is documented.
- The address must then wait that long. Kommo warns that 429s repeated turn into a ban of the
  IP: a request that arrives before the wait is over answers 429 again (with what is left of
  the wait), and the `ban_after`-th such request bans the address.
- A banned address gets nginx's plain "403 Forbidden" HTML page, not problem+json, to
  everything (the API and the token endpoint), for `ban_seconds`.

Kommo documents neither how many repeats it tolerates nor how long a ban lasts: `ban_after`
(3) and `ban_seconds` (900) are the stand-in's choices, settable by tests.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from devstack.kommo_standin.shapes import Problem, Response

BAN_PAGE = (
    "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n"
    "<center><h1>403 Forbidden</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
DEFAULT_WAIT = 300
DEFAULT_BAN_AFTER = 3
DEFAULT_BAN_SECONDS = 900.0


def ban_page() -> Response:
    """What a banned address gets: nginx's page, text/html."""
    return Response(403, BAN_PAGE, {"Content-Type": "text/html"})


@dataclass
class _Address:
    window: deque[float] = field(default_factory=deque)
    wait_until: float = 0.0
    repeats: int = 0
    banned_until: float = 0.0


class AddressLimits:
    """The rate window, the wait after a 429 and the ban of each address (the stand-in locks)."""

    def __init__(
        self,
        rate_limit: int,
        *,
        wait: int = DEFAULT_WAIT,
        ban_after: int = DEFAULT_BAN_AFTER,
        ban_seconds: float = DEFAULT_BAN_SECONDS,
    ) -> None:
        self.rate_limit = rate_limit
        self.wait = wait
        self.ban_after = ban_after
        self.ban_seconds = ban_seconds
        self._addresses: dict[str, _Address] = {}

    def banned(self, address: str, now: float) -> bool:
        return now < self._at(address).banned_until

    def ban(self, address: str, now: float, seconds: float | None = None) -> None:
        state = self._at(address)
        state.banned_until = now + (self.ban_seconds if seconds is None else seconds)
        state.wait_until, state.repeats = 0.0, 0

    def take(self, address: str, now: float) -> Response | None:
        """None when the request may go on; else the answer Kommo gives it (429, or the ban)."""
        state = self._at(address)
        if now < state.banned_until:
            return ban_page()
        if now < state.wait_until:
            state.repeats += 1
            if state.repeats >= self.ban_after:
                self.ban(address, now)
                return ban_page()
            return self._too_many(math.ceil(state.wait_until - now))
        while state.window and state.window[0] <= now - 1.0:
            state.window.popleft()
        if len(state.window) >= self.rate_limit:
            state.wait_until, state.repeats = now + self.wait, 0
            return self._too_many(self.wait)
        state.window.append(now)
        return None

    def _at(self, address: str) -> _Address:
        return self._addresses.setdefault(address, _Address())

    def _too_many(self, retry_after: int) -> Response:
        problem = Problem(
            429,
            "Too Many Requests",
            f"more than {self.rate_limit} requests per second from this address",
            retry_after=retry_after,
        )
        return Response(problem.status, problem.body)
