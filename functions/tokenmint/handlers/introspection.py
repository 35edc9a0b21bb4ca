"""Introspection endpoint (RFC 7662 §2): POST /introspect → the token's state, for permitted callers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths

from .. import runtime
from ..oauth.metadata import INTROSPECTION_PATH
from ..oauth.revocation import TokenStatusEndpoints
from ..observability import audit, audit_source, logger, metrics
from . import http

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = http.create_resolver()
http.allow_only(app, INTROSPECTION_PATH, ("POST",))


@app.post(INTROSPECTION_PATH)
def handle_introspection() -> Response:
    backend = runtime.backend()
    endpoints = TokenStatusEndpoints(backend.clients, backend.revocations, backend.keys, backend.clock,
                                     backend.assertions, backend.throttle)
    result = http.audited(app, "token.introspection_denied", lambda: endpoints.introspect(
        http.form_body(app), http.header(app, "authorization"), http.issuer_of(app, backend.settings.issuer),
        source_ip=http.source(app)["source_ip"], certificate=http.client_certificate(app)))
    audit("token.introspected", "success", client_id=result.caller.client_id, active=result.body["active"],
          jti=result.body.get("jti"), **http.source(app))
    return http.json_response(200, result.body, http.NO_STORE)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@audit_source
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
