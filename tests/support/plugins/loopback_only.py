"""Tests talk to servers on this machine only: a connection anywhere else is refused."""

from __future__ import annotations

import socket

_real_connect = socket.socket.connect


def _loopback_only(sock: socket.socket, address: object) -> None:
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and not (str(host).startswith("127.") or host in ("::1", "localhost")):
        raise ConnectionRefusedError(f"tests may not connect to {host}: only 127.0.0.1 is allowed")
    _real_connect(sock, address)  # type: ignore[arg-type]


socket.socket.connect = _loopback_only  # type: ignore[method-assign]
