"""Revocation endpoint (RFC 7009 §2): POST /revoke → 200, whatever the token was."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths

from .. import runtime
from ..oauth.metadata import REVOCATION_PATH
from ..oauth.revocation import TokenStatusEndpoints
from ..observability import audit, audit_source, logger, metrics
from . import http

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = http.create_resolver()
http.allow_only(app, REVOCATION_PATH, ("POST",))


@app.post(REVOCATION_PATH)
def handle_revocation() -> Response:
    backend = runtime.backend()
    endpoints = TokenStatusEndpoints(backend.clients, backend.revocations, backend.keys, backend.clock,
                                     backend.assertions, backend.throttle)
    result = http.audited(app, "token.revocation_denied", lambda: endpoints.revoke(
        http.form_body(app), http.header(app, "authorization"), http.issuer_of(app, backend.settings.issuer),
        source_ip=http.source(app)["source_ip"], certificate=http.client_certificate(app)))
    audit("token.revoked" if result.revoked_jti else "token.revocation_ignored", "success",
          client_id=result.client.client_id, jti=result.revoked_jti, **http.source(app))
    return Response(status_code=200, headers=http.NO_STORE, body="")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@audit_source
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
