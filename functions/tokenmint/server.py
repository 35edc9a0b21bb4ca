"""The embedded server behind ``tokenmint serve``: each HTTP request becomes the API Gateway HTTP API
(payload 2.0) event Lambda would receive, handled by the same ``lambda_handler``."""

from __future__ import annotations

import base64
import importlib
import json
import re
import ssl
import sys
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

from .observability import logger
from .routes import AUTHORIZER, ROUTES, Route


def route_pattern(path: str) -> re.Pattern[str]:
    """``/register/{client_id}`` → a regex with a named group per path parameter (one segment each)."""
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)))

MAX_BODY_BYTES = 64 * 1024  # the handlers enforce their own, smaller limits with precise errors
REQUEST_TIMEOUT = 5  # seconds any single read of a request may take
MAX_CONNECTIONS = 64  # concurrent connections served; more wait up to ACCEPT_WAIT, then are closed
ACCEPT_WAIT = 2.0
HANDSHAKE_TIMEOUT = 5  # seconds a TLS handshake may take (it runs in the connection's own thread)


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


class _Handler(BaseHTTPRequestHandler):
    server_version = "tokenmint"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    routes: tuple[tuple[re.Pattern[str], Route], ...] = ()
    domain = "127.0.0.1"
    scheme = "http"

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
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
        path, _ = split_target(self.path)
        for pattern, route in self.routes:
            match = pattern.fullmatch(path)
            if match:
                break
        else:
            return self._error(404, "no such endpoint")
        # One framing only (RFC 9112 §6.3): anything else could make a body be read as a request.
        if self.headers.get_all("Transfer-Encoding"):
            return self._error(411, "send the body with a Content-Length")
        lengths = self.headers.get_all("Content-Length") or ["0"]
        if len(lengths) > 1 or not lengths[0].strip().isdigit():
            return self._error(400, "invalid Content-Length")
        length = int(lengths[0])
        if length > MAX_BODY_BYTES:
            return self._error(413, f"the request body exceeds {MAX_BODY_BYTES} bytes")
        body = self.rfile.read(length) if length else b""
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
        except Exception:  # the resolver answers every error itself; this is a last resort
            logger.exception("handler failed outside the resolver")
            return self._error(500, "internal error", error="server_error")
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode("utf-8")
        response_headers = dict(result.get("headers") or {})
        for name, values in (result.get("multiValueHeaders") or {}).items():
            response_headers[name] = ", ".join(values)
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
        except Exception:  # API Gateway answers 500 when the authorizer fails
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
    """A thread per connection, at most MAX_CONNECTIONS at once, and a listen queue for bursts."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.tls = tls

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(timeout=ACCEPT_WAIT):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """With TLS, the handshake happens here, in the connection's thread and with a timeout, so a
        slow or failed handshake (an untrusted client certificate, plain HTTP, a stalled client) ends
        that connection only, as API Gateway refuses a certificate its truststore does not verify."""
        if self.tls is None:
            return super().finish_request(request, client_address)
        try:
            request.settimeout(HANDSHAKE_TIMEOUT)
            connection = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except OSError:
            return None
        try:
            connection.do_handshake()
        except OSError as exc:  # ssl.SSLError, timeouts and resets are all OSErrors
            # Not through the shared logger: it carries the keys of whichever invocation ran last.
            reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or type(exc).__name__
            print(f"tokenmint serve: TLS handshake with {client_address[0]} failed: {reason}", file=sys.stderr)
            connection.close()
            return None
        try:
            super().finish_request(connection, client_address)
        finally:
            self.shutdown_request(connection)


def make_server(host: str, port: int, tls: ssl.SSLContext | None = None) -> EmbeddedServer:
    """An HTTP server bound to ``host:port`` (0: any free port) serving every route of the template;
    HTTPS with ``tls`` (see tls_context)."""
    handler = type("Handler", (_Handler,), {"routes": tuple((route_pattern(r.path), r) for r in ROUTES),
                                            "scheme": "https" if tls else "http"})
    server = EmbeddedServer((host, port), handler, tls)
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
