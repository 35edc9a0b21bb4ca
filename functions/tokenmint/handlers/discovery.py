"""Discovery: authorization server metadata (RFC 8414 §3), the JWKS (RFC 7517 §5) and the API's
OpenAPI description. Cacheable, served from the key store's published keys: no KMS call per request."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths

from .. import runtime
from ..keys import JWKS_MAX_AGE
from ..oauth.errors import OAuthError
from ..oauth.metadata import AUTHORIZATION_PATH, JWKS_PATH, METADATA_PATHS, authorization_server_metadata
from ..observability import audit_source, logger, metrics
from ..routes import OPENAPI_PATH
from . import http

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# Verifiers may cache the JWKS this long; a new key is published for longer before it signs.
CACHEABLE = {"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"}

app = http.create_resolver()
for _path in (*METADATA_PATHS, JWKS_PATH, OPENAPI_PATH):
    http.allow_only(app, _path, ("GET",))


def handle_metadata() -> Response:
    backend = runtime.backend()
    scopes = {scope for resource in backend.resources.list_resources() for scope in resource.scopes}
    metadata = authorization_server_metadata(http.issuer_of(app, backend.settings.issuer), scopes,
                                             backend.settings.mtls_base_url)
    return http.json_response(200, metadata, CACHEABLE)


for _path in METADATA_PATHS:
    app.route(_path, method=["GET", "HEAD"])(handle_metadata)


@app.route(JWKS_PATH, method=["GET", "HEAD"])
def handle_jwks() -> Response:
    keys = runtime.backend().keys.public_jwks()
    return http.json_response(200, {"keys": keys}, CACHEABLE, content_type="application/jwk-set+json")


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The packaged openapi.json, read on first use (not at import: cold start)."""
    return json.loads(resources.files("tokenmint").joinpath("openapi.json").read_text(encoding="utf-8"))


@app.route(OPENAPI_PATH, method=["GET", "HEAD"])
def handle_openapi() -> Response:
    """The OpenAPI description, its ``servers`` naming this issuer (as the metadata does)."""
    issuer = http.issuer_of(app, runtime.backend().settings.issuer)
    return http.json_response(200, {**openapi_document(), "servers": [{"url": issuer}]}, CACHEABLE)


http.allow_only(app, AUTHORIZATION_PATH, ("GET", "POST"))


class UnsupportedResponseTypeError(OAuthError):
    error = "unsupported_response_type"


@app.route(AUTHORIZATION_PATH, method=["GET", "HEAD", "POST"])
def handle_authorization() -> Response:
    """RFC 6749 §4.1.2.1: no response type is supported. Without a registered redirect URI the
    error is shown here, never redirected."""
    raise UnsupportedResponseTypeError(
        "this authorization server has no user-facing flows: use the client_credentials grant at the token endpoint")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@audit_source
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
