"""The HTTP edge of the real ``tokenmint serve``, over sockets: slow and idle connections from one
source, or from many, deny nobody else service; a request head that is malformed or ambiguous gets
one JSON 4xx and never a traceback. Black-box, so it holds for whatever serves HTTP behind the CLI.

The server runs with short limits (its --idle-timeout, --request-timeout and connection caps), so
"until the deadline passes" is about a second. Attackers connect from other loopback addresses
(127.0.0.x): the server counts each as its own source.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from support.server import Server, read_banner, start_server, stop

PER_SOURCE, CONNECTIONS, IDLE, REQUEST = 8, 24, 1.0, 1.5
FLAGS = ("--max-connections-per-source", str(PER_SOURCE), "--max-connections", str(CONNECTIONS),
         "--idle-timeout", str(IDLE), "--request-timeout", str(REQUEST))
# More than the 64 connections the server used to take in all: each would block everybody then.
ATTACKERS = 70
PROMPT = 1.5  # seconds within which a well-behaved client is answered, attack or not
METADATA = "/.well-known/oauth-authorization-server"
API = "https://api.example.com/demo"  # seeded on a fresh data dir


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Server]:
    process, server = start_server(tmp_path_factory.mktemp("edge"), *FLAGS)
    try:
        read_banner(process, server, "/token")
        yield server
    finally:
        stop(process)


@pytest.fixture(scope="module")
def client(served) -> dict:
    return json.loads(served.cli("client", "create", "--scope", "demo:read", "--json").stdout)


def address(server: Server) -> tuple[str, int]:
    parts = urlsplit(server.issuer)
    return parts.hostname, parts.port


def connect(server: Server, source: str, first: bytes = b"") -> socket.socket:
    connection = socket.create_connection(address(server), timeout=2, source_address=(source, 0))
    try:
        connection.sendall(first)
    except OSError:  # already closed by the server (it was full): what open_after() counts
        pass
    return connection


def open_after(connections: list[socket.socket], seconds: float) -> list[socket.socket]:
    """The connections the server has neither closed nor answered after ``seconds``."""
    deadline, ended = time.monotonic() + seconds, set()
    while time.monotonic() < deadline:
        waiting = [c for c in connections if c not in ended]
        readable, _, _ = select.select(waiting, [], [], max(0.0, deadline - time.monotonic()))
        ended.update(readable)  # EOF, a reset or an answer (a 503 or 408): no longer held
        if not readable:
            break
    return [c for c in connections if c not in ended]


@contextlib.contextmanager
def closing_all(connections: list[socket.socket]) -> Iterator[None]:
    try:
        yield
    finally:
        for connection in connections:
            connection.close()


class Drip:
    """Writes one more header line to each connection every ``every`` seconds, never ending the head,
    until stopped (or for at most ``at_most`` seconds)."""

    def __init__(self, connections: list[socket.socket], every: float = 0.3, at_most: float = 15.0) -> None:
        self._connections, self._every, self._at_most = connections, every, at_most
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self._at_most
        while not self._stop.wait(self._every) and time.monotonic() < deadline:
            for connection in self._connections:
                try:
                    connection.send(b"X-Drip: 1\r\n")
                except OSError:
                    pass

    def __enter__(self) -> Drip:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self._connections:
            connection.close()


def read_all(connection: socket.socket, timeout: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and when it closed it (bounded)."""
    start, chunks = time.monotonic(), []
    connection.settimeout(timeout)
    try:
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    except TimeoutError:
        return b"".join(chunks), float("inf")
    return b"".join(chunks), time.monotonic() - start


def assert_served_promptly(server: Server, client: dict) -> None:
    """A client from 127.0.0.1 gets the metadata and a token, each within PROMPT seconds."""
    for send in (lambda: requests.get(server.issuer + METADATA, timeout=PROMPT + 1),
                 lambda: requests.post(server.issuer + "/token", timeout=PROMPT + 1,
                                       auth=(client["client_id"], client["client_secret"]),
                                       data={"grant_type": "client_credentials", "resource": API})):
        start = time.monotonic()
        response = send()
        assert response.status_code == 200, response.text
        assert time.monotonic() - start < PROMPT


@pytest.fixture
def no_traceback(served) -> Iterator[None]:
    """The test's requests print no traceback, whatever they send."""
    since = len(served.output)
    yield
    time.sleep(0.2)  # what the server printed is read by a thread
    printed = "".join(served.output[since:])
    assert "Traceback" not in printed and "Exception occurred" not in printed


# -- finding 4: slow and idle connections ---------------------------------------------------------
def test_given_one_source_dripping_and_idling_many_connections_then_other_clients_are_served_at_once(
        served, client, no_traceback):
    assert_served_promptly(served, client)  # the token function's first call imports it: not under attack

    # Given an attacker at 127.0.0.2 that drips request heads on more connections than the server
    # once held in all, and opens idle ones on top
    dripping = [connect(served, "127.0.0.2", b"POST /token HTTP/1.1\r\nHost: x\r\n") for _ in range(ATTACKERS)]
    idle = [connect(served, "127.0.0.2") for _ in range(PER_SOURCE + 2)]
    with Drip(dripping), closing_all(idle):
        # When a client at 127.0.0.1 asks meanwhile, Then it is answered at once
        assert_served_promptly(served, client)
        # And the attacker holds no more than its share of the server
        assert len(open_after(dripping + idle, 0.5)) <= PER_SOURCE


def test_given_idle_connections_filling_the_server_then_a_newcomer_is_served_instead_of_refused(
        served, client, no_traceback):
    # Given connections that never send a request, from many sources, more than the server serves at once
    sources = [f"127.0.1.{i}" for i in range(1, ATTACKERS // PER_SOURCE + 2)]
    idle = [connect(served, source) for source in sources for _ in range(PER_SOURCE)]
    with closing_all(idle):
        # When a client at 127.0.0.1 asks, Then it is answered at once (an idle connection made room)
        assert_served_promptly(served, client)
        # And the server held no more than it serves at once
        assert len(open_after(idle, 0.3)) <= CONNECTIONS


def test_given_a_request_head_dripped_line_by_line_then_it_is_cut_off_at_its_total_deadline(served, no_traceback):
    # Given a client that sends one more header line every 0.2 s, each well within any per-read timeout
    connection = connect(served, "127.0.0.3", b"POST /token HTTP/1.1\r\nHost: x\r\n")
    with Drip([connection], every=0.2, at_most=REQUEST + 4):
        # When the server has waited REQUEST seconds for the whole head
        reply, closed_after = read_all(connection, timeout=REQUEST + 3)
    # Then it closed the connection (answering 408 if anything) within a bounded time
    assert closed_after < REQUEST + 1
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408 ")


def test_given_a_connection_that_sends_nothing_then_it_is_closed_after_the_idle_timeout(served, no_traceback):
    connection = connect(served, "127.0.0.4")
    with connection:
        reply, closed_after = read_all(connection, timeout=IDLE + 3)
    assert reply == b"" and closed_after < IDLE + 1  # nothing to answer: no request was sent


def test_given_a_kept_alive_connection_when_it_stays_idle_then_it_is_closed_after_the_idle_timeout(
        served, no_traceback):
    connection = connect(served, "127.0.0.5", b"GET /jwks.json HTTP/1.1\r\nHost: x\r\n\r\n")
    with connection:
        reply, closed_after = read_all(connection, timeout=IDLE + 3)
    assert reply.startswith(b"HTTP/1.1 200 ") and closed_after < IDLE + 1


# -- finding 11 and its siblings: the head is parsed strictly, in one place -------------------------
def exchange(server: Server, payload: bytes) -> bytes:
    connection = connect(server, "127.0.0.6", payload)
    with connection:
        connection.shutdown(socket.SHUT_WR)  # the whole request is sent: whatever is missing never comes
        reply, _ = read_all(connection, timeout=5)
    return reply


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


TOKEN_HEAD = b"POST /token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
FORM = b"grant_type=client_credentials"


@pytest.mark.parametrize("fields, status", [
    (b"Host: x\r\nContent-Length: \xb2\r\n", 400),  # "²": str.isdigit() says yes, int() says no
    (b"Host: x\r\nContent-Length: \xb9\xb3\r\n", 400),  # "¹³"
    (b"Host: x\r\nContent-Length: +29\r\n", 400),
    (b"Host: x\r\nContent-Length: 2 9\r\n", 400),
    (b"Host: x\r\nContent-Length: 29, 29\r\n", 400),
    (b"Host: x\r\nContent-Length: 29\r\nContent-Length: 29\r\n", 400),
    (b"Host: x\r\nContent-Length: 0x1d\r\n", 400),
    (b"Host: x\r\nContent-Length: \r\n", 400),
    (b"Host: x\r\nContent-Length: " + b"9" * 5000 + b"\r\n", 413),  # beyond int()'s digits too
    (b"Host: x\r\nContent-Length: 65537\r\n", 413),
    (b"Host: x\r\nTransfer-Encoding: chunked\r\n", 411),
    (b"Host: x\r\nContent-Length : 29\r\n", 400),  # the stdlib would stop reading fields there
    (b"Host: x\r\nTransfer-Encoding\r\n : chunked\r\nContent-Length: 29\r\n", 400),
    (b"Host: x\r\nX-Folded: a\r\n b\r\nContent-Length: 29\r\n", 400),  # obs-fold (RFC 9112 §5.2)
    (b"Host: x\r\nX-Nul: a\x00b\r\nContent-Length: 29\r\n", 400),
    (b"Host: x\r\nX-Cr: a\rb\r\nContent-Length: 29\r\n", 400),
    (b"Content-Length: 29\r\n", 400),  # HTTP/1.1 without Host (RFC 9112 §3.2)
    (b"Host: x\r\nHost: y\r\nContent-Length: 29\r\n", 400),
    (b"Host: x y\r\nContent-Length: 29\r\n", 400),
    (b"Host: x/y\r\nContent-Length: 29\r\n", 400),
])
def test_given_a_malformed_or_ambiguous_head_then_one_json_error_and_no_traceback(served, no_traceback, fields, status):
    reply = exchange(served, TOKEN_HEAD + fields + b"\r\n" + FORM)
    assert reply.count(b"HTTP/1.1 ") == 1, reply[:200]  # nothing after the head was read as a request
    assert status_of(reply) == status
    head, _, body = reply.partition(b"\r\n\r\n")
    assert json.loads(body)["error"] == "invalid_request"
    assert b"\r\nConnection: close\r\n" in head and b"\r\nCache-Control: no-store\r\n" in head


@pytest.mark.parametrize("length", [b"29", b"0029", b"29 ", b"\t29"])
def test_given_a_well_formed_content_length_then_the_request_reaches_the_endpoint(served, no_traceback, length):
    # (no client credentials: the token endpoint's own 401 shows the body was read and parsed)
    reply = exchange(served, TOKEN_HEAD + b"Host: 127.0.0.1\r\nContent-Length: " + length + b"\r\n\r\n" + FORM)
    assert status_of(reply) == 401 and json.loads(reply.partition(b"\r\n\r\n")[2])["error"] == "invalid_client"


def test_given_a_body_shorter_than_its_content_length_then_400_and_the_endpoint_never_sees_it(served, no_traceback):
    reply = exchange(served, TOKEN_HEAD + b"Host: x\r\nContent-Length: 100\r\n\r\n" + FORM)
    assert status_of(reply) == 400 and json.loads(reply.partition(b"\r\n\r\n")[2])["error"] == "invalid_request"


def test_given_a_client_that_resets_its_connection_mid_body_then_no_traceback(served, no_traceback):
    connection = connect(served, "127.0.0.7", TOKEN_HEAD + b"Host: x\r\nContent-Length: 29\r\n\r\ngrant")
    time.sleep(0.2)  # the server is reading the body
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
    connection.close()
    assert requests.get(served.issuer + METADATA, timeout=5).status_code == 200
