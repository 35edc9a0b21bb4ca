"""The embedded server behind ``tokenmint serve``: each HTTP request becomes the API Gateway HTTP API
(payload 2.0) event Lambda would receive, handled by the same ``lambda_handler``."""

from __future__ import annotations

import base64
import importlib
import json
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .oauth.form import MAX_FORM_BYTES
from .observability import logger
from .routes import ROUTES

MAX_BODY_BYTES = MAX_FORM_BYTES * 2  # the handlers enforce their own, smaller limits
REQUEST_TIMEOUT = 10  # seconds a client may take to send its request


def lambda_context(function_name: str) -> SimpleNamespace:
    return SimpleNamespace(function_name=function_name, function_version="$LATEST", memory_limit_in_mb=512,
                           invoked_function_arn=f"arn:aws:lambda:local:000000000000:function:{function_name}",
                           aws_request_id=str(uuid.uuid4()), get_remaining_time_in_millis=lambda: 10_000)


def build_event(method: str, target: str, headers: dict[str, str], body: bytes, *, domain: str,
                source_ip: str) -> dict[str, Any]:
    """The payload 2.0 event API Gateway sends for this request (route ``ANY <path>``)."""
    parts = urlsplit(target)
    now = time.time()
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"ANY {parts.path}",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000", "apiId": "local", "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {"method": method, "path": parts.path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": headers.get("user-agent", "")},
            "requestId": str(uuid.uuid4()), "routeKey": f"ANY {parts.path}", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": bool(body),
    }
    if query:
        event["queryStringParameters"] = query
    if body:
        event["body"] = base64.b64encode(body).decode("ascii")
    return event


class _Handler(BaseHTTPRequestHandler):
    server_version = "tokenmint"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT
    routes: dict[str, tuple[str, str]] = {}
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
        self._send(status, {"Content-Type": "application/json", "Cache-Control": "no-store"}, body)

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        route = self.routes.get(path)
        if route is None:
            return self._error(404, "no such endpoint")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._error(411, "send the body with a Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self._error(400, "invalid Content-Length")
        if length < 0 or length > MAX_BODY_BYTES:
            return self._error(413, f"the request body exceeds {MAX_BODY_BYTES} bytes")
        body = self.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        function, handler = self.routes[path]
        event = build_event(self.command, self.path, headers, body, domain=self.domain,
                            source_ip=self.client_address[0])
        try:
            result = importlib.import_module(handler).lambda_handler(event, lambda_context(function))
        except Exception:  # the resolver answers every error itself; this is a last resort
            logger.exception("handler failed outside the resolver")
            return self._error(500, "internal error", error="server_error")
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode("utf-8")
        response_headers = dict(result.get("headers") or {})
        for name, values in (result.get("multiValueHeaders") or {}).items():
            response_headers[name] = ", ".join(values)
        self._send(int(result.get("statusCode", 200)), response_headers, data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # the handlers log; keep stderr quiet
        pass


def make_server(host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server bound to ``host:port`` (0: any free port) serving every route of the template."""
    handler = type("Handler", (_Handler,), {
        "routes": {route.path: (route.function, route.handler) for route in ROUTES}})
    server = ThreadingHTTPServer((host, port), handler)
    handler.domain = f"{host}:{server.server_address[1]}"
    server.daemon_threads = True
    return server
