"""Authorization server metadata (RFC 8414 §2): what clients discover instead of hard-coding paths."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .client_credentials import GRANT_TYPE
from .jwk import SIGNING_ALGORITHMS
from .models import SUPPORTED_AUTH_METHODS

from .client_credentials import TOKEN_PATH
JWKS_PATH = "/jwks.json"
AUTHORIZATION_PATH = "/authorize"
REGISTRATION_PATH = "/register"
REVOCATION_PATH = "/revoke"
INTROSPECTION_PATH = "/introspect"
METADATA_PATHS = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")


def authorization_server_metadata(issuer: str, scopes: Iterable[str]) -> dict[str, Any]:
    return {
        "issuer": issuer,
        # There is no user flow, but MCP's SDKs (and other clients) discard metadata without an
        # authorization endpoint; this one answers every request with a clear OAuth error.
        "authorization_endpoint": issuer + AUTHORIZATION_PATH,
        "token_endpoint": issuer + TOKEN_PATH,
        "jwks_uri": issuer + JWKS_PATH,
        # RFC 7591 §3: registration needs an initial access token; it is never open.
        "registration_endpoint": issuer + REGISTRATION_PATH,
        "revocation_endpoint": issuer + REVOCATION_PATH,  # RFC 7009
        "revocation_endpoint_auth_methods_supported": list(SUPPORTED_AUTH_METHODS),
        "introspection_endpoint": issuer + INTROSPECTION_PATH,  # RFC 7662
        "introspection_endpoint_auth_methods_supported": list(SUPPORTED_AUTH_METHODS),
        "grant_types_supported": [GRANT_TYPE],
        "token_endpoint_auth_methods_supported": list(SUPPORTED_AUTH_METHODS),
        # Algorithms accepted for client assertions (RFC 7523), never "none" (RFC 8414 §2).
        "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        "scopes_supported": sorted(set(scopes)),
        # No authorization endpoint: there is no user, so no response type is supported.
        "response_types_supported": [],
    }
