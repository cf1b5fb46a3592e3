"""A time limit on a whole network operation, whatever the server does.

A socket timeout bounds each read; a server that sends one byte every 20 s never trips a 30 s
timeout. `Watchdog` starts a timer when made and shuts the socket it watches when the time is
up, so the blocked read returns at once; `expired` then says why the operation failed. The
SMTP and IMAP adapters each watch their connection with one.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Watchdog:
    """Shuts the watched socket `seconds` after it was made (None: never)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.expired = False
        self._socket: socket.socket | None = None
        self._timer: threading.Timer | None = None
        if seconds is not None:
            self._timer = threading.Timer(max(0.0, seconds), self._expire)
            self._timer.daemon = True
            self._timer.start()

    @property
    def words(self) -> str:
        return f"the server did not finish within {self.seconds:g} s; the connection was cut"

    def watch(self, sock: socket.socket | None) -> None:
        self._socket = sock
        if self.expired:
            self._expire()

    def _expire(self) -> None:
        self.expired = True
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
