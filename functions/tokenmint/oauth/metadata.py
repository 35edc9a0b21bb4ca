"""Authorization server metadata (RFC 8414 §2): what clients discover instead of hard-coding paths."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .client_credentials import GRANT_TYPE, TOKEN_PATH
from .dpop import DPOP_ALGORITHMS
from .jwk import SIGNING_ALGORITHMS
from .models import MTLS_AUTH_METHODS, SUPPORTED_AUTH_METHODS

JWKS_PATH = "/jwks.json"
AUTHORIZATION_PATH = "/authorize"
REGISTRATION_PATH = "/register"
REVOCATION_PATH = "/revoke"
INTROSPECTION_PATH = "/introspect"
METADATA_PATHS = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")


# Mutual TLS methods are published only where a TLS layer passes client certificates on.
TLS_FREE_AUTH_METHODS = [m for m in SUPPORTED_AUTH_METHODS if m not in MTLS_AUTH_METHODS]


def authorization_server_metadata(issuer: str, scopes: Iterable[str], mtls_base_url: str | None = None
                                  ) -> dict[str, Any]:
    """``mtls_base_url``: where the same endpoints answer with mutual TLS (RFC 8705 §5), when that
    is another host than the issuer's (API Gateway's custom domain with a truststore)."""
    metadata: dict[str, Any] = {
        "issuer": issuer,
        # There is no user flow, but MCP's SDKs (and other clients) discard metadata without an
        # authorization endpoint; this one answers every request with a clear OAuth error.
        "authorization_endpoint": issuer + AUTHORIZATION_PATH,
        "token_endpoint": issuer + TOKEN_PATH,
        "jwks_uri": issuer + JWKS_PATH,
        # RFC 7591 §3: registration needs an initial access token; it is never open.
        "registration_endpoint": issuer + REGISTRATION_PATH,
        "revocation_endpoint": issuer + REVOCATION_PATH,  # RFC 7009
        "revocation_endpoint_auth_methods_supported": list(TLS_FREE_AUTH_METHODS),
        "introspection_endpoint": issuer + INTROSPECTION_PATH,  # RFC 7662
        "introspection_endpoint_auth_methods_supported": list(TLS_FREE_AUTH_METHODS),
        "grant_types_supported": [GRANT_TYPE],
        "token_endpoint_auth_methods_supported": list(TLS_FREE_AUTH_METHODS),
        # Algorithms accepted for client assertions (RFC 7523), never "none" (RFC 8414 §2).
        "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        # RFC 9449 §5.1: DPoP proofs are accepted at the token endpoint; tokens get cnf.jkt.
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
        "scopes_supported": sorted(set(scopes)),
        # No authorization endpoint: there is no user, so no response type is supported.
        "response_types_supported": [],
    }
    if mtls_base_url:  # mutual TLS is offered (RFC 8705): its methods, bound tokens, where to connect
        for name in ("token_endpoint_auth_methods_supported", "revocation_endpoint_auth_methods_supported",
                     "introspection_endpoint_auth_methods_supported"):
            metadata[name] = [*metadata[name], *MTLS_AUTH_METHODS]
        metadata["tls_client_certificate_bound_access_tokens"] = True  # §3.3
        metadata["mtls_endpoint_aliases"] = {name: mtls_base_url + path for name, path in (  # §5
            ("token_endpoint", TOKEN_PATH), ("revocation_endpoint", REVOCATION_PATH),
            ("introspection_endpoint", INTROSPECTION_PATH))}
    return metadata
