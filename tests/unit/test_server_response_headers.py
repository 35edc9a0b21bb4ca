"""The embedded server's last line against response splitting (RFC 9112 §11.1, RFC 9110 §5.5): a
header field a handler returns with CR, LF, NUL or another control character in its name or value
is never written; the client gets a 500 ``server_error`` instead, and the log says which header,
never its value. Over a real socket, with the route's handler module replaced by a fake."""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from tokenmint import observability, server

INJECTED = "\r\nSet-Cookie: sid=attacker"


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    handler = observability.logger.registered_handler
    stream, buffer = handler.stream, io.StringIO()
    observability.log_to(buffer, "INFO")
    yield buffer
    observability.log_to(stream, "INFO")


@pytest.fixture
def tools_answer(monkeypatch) -> Iterator[tuple[dict[str, Any], int]]:
    """The embedded server on 127.0.0.1, whose /tools/{tool} handler answers what the test puts in the dict."""
    answer: dict[str, Any] = {}
    monkeypatch.setitem(sys.modules, "tokenmint.handlers.tools",
                        SimpleNamespace(lambda_handler=lambda event, context: answer))
    embedded = server.make_server("127.0.0.1", 0)
    thread = threading.Thread(target=embedded.serve_forever, daemon=True)
    thread.start()
    try:
        yield answer, embedded.server_address[1]
    finally:
        embedded.shutdown()
        embedded.server_close()
        thread.join(timeout=5)


def get_tool(port: int) -> bytes:
    """The raw bytes answering GET /tools/echo, until the server closes (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(b"GET /tools/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("headers, multi_value_headers", [
    ({"WWW-Authenticate": 'DPoP error_description="bad htm' + INJECTED + '"'}, {}),
    ({"X-Test": "a\nSet-Cookie: sid=attacker"}, {}),
    ({"X-Test": "a\rSet-Cookie: sid=attacker"}, {}),
    ({"X-Test": "a\x00b"}, {}),
    ({"X-Test": "a\x7fb"}, {}),
    ({"X-Test": "a\x1b[31mb"}, {}),
    ({"X-Test": "a\u2028b"}, {}),  # not even Latin-1: the stdlib would raise while writing the head
    ({"X-Test" + INJECTED: "a"}, {}),
    ({"X Test": "a"}, {}),
    ({}, {"X-Test": ["a", "b" + INJECTED]}),
])
def test_given_a_header_with_a_control_character_then_500_and_nothing_of_it_is_written(
        tools_answer, logs, capsys, headers, multi_value_headers):
    answer, port = tools_answer
    # Given a handler answering with a header field RFC 9110 §5.5 forbids
    answer.update(statusCode=401, headers={"Content-Type": "application/json", **headers},
                  multiValueHeaders=multi_value_headers, body='{"error": "invalid_token"}')

    # When a client calls it
    reply = get_tool(port)

    # Then one 500 server_error with a correlation id, and none of the handler's header fields
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ") and reply.count(b"HTTP/1.1 ") == 1
    assert b"Set-Cookie" not in reply and b"attacker" not in reply
    error = json.loads(body)
    assert error["error"] == "server_error" and "correlation id" in error["error_description"]
    # And the log names the header (when its name is one) and the correlation id, never the value
    (line,) = [json.loads(line) for line in logs.getvalue().splitlines() if "RFC 9110" in line]
    assert line["level"] == "ERROR" and line["request_id"] in error["error_description"]
    assert line["header"] in ("WWW-Authenticate", "X-Test", "(malformed name)")
    assert "attacker" not in logs.getvalue()
    assert capsys.readouterr().err == ""  # no traceback


def test_given_well_formed_headers_then_they_are_written_as_given(tools_answer):
    answer, port = tools_answer
    answer.update(statusCode=200, headers={"Content-Type": "application/json", "X-Test": "a\tb c~\u00e9"},
                  body="{}")
    reply = get_tool(port)
    assert reply.startswith(b"HTTP/1.1 200 ") and b"\r\nX-Test: a\tb c~\xe9\r\n" in reply
