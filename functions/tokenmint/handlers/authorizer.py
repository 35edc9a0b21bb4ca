"""A Lambda authorizer for API Gateway HTTP APIs (REQUEST type, payload 2.0, simple responses),
built on ``tokenmint.verifier``: each route needs the scopes TOKENMINT_AUTHORIZER_ROUTES names.

API Gateway caches the answer per identity source. The template's identity sources are the
``Authorization`` header *and* ``$context.routeKey``, so an answer for one route (and its scopes)
is never reused for another; a revoked token can stay authorised for the cache's TTL.

HTTP APIs cannot shape an authorizer's denial: API Gateway answers 401 when the header is missing
and 403 ``{"message":"Forbidden"}`` when this function denies. The RFC 6750 reason
(``invalid_token``, ``insufficient_scope``) is in the audit log; an API that must send
``WWW-Authenticate`` challenges (an MCP server) verifies in-function, like handlers/tools.py.
"""

from __future__ import annotations

from typing import Any

from .. import runtime
from ..config import issuer_for
from ..observability import audit, logger
from ..verifier import LocalKeys, StoreRevocationCheck, TokenRejected, TokenVerifier, bearer_token

def _deny() -> dict[str, Any]:
    return {"isAuthorized": False}


@logger.inject_lambda_context
def lambda_handler(event: dict, context: object) -> dict:
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
                             revocation=revocation)
    headers = event.get("headers") or {}
    try:
        verified = verifier.verify(bearer_token(headers.get("authorization")), required_scopes=required)
    except TokenRejected as rejected:
        audit("authorizer.denied", rejected.error, reason=rejected.description, **source)
        return _deny()
    audit("authorizer.allowed", "success", client_id=verified.client_id, jti=verified.jti, **source)
    return {"isAuthorized": True, "context": {"client_id": verified.client_id, "scope": " ".join(verified.scopes),
                                              "sub": str(verified.claims.get("sub")), "jti": verified.jti}}
