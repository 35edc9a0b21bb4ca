"""The embedded server behind ``tokenmint serve``: each HTTP request becomes the API Gateway HTTP API
(payload 2.0) event Lambda would receive, handled by the same ``lambda_handler``."""

from __future__ import annotations

import base64
import importlib
import io
import json
import re
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

from .config import ConfigError
from .oauth.throttle import source_key
from .observability import logger
from .routes import AUTHORIZER, ROUTES, Route


def route_pattern(path: str) -> re.Pattern[str]:
    """``/register/{client_id}`` → a regex with a named group per path parameter (one segment each)."""
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)))

MAX_BODY_BYTES = 64 * 1024  # the handlers enforce their own, smaller limits with precise errors


@dataclass(frozen=True)
class Limits:
    """What one client can hold of the server, and for how long (docs/cli.md: `tokenmint serve`).

    A connection holds a thread. Slow clients are bounded by totals, not per read (a client dripping
    a byte before each read timeout would otherwise keep its thread forever): a request's head and
    body must arrive within ``request_timeout`` of its first byte, and a connection may wait at most
    ``idle_timeout`` for the first byte of its next request. One source (an IPv4 address, an IPv6 /64)
    holds at most ``max_connections_per_source``, as nginx's limit_conn, so filling the server takes
    many sources. When a source or the server is full, the connection that has waited longest for a
    request (of that source, or any) is closed to make room; only when none waits is the new one closed.
    """

    max_connections: int = 1024
    max_connections_per_source: int = 64  # above load.py's 32 keep-alive connections from one address
    idle_timeout: float = 5.0
    request_timeout: float = 10.0
    handshake_timeout: float = 5.0  # a total too: CPython bounds the whole TLS handshake by the timeout

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be more than 0")


# In Lambda each function runs in its own process and handles one event at a time. Here they all
# share one process, and the handlers keep per-invocation state in process-wide places: powertools
# stores the current event on a class shared by every resolver (BaseRouter.current_event), and
# the logger's keys are shared too. So one invocation runs at a time in the whole server
# (connections are still accepted and read concurrently; the GIL serialises the work anyway).
_INVOCATION_LOCK = threading.Lock()


def invoke(module: str, function: str, event: dict[str, Any]) -> dict[str, Any]:
    """``module.lambda_handler(event, context)``, as Lambda would call it: one event at a time."""
    handler = importlib.import_module(module).lambda_handler
    with _INVOCATION_LOCK:
        return handler(event, lambda_context(function))


def lambda_context(function_name: str) -> SimpleNamespace:
    return SimpleNamespace(function_name=function_name, function_version="$LATEST", memory_limit_in_mb=512,
                           invoked_function_arn=f"arn:aws:lambda:local:000000000000:function:{function_name}",
                           aws_request_id=str(uuid.uuid4()), get_remaining_time_in_millis=lambda: 10_000)


def split_target(target: str) -> tuple[str, str]:
    """An origin-form request target (RFC 9112 §3.2.1) is a path and an optional query. Not
    urlsplit: it reads a leading "//" as the start of a host, and fails on "//[" (a 5xx)."""
    path, _, query = target.partition("#")[0].partition("?")
    return path, query


# -- the message head, in both directions: the fields this server reads or writes, checked here ----
# RFC 9110 §5.1: a field name is a token. §5.5: a value is visible ASCII, obs-text, spaces and tabs;
# never CR, LF, NUL or another control character, which could end the field or the whole head.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also takes "²", which int() refuses
# RFC 9112 §3.2 / RFC 3986 §3.2.2: uri-host [ ":" port ]
_HOST = re.compile(r"(?:\[[0-9A-Za-z:.\-_~!$&'()*+,;=]+\]|[0-9A-Za-z.\-_~%!$&'()*+,;=]*)(?::[0-9]*)?")


def valid_field(name: str, value: str) -> bool:
    """Whether ``name: value`` is a well-formed header field (RFC 9110 §5.1, §5.5)."""
    return bool(_FIELD_NAME.fullmatch(name) and _FIELD_VALUE.fullmatch(value))


class BadRequestHead(ValueError):
    """A request head this server refuses to read a body after (a 4xx ``status``)."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status


def request_body_length(headers: Any, version: str) -> int:
    """The length of a request's body (an ``http.client.HTTPMessage`` head), or BadRequestHead:

    - every line a field, every field well-formed: the stdlib silently stops at a line that is no
      field ("Content-Length : 5") and keeps a folded line's CR LF in the value (RFC 9112 §5.2);
    - exactly one valid Host in HTTP/1.1, at most one before (RFC 9112 §3.2);
    - one framing (RFC 9112 §6.3): no Transfer-Encoding, so no body can be read as a request;
    - Content-Length is ``1*DIGIT`` (RFC 9110 §8.6), once: no sign, no list, no digit but ASCII's.
    """
    if headers.defects or headers.get_payload() or not all(valid_field(*field) for field in headers.items()):
        raise BadRequestHead(400, "malformed header field")
    hosts = headers.get_all("Host") or []
    if len(hosts) > 1 or (not hosts and version not in ("HTTP/0.9", "HTTP/1.0")) \
            or (hosts and not _HOST.fullmatch(hosts[0].strip(" \t"))):
        raise BadRequestHead(400, "send one valid Host header field")
    if headers.get_all("Transfer-Encoding"):
        raise BadRequestHead(411, "send the body with a Content-Length")
    lengths = headers.get_all("Content-Length") or ["0"]
    value = lengths[0].strip(" \t")
    if len(lengths) > 1 or not _DIGITS.fullmatch(value):
        raise BadRequestHead(400, "invalid Content-Length")
    digits = value.lstrip("0") or "0"  # int() refuses thousands of digits: compare lengths first
    if len(digits) > len(str(MAX_BODY_BYTES)) or int(digits) > MAX_BODY_BYTES:
        raise BadRequestHead(413, f"the request body exceeds {MAX_BODY_BYTES} bytes")
    return int(digits)


def build_event(method: str, target: str, headers: dict[str, str], body: bytes, *, domain: str,
                source_ip: str, route: str | None = None, path_parameters: dict[str, str] | None = None,
                client_cert: dict[str, Any] | None = None) -> dict[str, Any]:
    """The payload 2.0 event API Gateway sends for this request (route ``ANY <route>``); with
    ``client_cert`` (see client_cert_context), the one a mutual-TLS custom domain sends."""
    path, query_string = split_target(target)
    route_key = f"ANY {route or path}"
    now = time.time()
    query: dict[str, str] = {}
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query_string,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000", "apiId": "local", "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": headers.get("user-agent", "")},
            "requestId": str(uuid.uuid4()), "routeKey": route_key, "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": bool(body),
    }
    if client_cert is not None:
        event["requestContext"]["authentication"] = {"clientCert": client_cert}
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = base64.b64encode(body).decode("ascii")
    return event


# -- mutual TLS: what API Gateway puts in requestContext.authentication.clientCert -------------------
# Field names and formats as AWS documents them for HTTP APIs (payload 2.0) and shows in its sample
# events: subjectDN/issuerDN "C=US,ST=Washington,...,CN=My Client" (the attributes in certificate
# order, comma-separated, no spaces: not RFC 4514's reversed order), validity dates as OpenSSL prints
# them ("Aug  5 00:28:21 2120 GMT"), serialNumber as OpenSSL prints it: lowercase colon-separated hex
# bytes ("a1:a1:…") for long serials, decimal ("1") for serials that fit in 8 bytes.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def client_cert_context(der: bytes) -> dict[str, Any]:
    """``requestContext.authentication.clientCert`` for a client certificate verified in the handshake."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    certificate = x509.load_der_x509_certificate(der)
    return {
        "clientCertPem": certificate.public_bytes(Encoding.PEM).decode("ascii"),
        "subjectDN": distinguished_name(certificate.subject),
        "issuerDN": distinguished_name(certificate.issuer),
        "serialNumber": serial_number(certificate.serial_number),
        "validity": {"notBefore": openssl_time(certificate.not_valid_before_utc),
                     "notAfter": openssl_time(certificate.not_valid_after_utc)},
    }


def distinguished_name(name: Any) -> str:
    """An x509.Name as API Gateway writes it: RDNs in certificate order, each as RFC 4514 writes it
    (escaping, ``+`` within an RDN), with OpenSSL's short names for attributes RFC 4514 has none for."""
    from cryptography.x509.oid import NameOID

    short_names = {NameOID.EMAIL_ADDRESS: "emailAddress", NameOID.SERIAL_NUMBER: "serialNumber",
                   NameOID.GIVEN_NAME: "GN", NameOID.SURNAME: "SN", NameOID.TITLE: "title",
                   NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
                   NameOID.BUSINESS_CATEGORY: "businessCategory", NameOID.POSTAL_CODE: "postalCode",
                   NameOID.JURISDICTION_COUNTRY_NAME: "jurisdictionC"}
    return ",".join(rdn.rfc4514_string(short_names) for rdn in name.rdns)


def serial_number(value: int) -> str:
    """A certificate serial number as API Gateway writes it (see above)."""
    magnitude = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "big")
    text = str(abs(value)) if len(magnitude) <= 8 else ":".join(f"{byte:02x}" for byte in magnitude)
    return "-" + text if value < 0 else text


def openssl_time(moment: Any) -> str:
    """A UTC datetime as OpenSSL's ASN1_TIME_print writes it: ``May 28 12:30:02 2019 GMT``."""
    return f"{_MONTHS[moment.month - 1]} {moment.day:2d} {moment:%H:%M:%S} {moment.year} GMT"


# -- connections: a thread each, within Limits ------------------------------------------------------
class Slot:
    """One admitted connection; ``closed`` once its place is given back (it ended, or made room)."""

    __slots__ = ("closed", "connection", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.connection: socket.socket | None = None
        self.closed = False


class ConnectionTable:
    """The connections being served, per source, and which of them wait for a request (longest first)."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._count = 0
        self._per_source: Counter[str] = Counter()
        self._waiting: dict[Slot, None] = {}  # an ordered set

    def admit(self, source: str) -> Slot | None:
        """A slot for a new connection from ``source``, after closing a waiting one if that makes room;
        None when the source, or the server, is full of connections with a request under way."""
        with self._lock:
            if self._per_source[source] >= self._limits.max_connections_per_source and not self._close_one(source):
                return None
            if self._count >= self._limits.max_connections and not self._close_one(None):
                return None
            self._count += 1
            self._per_source[source] += 1
            return Slot(source)

    def wait(self, slot: Slot, connection: socket.socket) -> None:
        """``slot`` waits for a request (or a TLS handshake) on ``connection``: it may be closed for a newcomer."""
        with self._lock:
            if not slot.closed:
                slot.connection = connection
                self._waiting[slot] = None

    def work(self, slot: Slot) -> bool:
        """``slot`` has a request under way, and stays open; False if it was closed while waiting."""
        with self._lock:
            self._waiting.pop(slot, None)
            return not slot.closed

    def release(self, slot: Slot) -> None:
        with self._lock:
            self._waiting.pop(slot, None)
            self._give_back(slot)

    def _close_one(self, source: str | None) -> bool:
        slot = next((waiting for waiting in self._waiting if source is None or waiting.source == source), None)
        if slot is None:
            return False
        del self._waiting[slot]
        self._give_back(slot)
        try:  # wakes its thread, which finds EOF. Not SSLSocket.shutdown: it unwraps under the reader's feet
            socket.socket.shutdown(slot.connection, socket.SHUT_RDWR)  # type: ignore[arg-type]
        except OSError:
            pass
        return True

    def _give_back(self, slot: Slot) -> None:
        if slot.closed:
            return
        slot.closed = True
        self._count -= 1
        self._per_source[slot.source] -= 1
        if not self._per_source[slot.source]:
            del self._per_source[slot.source]


class _Late(Exception):
    """A request that did not arrive in time. Not a TimeoutError: the stdlib drops those without an answer."""


class _DeadlineReader(io.RawIOBase):
    """A connection's input whose reads all end by ``deadline`` (time.monotonic()): a total for a
    request's head and body, where a socket timeout would bound each read only."""

    def __init__(self, connection: socket.socket) -> None:
        super().__init__()
        self._connection = connection
        self.deadline = 0.0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _Late
        self._connection.settimeout(left)
        try:
            return self._connection.recv_into(buffer)
        except TimeoutError:
            raise _Late from None


class _Handler(BaseHTTPRequestHandler):
    server: EmbeddedServer
    server_version = "tokenmint"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    routes: tuple[tuple[re.Pattern[str], Route], ...] = ()
    domain = "127.0.0.1"
    scheme = "http"
    rfile: io.BufferedReader  # setup() replaces the stdlib's reader with one that has deadlines

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the stdlib's reader (the socket stays open): this one has deadlines
        self._input = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._input)

    def handle(self) -> None:
        self.close_connection = True
        try:
            while self._next_request():
                self.handle_one_request()
                if self.close_connection:
                    break
        except _Late:  # RFC 9110 §15.5.9, then close: the rest of a late request is not worth waiting for
            try:
                self._error(408, f"the request did not arrive within {self.server.limits.request_timeout:g} s")
            except OSError:
                pass
        except OSError:  # reset or closed by the client, or here to make room: nobody to answer
            pass

    def _next_request(self) -> bool:
        """Wait at most ``idle_timeout`` for the next request's first byte (meanwhile, a newcomer may
        have this connection closed), then give its head and body ``request_timeout`` in all.
        False: close the connection."""
        limits, slot = self.server.limits, self.server.slot()
        self._input.deadline = time.monotonic() + limits.idle_timeout
        self.server.connections.wait(slot, self.connection)
        try:
            arrived = bool(self.rfile.peek(1))
        except (_Late, OSError):
            arrived = False
        if not self.server.connections.work(slot) or not arrived:
            return False
        self._input.deadline = time.monotonic() + limits.request_timeout
        self.requestline = self.request_version = self.command = ""  # what a 408 before the request line needs
        return True

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.connection.settimeout(self.server.limits.request_timeout)  # for all of the answer (sendall)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, description: str, error: str = "invalid_request") -> None:
        body = json.dumps({"error": error, "error_description": description}).encode()
        self.close_connection = True
        self._send(status, {"Content-Type": "application/json", "Cache-Control": "no-store", "Connection": "close"},
                   body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the stdlib answers itself (bad request line, huge headers, unknown method): JSON too."""
        self._error(code, message or HTTPStatus(code).phrase)

    def _dispatch(self) -> None:
        try:
            length = request_body_length(self.headers, self.request_version)
        except BadRequestHead as exc:
            return self._error(exc.status, str(exc))
        path, _ = split_target(self.path)
        for pattern, route in self.routes:  # noqa: B007 - the route found is used after the loop
            match = pattern.fullmatch(path)
            if match:
                break
        else:
            return self._error(404, "no such endpoint")
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            return self._error(400, "the body ended before its Content-Length")
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        headers["x-forwarded-proto"] = self.scheme  # set by the server, as API Gateway does
        event = build_event(self.command, self.path, headers, body, domain=self.domain,
                            source_ip=self.client_address[0], route=route.path, path_parameters=match.groupdict(),
                            client_cert=self._client_cert())
        if route.authorizer is not None and not self._authorize(event):
            return None
        try:
            result = invoke(route.handler, route.function, event)
        except Exception:  # noqa: BLE001 - the resolver answers every error itself; this is a last resort
            logger.exception("handler failed outside the resolver")
            return self._error(500, "internal error", error="server_error")
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode("utf-8")
        response_headers = dict(result.get("headers") or {})
        for name, values in (result.get("multiValueHeaders") or {}).items():
            response_headers[name] = ", ".join(values)
        refused = next((name for name, value in response_headers.items() if not valid_field(name, str(value))), None)
        if refused is not None:
            # Client text that reached a header unescaped (a bug upstream) must not split the answer
            # (RFC 9112 §11.1): no answer of the handler's, and no value of it in the log either.
            request_id = event["requestContext"]["requestId"]
            logger.error("response header with a character RFC 9110 §5.5 forbids: not sent", extra={
                "header": refused if _FIELD_NAME.fullmatch(refused) else "(malformed name)",
                "route": route.path, "request_id": request_id})
            return self._error(500, f"internal error; correlation id {request_id}", error="server_error")
        self._send(int(result.get("statusCode", 200)), response_headers, data)

    def _client_cert(self) -> dict[str, Any] | None:
        """This connection's client certificate, verified in the handshake (None: the client sent none)."""
        if not isinstance(self.connection, ssl.SSLSocket):
            return None
        der = self.connection.getpeercert(binary_form=True)
        return client_cert_context(der) if der else None

    def _authorize(self, event: dict[str, Any]) -> bool:
        """What API Gateway does before a route with a Lambda authorizer: 401 without the identity
        source, 403 when the authorizer denies, else the authorizer's context in the event."""
        _, function, module = AUTHORIZER
        if not event["headers"].get("authorization"):
            self._gateway_error(401, "Unauthorized")
            return False
        authorizer_event = {
            "version": "2.0", "type": "REQUEST", "routeArn": f"arn:aws:execute-api:local:000000000000:local/$default/"
            f"{event['requestContext']['http']['method']}{event['rawPath']}", "routeKey": event["routeKey"],
            "identitySource": [event["headers"]["authorization"], event["routeKey"]],
            "rawPath": event["rawPath"], "rawQueryString": event["rawQueryString"], "headers": event["headers"],
            "requestContext": event["requestContext"], "pathParameters": event.get("pathParameters", {}),
        }
        try:
            answer = invoke(module, function, authorizer_event)
        except Exception:  # noqa: BLE001 - API Gateway answers 500 when the authorizer fails
            logger.exception("authorizer failed")
            self._gateway_error(500, "Internal Server Error")
            return False
        if answer.get("isAuthorized") is not True:
            self._gateway_error(403, "Forbidden")
            return False
        event["requestContext"]["authorizer"] = {"lambda": answer.get("context") or {}}
        return True

    def _gateway_error(self, status: int, message: str) -> None:
        self._send(status, {"Content-Type": "application/json"}, json.dumps({"message": message}).encode())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def __getattr__(self, name: str) -> Any:
        # The other methods the handlers know (TRACE, QUERY, …) reach them too, for a JSON 405 with
        # Allow; a method nobody knows stays the stdlib's 501 (RFC 9110 §15.6.2), as JSON.
        from .handlers.http import ALL_METHODS

        if name.startswith("do_") and name[3:] in ALL_METHODS:
            return self._dispatch
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # the handlers log; keep stderr quiet
        pass


class EmbeddedServer(ThreadingHTTPServer):
    """A thread per connection, within ``limits`` (see Limits), and a listen queue for bursts."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 tls: ssl.SSLContext | None = None, limits: Limits = Limits()) -> None:
        super().__init__(address, handler)
        self.tls = tls
        self.limits = limits
        self.connections = ConnectionTable(limits)
        self._this_thread = threading.local()

    def slot(self) -> Slot:
        """The slot of the connection this thread serves."""
        return self._this_thread.slot

    def process_request(self, request: Any, client_address: Any) -> None:
        """In the accepting thread, so it never waits: a slot now, or the connection is closed."""
        slot = self.connections.admit(source_key(client_address[0]))  # as the throttle counts sources
        if slot is None:
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self._serve, args=(request, client_address, slot), daemon=True)
        try:
            thread.start()
        except BaseException:
            self.connections.release(slot)
            raise

    def _serve(self, request: Any, client_address: Any, slot: Slot) -> None:
        self._this_thread.slot = slot
        try:
            self.process_request_thread(request, client_address)
        finally:
            self.connections.release(slot)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A bug of ours (what a client sends is answered, or ends its connection quietly): its trace
        goes to the log, as the resolver's do, not to stderr."""
        logger.exception("connection failed")

    def finish_request(self, request: Any, client_address: Any) -> None:
        """With TLS, the handshake happens here, in the connection's thread and with a timeout, so a
        slow or failed handshake (an untrusted client certificate, plain HTTP, a stalled client) ends
        that connection only, as API Gateway refuses a certificate its truststore does not verify."""
        if self.tls is None:
            return super().finish_request(request, client_address)
        try:
            request.settimeout(self.limits.handshake_timeout)
            connection = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except OSError:
            return None
        slot = self.slot()
        self.connections.wait(slot, connection)  # no request yet: it may be closed to make room
        try:
            connection.do_handshake()
        except OSError as exc:  # ssl.SSLError, timeouts and resets are all OSErrors
            if self.connections.work(slot):  # not closed here to make room
                # Not through the shared logger: it carries the keys of whichever invocation ran last.
                reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or type(exc).__name__
                print(f"tokenmint serve: TLS handshake with {client_address[0]} failed: {reason}", file=sys.stderr)
            connection.close()
            return None
        try:
            if self.connections.work(slot):
                super().finish_request(connection, client_address)
        finally:
            self.shutdown_request(connection)


def make_server(host: str, port: int, tls: ssl.SSLContext | None = None, limits: Limits = Limits()) -> EmbeddedServer:
    """An HTTP server bound to ``host:port`` (0: any free port) serving every route of the template;
    HTTPS with ``tls`` (see tls_context); ``limits`` on what clients may hold (see Limits)."""
    handler: type[_Handler] = type("Handler", (_Handler,), {"routes": tuple((route_pattern(r.path), r) for r in ROUTES),
                                                            "scheme": "https" if tls else "http"})
    server = EmbeddedServer((host, port), handler, tls, limits)
    handler.domain = f"{host}:{server.server_address[1]}"
    return server


def tls_context(cert_file: str | Path, key_file: str | Path, client_ca: str | Path | None = None, *,
                require_client_cert: bool = False) -> ssl.SSLContext:
    """A server context for ``cert_file``/``key_file`` (TLS 1.2+). With ``client_ca`` (a PEM bundle,
    like the truststore an API Gateway custom domain reads from S3) it asks for a client certificate
    and verifies it against that bundle: chain, validity dates, purpose; a certificate that fails is
    refused in the handshake. Optional unless ``require_client_cert`` (API Gateway's mutual-TLS domains
    require one). A self-signed client certificate passes only if it is itself in the bundle."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    elif require_client_cert:
        raise ValueError("a client certificate can only be required with a truststore (client_ca)")
    return context
