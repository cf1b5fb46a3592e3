"""Real HTTP servers on 127.0.0.1 for the link-download (SSRF guard) tests.

    with link_server({"/offer.pdf": Route(body=b"%PDF…")}) as server:
        fetcher.fetch(server.url("/offer.pdf"), max_bytes=…)
        assert server.requests == ["/offer.pdf"]

A `Route` answers with a status, headers and a body, or redirects (`location`), or streams
without end (`endless`), or sends one byte every `trickle` seconds, or never answers
(`hang`). Every request is logged with its Host header. TLS with a trustme certificate
(`tls=`) serves https for any host name the certificate names.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mailer_core.adapters.web_fetch import tcp_connect


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    location: str | None = None  # answer 302 with this Location
    endless: bool = False  # chunked body that never ends
    trickle: float | None = None  # headers, then one byte every `trickle` seconds
    hang: bool = False  # read the request, never answer
    declared_length: int | None = None  # a Content-Length header (may lie)


@dataclass
class LinkServer:
    routes: dict[str, Route]
    host: str = "127.0.0.1"
    port: int = 0
    scheme: str = "http"
    requests: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)  # the Host header of each request
    stop: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"


def _handler(server: LinkServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            return

        def do_GET(self) -> None:
            server.requests.append(self.path)
            server.hosts.append(self.headers.get("Host", ""))
            route = server.routes.get(self.path.split("?", 1)[0])
            if route is None:
                self._answer(404, b"no such file")
                return
            if route.hang:
                server.stop.wait(30)
                return
            if route.location is not None:
                self.send_response(302)
                self.send_header("Location", route.location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if route.endless or route.trickle is not None:
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"x" * 65536 if route.endless else b"x"
                with suppress(OSError):
                    while not server.stop.is_set():
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                        if route.trickle is not None:
                            server.stop.wait(route.trickle)
                return
            self._answer(route.status, route.body, route.headers, route.declared_length)

        def _answer(
            self, status: int, body: bytes, headers: dict[str, str] | None = None, length: int | None = None
        ) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            with suppress(OSError):
                self.wfile.write(body)

    return Handler


@contextmanager
def link_server(routes: dict[str, Route], *, tls: ssl.SSLContext | None = None) -> Iterator[LinkServer]:
    server = LinkServer(routes=routes, scheme="https" if tls else "http")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    server.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


PUBLIC = "93.184.216.34"  # a public address that nothing here ever really connects to


class Network:
    """DNS answers and where connections to public addresses really go (local servers)."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {}
        self.routes: dict[tuple[str, int], int] = {}
        self.resolved: list[str] = []
        self.connected: list[tuple[str, int]] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.resolved.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.names[host]

    def connect(self, address: str, port: int, timeout: float) -> socket.socket:
        self.connected.append((address, port))
        local_port = self.routes.get((address, port))
        if local_port is None:  # only ever a loopback server here (the test socket guard)
            return tcp_connect(address, port, timeout)
        return tcp_connect("127.0.0.1", local_port, timeout)

    def publish(self, name: str, server: LinkServer, *, address: str = PUBLIC, port: int = 80) -> str:
        """`name` resolves to `address`; connections to it reach `server`. Returns the base URL."""
        self.names[name] = [address]
        self.routes[(address, port)] = server.port
        return f"{server.scheme}://{name}" + ("" if port in (80, 443) else f":{port}")
