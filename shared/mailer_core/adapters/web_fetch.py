"""Downloading files by link: the only module of Mailer that fetches URLs.

Attachments by link (a PDF generated into a lead field, say) are downloaded at send time.
A link is written by a user, so it must not reach what only Mailer can reach (SSRF): the
cloud's metadata service at 169.254.169.254, services inside a VPC, the function itself.

- Only http and https, without credentials in the URL.
- The host name is resolved first and EVERY address it resolves to is checked against the
  `AddressPolicy` of mailer_core.base.network_addresses (private RFC 1918, loopback,
  link-local, CGNAT, multicast, reserved, unspecified, IPv6 ULA/link-local/loopback, and IPv4
  addresses embedded in IPv6 are refused; the mailboxes' servers follow the same rules); the
  connection then goes to the checked address itself, so a second DNS answer (DNS
  rebinding) cannot swap it. TLS still verifies the certificate for the name.
- Redirects are followed by hand, at most `max_redirects`, each hop checked the same way.
- The body is read in pieces and the download stops as soon as it passes `max_bytes`; a
  larger Content-Length is refused before reading.
- The whole download (every hop) has one deadline; a watchdog closes the socket when it
  passes, so a server that trickles bytes cannot hold the worker.

Every failure is a `FetchError` whose `retryable` says whether a later attempt may work:
timeouts, connection failures, 5xx, 408 and 429 may; refused addresses, other 4xx, too
large files and bad links may not. Tests inject `resolve`, `connect` and an `AddressPolicy`
that allows loopback; the default policy allows public addresses only.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import BinaryIO
from urllib.parse import quote, unquote, urljoin, urlsplit

from mailer_core.base.network_addresses import (  # the policy's names, as the fetcher's callers know them
    DEFAULT_POLICY,
    AddressPolicy,
    IPAddress,
    IPNetwork,
    Resolver,
    system_resolve,
)

__all__ = ["DEFAULT_POLICY", "AddressPolicy", "IPAddress", "IPNetwork", "Resolver", "system_resolve"]

Connector = Callable[[str, int, float], socket.socket]

REDIRECTS = frozenset({301, 302, 303, 307, 308})
RETRYABLE_STATUSES = frozenset({408, 425, 429})
CHUNK = 64 * 1024
DEFAULT_TIMEOUT = 20.0
USER_AGENT = "Mailer-Attachment-Fetcher/1.0"


class FetchError(Exception):
    """A link could not be downloaded; `reason` says why in words a user understands."""

    def __init__(self, reason: str, *, url: str, retryable: bool, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.url = url
        self.retryable = retryable
        self.status = status

    def __str__(self) -> str:
        return self.reason


class FetchRefused(FetchError):
    """The link or an address it leads to is not allowed (never retried)."""

    def __init__(self, reason: str, *, url: str) -> None:
        super().__init__(reason, url=url, retryable=False)


class FetchTooLarge(FetchError):
    def __init__(self, reason: str, *, url: str) -> None:
        super().__init__(reason, url=url, retryable=False)


class FetchTimeout(FetchError):
    def __init__(self, reason: str, *, url: str) -> None:
        super().__init__(reason, url=url, retryable=True)


# ------------------------------------------------------------------ addresses


def tcp_connect(address: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((address, port), timeout=timeout)


# ------------------------------------------------------------------ links


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # IDNA (ASCII) form, or the IP literal without brackets
    port: int
    request_path: str  # path and query, percent-encoded


def parse_link(url: str) -> Target:
    """Check a link's form (no network); raises FetchRefused naming the problem."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise FetchRefused("the link is not a valid web address", url=url) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchRefused("only http and https links can be attached", url=url)
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("links with a user name or password cannot be attached", url=url)
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise FetchRefused("the link has no host", url=url)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise FetchRefused("the link contains control characters", url=url)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise FetchRefused("the link's host name is not valid", url=url) from None
    safe = "/%!$&'()*+,;=:@-._~"
    path = quote(parts.path or "/", safe=safe)
    query = quote(parts.query, safe=safe + "?")
    return Target(
        url=text,
        scheme=scheme,
        host=host,
        port=port or (443 if scheme == "https" else 80),
        request_path=path + (f"?{query}" if query else ""),
    )


def literal_refusal(url: str, policy: AddressPolicy = DEFAULT_POLICY) -> str | None:
    """Why a link can never be fetched, judged without DNS (its form, or an IP literal host)."""
    try:
        target = parse_link(url)
    except FetchRefused as refused:
        return refused.reason
    try:
        address = ipaddress.ip_address(target.host)
    except ValueError:
        return None
    reason = policy.refusal(address)
    return f"the link points to {reason}" if reason else None


# ------------------------------------------------------------------ results


@dataclass
class FetchedFile:
    """A downloaded file kept in a temporary file; `open` gives a fresh reader each time."""

    url: str  # the final URL, after redirects
    filename: str  # as the server or the URL named it (not yet made safe)
    content_type: str  # from the response, "" when the server gave none
    size: int
    path: str = field(repr=False)

    def open(self) -> BinaryIO:
        return open(self.path, "rb")  # the caller closes it

    def read_bytes(self) -> bytes:
        with self.open() as fh:
            return fh.read()

    def close(self) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> FetchedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def filename_from(content_disposition: str | None, url: str) -> str:
    """The name from Content-Disposition (RFC 2231/6266 `filename*` included), else from the URL path."""
    if content_disposition:
        holder = EmailMessage()
        try:
            holder["Content-Disposition"] = content_disposition
            name = holder.get_filename()
        except (ValueError, IndexError, TypeError):
            name = None
        if name:
            return str(name)
    last = urlsplit(url).path.rsplit("/", 1)[-1]
    return unquote(last, errors="replace")


# ------------------------------------------------------------------ the fetcher


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) to `host` whose socket goes to `address`, the address that was checked."""

    def __init__(
        self,
        target: Target,
        address: str,
        *,
        timeout: float,
        connect: Connector,
        tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address
        self._connect_to = connect
        self._tls = tls

    def connect(self) -> None:
        sock = self._connect_to(self._address, self.port, float(self.timeout or DEFAULT_TIMEOUT))
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock


@dataclass
class Fetcher:
    """Downloads links under the address policy; see the module's docstring."""

    policy: AddressPolicy = DEFAULT_POLICY
    resolve: Resolver = system_resolve
    connect: Connector = tcp_connect
    max_redirects: int = 5
    timeout: float = DEFAULT_TIMEOUT
    ca_file: str = ""  # an extra CA bundle to trust besides the system's (tests)
    user_agent: str = USER_AGENT

    def fetch(self, url: str, *, max_bytes: int, timeout: float | None = None) -> FetchedFile:
        """Download `url` (following checked redirects) into a temporary file.

        Raises FetchRefused, FetchTooLarge, FetchTimeout or FetchError.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        current = url
        for _ in range(self.max_redirects + 1):
            target = parse_link(current)
            address = self._checked_address(target)
            location = self._request(target, address, deadline, max_bytes)
            if isinstance(location, FetchedFile):
                return location
            current = location
        raise FetchError(f"the link redirects more than {self.max_redirects} times", url=url, retryable=False)

    def _checked_address(self, target: Target) -> str:
        try:
            addresses = [ipaddress.ip_address(target.host)]
        except ValueError:
            try:
                found = self.resolve(target.host, target.port)
            except socket.gaierror as error:
                temporary = error.errno == socket.EAI_AGAIN
                raise FetchError(
                    f"the link's host {target.host} cannot be resolved", url=target.url, retryable=temporary
                ) from None
            except OSError as error:
                raise FetchError(
                    f"the link's host {target.host} cannot be resolved: {error}",
                    url=target.url,
                    retryable=True,
                ) from None
            addresses = []
            for text in found:
                try:
                    addresses.append(ipaddress.ip_address(text.split("%", 1)[0]))
                except ValueError:
                    continue
        if not addresses:
            raise FetchError(f"the link's host {target.host} has no address", url=target.url, retryable=False)
        for address in addresses:  # every answer must be allowed: an attacker may mix them
            reason = self.policy.refusal(address)
            if reason:
                raise FetchRefused(
                    f"the link leads to {reason} ({address}), which is not allowed", url=target.url
                )
        return str(addresses[0])

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
        return context

    def _request(self, target: Target, address: str, deadline: float, max_bytes: int) -> FetchedFile | str:
        """The downloaded file, or the next URL when the server redirects."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchTimeout("the download took too long", url=target.url)
        tls = self._tls_context() if target.scheme == "https" else None
        conn = _PinnedConnection(target, address, timeout=remaining, connect=self.connect, tls=tls)
        try:
            with _watchdog(conn, remaining):
                conn.request(
                    "GET",
                    target.request_path,
                    headers={
                        "User-Agent": self.user_agent,
                        "Accept": "*/*",
                        "Accept-Encoding": "identity",
                        "Connection": "close",
                    },
                )
                response = conn.getresponse()
                if response.status in REDIRECTS:
                    location = response.getheader("Location")
                    if not location:
                        raise FetchError(
                            f"the server answered {response.status} without a Location",
                            url=target.url,
                            retryable=False,
                            status=response.status,
                        )
                    return urljoin(target.url, location.strip())
                if response.status != 200:
                    raise FetchError(
                        f"the server answered {response.status} {response.reason}".strip(),
                        url=target.url,
                        retryable=response.status >= 500 or response.status in RETRYABLE_STATUSES,
                        status=response.status,
                    )
                return self._read(response, target, deadline, max_bytes)
        except FetchError:
            raise
        except ssl.SSLCertVerificationError as error:
            raise FetchError(
                f"the server's certificate is not valid: {error.verify_message}",
                url=target.url,
                retryable=False,
            ) from None
        except (OSError, http.client.HTTPException) as error:
            if time.monotonic() >= deadline or isinstance(error, TimeoutError):
                raise FetchTimeout("the download took too long", url=target.url) from None
            raise FetchError(
                f"the download failed: {error or type(error).__name__}", url=target.url, retryable=True
            ) from None
        finally:
            conn.close()

    def _read(
        self, response: http.client.HTTPResponse, target: Target, deadline: float, max_bytes: int
    ) -> FetchedFile:
        declared = response.getheader("Content-Length")
        if declared and declared.strip().isdigit() and int(declared) > max_bytes:
            raise FetchTooLarge(
                f"the file is larger than the {max_bytes} bytes allowed ({int(declared)} bytes)",
                url=target.url,
            )
        handle, path = tempfile.mkstemp(prefix="mailer-link-")
        size = 0
        try:
            with os.fdopen(handle, "wb") as out:
                while chunk := response.read1(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchTooLarge(
                            f"the file is larger than the {max_bytes} bytes allowed", url=target.url
                        )
                    if time.monotonic() >= deadline:
                        raise FetchTimeout("the download took too long", url=target.url)
                    out.write(chunk)
            if time.monotonic() >= deadline:  # the watchdog cut a body that ends at the close
                raise FetchTimeout("the download took too long", url=target.url)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(path)
            raise
        return FetchedFile(
            url=target.url,
            filename=filename_from(response.getheader("Content-Disposition"), target.url),
            content_type=(response.getheader("Content-Type") or "").split(";", 1)[0].strip().lower(),
            size=size,
            path=path,
        )


@contextmanager
def _watchdog(conn: http.client.HTTPConnection, seconds: float) -> Iterator[None]:
    """Shut the connection's socket down when `seconds` pass: every blocked read then ends."""

    def expire() -> None:
        sock = conn.sock
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
