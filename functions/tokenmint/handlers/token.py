"""Token endpoint (RFC 6749 §3.2, §4.4): POST /token → a short-lived, audience-bound JWT."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths

from .. import runtime
from ..oauth.client_credentials import ClientCredentialsGrant
from ..oauth.metadata import TOKEN_PATH
from ..observability import audit, audit_source, logger, metrics
from . import http

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = http.create_resolver()
http.allow_only(app, TOKEN_PATH, ("POST",))


@app.post(TOKEN_PATH)
def handle_token() -> Response:
    backend = runtime.backend()
    grant = ClientCredentialsGrant(backend.clients, backend.resources, backend.keys, backend.clock, backend.assertions,
                                   replay=backend.clients, throttle=backend.throttle)
    issuer = http.issuer_of(app, backend.settings.issuer)
    result = http.audited(app, "token.denied", lambda: grant.create_token_response(
        http.form_body(app), http.header(app, "authorization"), issuer, dpop=http.header(app, "dpop"),
        endpoint_urls=(issuer + TOKEN_PATH, http.request_url(app)), source_ip=http.source(app)["source_ip"],
        certificate=http.client_certificate(app)))
    claims = result.token.claims
    audit("token.issued", "success", client_id=result.client.client_id, resource=claims["aud"],
          scope=claims["scope"], jti=claims["jti"], exp=claims["exp"], token_type=result.token.token_type,
          **http.source(app))
    return http.json_response(200, result.body(), http.NO_STORE)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@audit_source
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
