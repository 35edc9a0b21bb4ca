"""The embedded server behind ``tokenmint serve``: each HTTP request becomes the API Gateway HTTP API
(payload 2.0) event Lambda would receive, handled by the same ``lambda_handler``."""

from __future__ import annotations

import base64
import importlib
import json
import re
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
                source_ip: str, route: str | None = None, path_parameters: dict[str, str] | None = None
                ) -> dict[str, Any]:
    """The payload 2.0 event API Gateway sends for this request (route ``ANY <route>``)."""
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
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = base64.b64encode(body).decode("ascii")
    return event


class _Handler(BaseHTTPRequestHandler):
    server_version = "tokenmint"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    routes: tuple[tuple[re.Pattern[str], Route], ...] = ()
    domain = "127.0.0.1"

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
        event = build_event(self.command, self.path, headers, body, domain=self.domain,
                            source_ip=self.client_address[0], route=route.path, path_parameters=match.groupdict())
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

    def log_message(self, format: str, *args: Any) -> None:  # the handlers log; keep stderr quiet
        pass


class EmbeddedServer(ThreadingHTTPServer):
    """A thread per connection, at most MAX_CONNECTIONS at once, and a listen queue for bursts."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

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


def make_server(host: str, port: int) -> EmbeddedServer:
    """An HTTP server bound to ``host:port`` (0: any free port) serving every route of the template."""
    handler = type("Handler", (_Handler,), {"routes": tuple((route_pattern(r.path), r) for r in ROUTES)})
    server = EmbeddedServer((host, port), handler)
    handler.domain = f"{host}:{server.server_address[1]}"
    return server
