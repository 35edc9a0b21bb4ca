"""A Lambda authorizer for API Gateway HTTP APIs (REQUEST type, payload 2.0, simple responses),
built on ``tokenmint.verifier``: each route needs the scopes TOKENMINT_AUTHORIZER_ROUTES names.

API Gateway caches the answer per identity source. The template's identity sources are the
``Authorization`` header *and* ``$context.routeKey``, so an answer for one route (and its scopes)
is never reused for another; a revoked token can stay authorised for the cache's TTL. DPoP-bound
tokens (RFC 9449) are checked with the request's proof, certificate-bound ones (RFC 8705) with the
connection's certificate, and both only accepted when that cache is off: a cached answer would let
the token through without a fresh proof, or over another connection.

HTTP APIs cannot shape an authorizer's denial: API Gateway answers 401 when the header is missing
and 403 ``{"message":"Forbidden"}`` when this function denies. The RFC 6750 reason
(``invalid_token``, ``insufficient_scope``) is in the audit log; an API that must send
``WWW-Authenticate`` challenges (an MCP server) verifies in-function, like handlers/tools.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import runtime
from ..config import client_certificate_pem, issuer_for, request_url
from ..observability import audit, audit_source, logger, metrics
from ..verifier import LocalKeys, StoreRevocationCheck, TokenRejected, TokenVerifier

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


def _deny() -> dict[str, Any]:
    return {"isAuthorized": False}


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@audit_source
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    backend = runtime.backend()
    settings = backend.settings
    request = event.get("requestContext") or {}
    route = event.get("routeKey", "")
    source = {"source_ip": (request.get("http") or {}).get("sourceIp"), "route": route}
    required = settings.authorizer_routes.get(route)
    if required is None:  # a route nobody configured is closed, not open
        audit("authorizer.denied", "unconfigured_route", **source)
        return _deny()
    issuer = issuer_for(settings.issuer, str(request.get("domainName", "")))
    audience = settings.authorizer_audience or settings.tools_resource or issuer + "/tools"
    revocation = StoreRevocationCheck(backend.clients, backend.revocations) if settings.check_revocation else None
    verifier = TokenVerifier(issuer=issuer, audience=audience, keys=LocalKeys(backend.keys.public_jwks),
                             revocation=revocation, dpop_replay=backend.clients)
    headers = event.get("headers") or {}
    url = request_url(str(request.get("domainName", "")), event.get("rawPath", ""), headers.get("x-forwarded-proto"))
    try:
        verified = verifier.verify_request(headers.get("authorization"),
                                           method=(request.get("http") or {}).get("method", ""), url=url,
                                           dpop=headers.get("dpop"), certificate=client_certificate_pem(request),
                                           required_scopes=required)
    except TokenRejected as rejected:
        audit("authorizer.denied", rejected.error, reason=rejected.description, **source)
        return _deny()
    if verified.confirmation and settings.authorizer_cache_seconds > 0:
        # API Gateway would reuse this answer for the same Authorization header, on any connection
        # and without a new DPoP proof: a bound token's check must run on every request.
        audit("authorizer.denied", "invalid_token", client_id=verified.client_id, **source,
              reason="sender-constrained tokens need AuthorizerCacheSeconds=0 (a cached answer skips the proof)")
        return _deny()
    audit("authorizer.allowed", "success", client_id=verified.client_id, jti=verified.jti, **source)
    return {"isAuthorized": True, "context": {"client_id": verified.client_id, "scope": " ".join(verified.scopes),
                                              "sub": str(verified.claims.get("sub")), "jti": verified.jti}}
