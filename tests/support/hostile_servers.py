"""Mail servers that misbehave on purpose, on 127.0.0.1.

`dripping_server` sends its greeting one byte at a time, `interval` seconds apart: no single
read ever times out, so only a limit on the whole session ends it (IMAP's or SMTP's greeting).
`boasting_server` (IMAP) greets, logs anyone in and answers every FETCH with a literal it
announces as `announced` bytes long (and never sends): a client that trusts the announcement
allocates or waits for all of it. `slow_data_server` (SMTP) takes a whole message and then
drips its answer to the final dot.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable


class _Server:
    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._serve = serve
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> _Server:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self._serve(conn)


def dripping_server(interval: float = 0.2, greeting: bytes = b"* OK IMAP4rev1 ready") -> _Server:
    def serve(conn: socket.socket) -> None:
        for byte in greeting + b", very slowly, one byte at a time" * 100 + b"\r\n":
            conn.sendall(bytes([byte]))
            time.sleep(interval)

    return _Server(serve)


def boasting_server(announced: int) -> _Server:
    def serve(conn: socket.socket) -> None:
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
        reader = conn.makefile("rb")
        while line := reader.readline():
            tag, _, rest = line.decode("ascii", "replace").strip().partition(" ")
            command = rest.split(" ", 1)[0].upper()
            if command == "CAPABILITY":
                conn.sendall(f"* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n".encode())
            elif command in ("SELECT", "EXAMINE"):
                state = "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 2] ok\r\n"
                conn.sendall(f"{state}{tag} OK done\r\n".encode())
            elif command == "LOGIN":
                conn.sendall(f"{tag} OK logged in\r\n".encode())
            elif command == "UID":
                conn.sendall(f"* 1 FETCH (UID 1 BODY[] {{{announced}}}\r\n".encode() + b"x" * 100)
            elif command == "LOGOUT":
                conn.sendall(f"* BYE\r\n{tag} OK bye\r\n".encode())
                return
            else:
                conn.sendall(f"{tag} OK done\r\n".encode())

    return _Server(serve)


def slow_data_server(interval: float = 0.2) -> _Server:
    """SMTP without AUTH: every command answered at once, the answer to the final dot dripped."""

    def serve(conn: socket.socket) -> None:
        conn.sendall(b"220 slow.example ESMTP\r\n")
        reader = conn.makefile("rb")
        while line := reader.readline():
            command = line.strip().upper()
            if command.startswith(b"EHLO"):
                conn.sendall(b"250-slow.example\r\n250 8BITMIME\r\n")
            elif command == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                while (body := reader.readline()) and body != b".\r\n":
                    pass
                for byte in b"250 queued, very slowly" * 50 + b"\r\n":
                    conn.sendall(bytes([byte]))
                    time.sleep(interval)
            elif command == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")

    return _Server(serve)
