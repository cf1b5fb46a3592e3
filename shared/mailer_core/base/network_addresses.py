"""Which network addresses Mailer connects to for a user: public ones only (the SSRF rules).

Users name the hosts Mailer connects to (links to attach, their mailboxes' SMTP and IMAP
servers), so a host must not lead to what only Mailer can reach: the cloud's metadata service
at 169.254.169.254, services inside a VPC, the function itself. `AddressPolicy.refusal` says
why an address is refused: loopback, private (RFC 1918), link-local, carrier-grade NAT,
multicast, reserved, unspecified, IPv6 ULA, link-local, site-local and loopback, and IPv4
addresses inside IPv6 (mapped, 6to4, Teredo, NAT64). A policy's `allow` list makes exceptions:
only the local stack and the tests use one (`LOOPBACK_ALLOWED`, their servers on 127.0.0.1).

`checked_address` resolves a host, checks every address it resolves to (an attacker may mix a
public answer with a private one) and gives the one to connect to, so the connection goes to
the address that was checked and a second DNS answer cannot swap it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a host may lead to: public ones, plus `allow` (the tests allow loopback)."""

    allow: tuple[IPNetwork, ...] = ()

    # Many branches on purpose: one branch per refused address range.
    def refusal(self, address: IPAddress) -> str | None:  # noqa: C901
        """Why `address` may not be reached, or None when it may."""
        if any(address in network for network in self.allow if network.version == address.version):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                reason = self.refusal(embedded)
                return f"{reason} (inside an IPv6 address)" if reason else None
        if address.is_unspecified:
            return "an unspecified address"
        if address.is_loopback:
            return "a loopback address"
        if address.is_link_local:
            return "a link-local address (such as the cloud metadata service)"
        if address in _CGNAT:
            return "a carrier-grade NAT address"
        if address.is_multicast:
            return "a multicast address"
        if address.is_reserved:
            return "a reserved address"
        if address.is_private:
            return "a private address"
        if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
            return "a site-local address"
        if not address.is_global:
            return "an address that is not public"
        return None


DEFAULT_POLICY = AddressPolicy()
LOOPBACK_ALLOWED = AddressPolicy(allow=LOOPBACK)


class AddressRefused(OSError):
    """A host leads to an address the policy refuses; nothing was connected."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system's resolver gives for `host`, in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def addresses_of(host: str, port: int, resolve: Resolver | None = None) -> list[IPAddress]:
    """The addresses `host` stands for: itself when it is an IP address, else what DNS says
    (socket.gaierror when it cannot say)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    found: list[IPAddress] = []
    for text in (resolve or system_resolve)(host, port):
        try:
            found.append(ipaddress.ip_address(text.split("%", 1)[0]))
        except ValueError:
            continue
    return found


def checked_address(host: str, port: int, policy: AddressPolicy, resolve: Resolver | None = None) -> str:
    """The address to connect to for `host`, every address it resolves to allowed by `policy`.

    Raises AddressRefused naming the refused address, or the resolver's OSError."""
    addresses = addresses_of(host, port, resolve)
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} has no address")
    for address in addresses:
        reason = policy.refusal(address)
        if reason:
            raise AddressRefused(f"{host} leads to {reason} ({address}), which Mailer does not connect to")
    return str(addresses[0])


def host_refusal(host: str, policy: AddressPolicy, resolve: Resolver | None = None) -> str | None:
    """Why Mailer would not connect to `host`, or None: also None when DNS does not know it
    now (connecting says so later, and checks the addresses again)."""
    try:
        checked_address(host, 0, policy, resolve)
    except AddressRefused as refused:
        return str(refused)
    except (OSError, UnicodeError):
        return None
    return None
