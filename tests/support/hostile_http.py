"""A small HTTP(S) server on 127.0.0.1 that serves what a hostile or broken host would: documents
of any shape, redirects, and answers that drip one byte at a time. It records every request it
gets, so a test can tell that a fetch never reached it. Every handler ends by itself (bounded loops)."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Behaviour = Callable[[BaseHTTPRequestHandler], None]
DRIP_LIMIT = 5.0  # seconds a drip goes on at most, whether or not anyone still reads
MARGIN = 0.5  # seconds a fetch may end after its deadline (thread switches on a busy machine)


def names(mapping: dict[str, str | list[str]], calls: list[str] | None = None) -> Callable[[str, int], list[str]]:
    """A resolver that knows only ``mapping`` (name → address or addresses), noting each lookup in ``calls``."""
    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        found = mapping.get(host)
        if found is None:
            raise OSError(f"{host}: unknown name")
        return [found] if isinstance(found, str) else list(found)
    return resolve


def loopback_is_public(deadline: float = 2.0, **changes: Any) -> Any:
    """The production policy's shape (tokenmint.outbound.FetchPolicy) with 127.0.0.1 standing in
    for a public address, reachable over http too, and ``keys.example`` resolving to it: hostile
    hosts are served locally, every other address stays refused."""
    from tokenmint import outbound

    return outbound.FetchPolicy(**{"deadline": deadline, "address_allowed": outbound.loopback_address,
                                   "http_allowed": outbound.loopback_address,
                                   "resolve": names({"keys.example": "127.0.0.1"}), **changes})


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def document(value: Any, status: int = 200, content_type: str = "application/json") -> Behaviour:
    """Answer ``value`` (bytes as they are, anything else as JSON)."""
    body = value if isinstance(value, bytes) else json.dumps(value).encode()

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return answer


def redirect(location: str, status: int = 302) -> Behaviour:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


def drip(interval: float) -> Behaviour:
    """A 200 that promises a large JSON body and sends it one byte every ``interval`` seconds."""
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        handler.wfile.flush()
        stop = time.monotonic() + DRIP_LIMIT
        try:
            handler.wfile.write(b"{")
            while time.monotonic() < stop:
                time.sleep(interval)
                handler.wfile.write(b" ")
                handler.wfile.flush()
        except OSError:
            pass  # the client hung up: what a deadline should make it do
        handler.close_connection = True
    return answer


@dataclass
class HostileServer:
    routes: dict[str, Behaviour] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)  # SNI of each TLS handshake
    port: int = 0
    scheme: str = "http"

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [request.path for request in self.seen]


@contextmanager
def hostile_server(routes: dict[str, Behaviour] | None = None,
                   tls: ssl.SSLContext | None = None) -> Iterator[HostileServer]:
    """Serve ``routes`` (path → behaviour; others 404) on 127.0.0.1 until the block ends."""
    state = HostileServer(dict(routes or {}), scheme="https" if tls else "http")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 65536)) if length else b""
            state.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            behaviour = state.routes.get(self.path.split("?")[0]) or document({"error": "not found"}, 404)
            behaviour(self)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.handle_error = lambda request, address: None  # a client that hangs up is expected here
    if tls is not None:
        tls.sni_callback = lambda sock, name, context: state.server_names.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
