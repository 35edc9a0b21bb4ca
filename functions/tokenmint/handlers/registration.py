"""Client registration (RFC 7591 §3) and client configuration (RFC 7592 §2) endpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths

from .. import runtime
from ..oauth.metadata import REGISTRATION_PATH
from ..oauth.registration import (
    MAX_METADATA_BYTES,
    ClientRegistrationEndpoint,
    RegistrationResponse,
    SoftwareStatementVerifier,
)
from ..observability import audit, audit_source, logger, metrics
from . import http

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

CLIENT_PATH = REGISTRATION_PATH + "/<client_id>"

app = http.create_resolver()
http.allow_only(app, REGISTRATION_PATH, ("POST",))
http.allow_only(app, CLIENT_PATH, ("GET", "PUT", "DELETE"))


def _endpoint() -> ClientRegistrationEndpoint:
    backend = runtime.backend()
    statements = SoftwareStatementVerifier(backend.settings.software_statement_issuers)
    return ClientRegistrationEndpoint(backend.clients, backend.registrations, backend.clock, statements,
                                      backend.throttle)


def _source_ip() -> str | None:
    return http.source(app)["source_ip"]


def _body() -> bytes:
    return http.raw_body(app, MAX_METADATA_BYTES)


def _answer(action: str, operation: Callable[[], RegistrationResponse]) -> Response:
    """Run ``operation``, audit the outcome, and render it (errors through the resolver)."""
    result = http.audited(app, "registration.denied", operation, operation=action)
    client = result.client
    audit(f"registration.{action}", "success", client_id=client.client_id, scope=" ".join(client.scopes),
          auth_method=client.auth_method, **http.source(app))
    if result.body is None:
        return Response(status_code=result.status, headers=http.NO_STORE)
    return http.json_response(result.status, result.body, http.NO_STORE)


@app.post(REGISTRATION_PATH)
def handle_register() -> Response:
    issuer = http.issuer_of(app, runtime.backend().settings.issuer)
    return _answer("created", lambda: _endpoint().register(
        _body(), http.header(app, "content-type"), http.header(app, "authorization"), issuer,
        source_ip=_source_ip()))


@app.route(CLIENT_PATH, method=["GET", "HEAD"])
def handle_read(client_id: str) -> Response:
    issuer = http.issuer_of(app, runtime.backend().settings.issuer)
    return _answer("read", lambda: _endpoint().read(client_id, http.header(app, "authorization"), issuer,
                                                    source_ip=_source_ip()))


@app.put(CLIENT_PATH)
def handle_update(client_id: str) -> Response:
    issuer = http.issuer_of(app, runtime.backend().settings.issuer)
    return _answer("updated", lambda: _endpoint().update(
        client_id, _body(), http.header(app, "content-type"), http.header(app, "authorization"), issuer,
        source_ip=_source_ip()))


@app.delete(CLIENT_PATH)
def handle_delete(client_id: str) -> Response:
    return _answer("deleted", lambda: _endpoint().delete(client_id, http.header(app, "authorization"),
                                                         source_ip=_source_ip()))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@audit_source
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
