"""What every endpoint shares: the resolver, strict request parsing, and the one place that turns
errors into HTTP responses (RFC 6749 §5.2 JSON, never a stack trace)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from ..config import client_certificate_pem, issuer_for
from ..config import request_url as config_request_url
from ..oauth.errors import (
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    OAuthError,
    PayloadTooLargeError,
    ServerError,
    TemporarilyUnavailableError,
)
from ..oauth.form import MAX_FORM_BYTES, Form, parse_form
from ..observability import audit, logger
from ..ports import UnavailableError

T = TypeVar("T")
JSON = "application/json"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# What allow_only answers 405: every method API Gateway routes as ANY, and others a client may send.
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT", "QUERY")


def json_response(status: int, body: Any, headers: dict[str, str] | None = None,
                  content_type: str = JSON) -> Response:
    return Response(status_code=status, content_type=content_type,
                    body=json.dumps(body, separators=(",", ":")), headers=headers or {})


def error_response(error: OAuthError) -> Response:
    return json_response(error.status_code, error.body(), {**NO_STORE, **error.headers})


def create_resolver() -> APIGatewayHttpResolver:
    """A resolver whose every failure is an OAuth-shaped JSON error."""
    app = APIGatewayHttpResolver()

    @app.exception_handler(OAuthError)
    def _oauth_error(exc: OAuthError) -> Response:
        return error_response(exc)

    @app.exception_handler(UnavailableError)
    def _unavailable(exc: UnavailableError) -> Response:
        logger.warning("dependency unavailable", extra={"reason": str(exc)})
        return error_response(TemporarilyUnavailableError())

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        request_id = app.current_event.request_context.request_id
        logger.exception("unexpected error", extra={"request_id": request_id})
        return error_response(ServerError(f"internal error; correlation id {request_id}"))

    @app.not_found
    def _not_found(exc: Exception) -> Response:
        return error_response(NotFoundError("no such endpoint"))

    return app


def allow_only(app: APIGatewayHttpResolver, path: str, allowed: Sequence[str]) -> None:
    """Answer other methods on ``path`` with 405 and ``Allow`` (API Gateway routes them as ANY).
    HEAD goes with GET (RFC 9110 §9.3.2): register the GET handler for both."""
    if "GET" in allowed:
        allowed = (*allowed, "HEAD")
    others = [m for m in ALL_METHODS if m not in allowed]

    @app.route(path, method=others)
    def _method_not_allowed(**_path_parameters: str) -> Response:
        raise MethodNotAllowedError(app.current_event.request_context.http.method, tuple(allowed))


def raw_body(app: APIGatewayHttpResolver, max_bytes: int) -> bytes:
    """The request body as bytes, base64-decoded when API Gateway flags it; size-checked first."""
    event = app.current_event
    raw = event.get("body") or ""
    if len(raw) > max_bytes * 4 // 3 + 4:  # too large even before base64 decoding
        raise PayloadTooLargeError(f"the request body exceeds {max_bytes} bytes")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error:
            raise InvalidRequestError("the request body is not valid base64") from None
    return raw.encode("utf-8", "surrogatepass")


def form_body(app: APIGatewayHttpResolver) -> Form:
    """The request's form parameters, parsed strictly (RFC 6749 §3.1)."""
    return parse_form(raw_body(app, MAX_FORM_BYTES), app.current_event.headers.get("content-type"))


def header(app: APIGatewayHttpResolver, name: str) -> str | None:
    """A request header; API Gateway (payload 2.0) lower-cases names and joins repeats with commas."""
    return app.current_event.headers.get(name)


def client_certificate(app: APIGatewayHttpResolver) -> str | None:
    return client_certificate_pem(app.current_event.get("requestContext") or {})


def issuer_of(app: APIGatewayHttpResolver, configured: str | None) -> str:
    return issuer_for(configured, app.current_event.request_context.domain_name)


def request_url(app: APIGatewayHttpResolver) -> str:
    event = app.current_event
    return config_request_url(event.request_context.domain_name, event.get("rawPath"), header(app, "x-forwarded-proto"))


def audited(app: APIGatewayHttpResolver, denied: str, call: Callable[[], T], **fields: Any) -> T:
    """``call()``; an OAuth error it raises is audited as ``denied`` (naming the client only once
    it is authenticated, with the error's internal ``detail`` when it has one) with ``fields``, and
    re-raised for the resolver to answer."""
    try:
        return call()
    except OAuthError as exc:
        audit(denied, exc.error, client_id=exc.client_id, reason=exc.description, detail=exc.detail,
              **fields, **source(app))
        raise


def source(app: APIGatewayHttpResolver) -> dict[str, str | None]:
    """Who sent the request, for the audit trail."""
    http = app.current_event.raw_event.get("requestContext", {}).get("http", {})
    return {"source_ip": http.get("sourceIp"), "user_agent": (http.get("userAgent") or "")[:256] or None}
