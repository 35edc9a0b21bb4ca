"""Settings, read once from the environment into a typed object; nothing below handlers/ reads env."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit

from .oauth.jwk import SIGNING_ALGORITHMS
from .outbound import DEFAULT_DEADLINE

BACKENDS = ("embedded", "aws")
MAX_FETCH_DEADLINE = 10.0  # half the functions' timeout: a request also reads, signs and writes


class ConfigError(ValueError):
    """The deployment is misconfigured: fail at start, with a message naming the setting."""


def validate_issuer(issuer: str) -> str:
    """RFC 8414 §2: an https URL without query or fragment (http only on loopback, for local use)."""
    parts = urlsplit(issuer)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigError(f"issuer {issuer!r} must be an https URL (http only for loopback)")
    if parts.query or parts.fragment or not parts.hostname:
        raise ConfigError(f"issuer {issuer!r} must have a host and no query or fragment")
    return issuer.rstrip("/")


def issuer_for(configured: str | None, domain_name: str) -> str:
    """The configured issuer, or https://<the API's domain> as API Gateway reports it in the request
    context (set by API Gateway, not by the client's Host header)."""
    return configured or "https://" + domain_name


def request_url(domain_name: str, raw_path: str | None, forwarded_proto: str | None) -> str:
    """The URL a request was sent to, without query (what a DPoP proof's htu names): API Gateway
    serves https only; the embedded server states its scheme in X-Forwarded-Proto."""
    scheme = "http" if (forwarded_proto or "").strip().lower() == "http" else "https"
    return f"{scheme}://{domain_name}{raw_path or '/'}"


def client_certificate_pem(request_context: Mapping[str, Any]) -> str | None:
    """The PEM of the client certificate verified in the TLS handshake (RFC 8705 §2), or None. API
    Gateway sets requestContext.authentication.clientCert only on a custom domain with mutual TLS,
    after checking the chain against its truststore; the embedded server does the same."""
    authentication = request_context.get("authentication")
    certificate = authentication.get("clientCert") if isinstance(authentication, dict) else None
    pem = certificate.get("clientCertPem") if isinstance(certificate, dict) else None
    return pem if isinstance(pem, str) and pem else None


@dataclass(frozen=True)
class Settings:
    backend: str = "embedded"
    # None on AWS when the stack has no fixed issuer: it is then https://<API domain>, taken from
    # the API Gateway request context (set by API Gateway, not by the client's Host header).
    issuer: str | None = None
    data_dir: Path = Path(".tokenmint")
    signing_alg: str = "RS256"
    table_name: str | None = None
    signing_key_id: str | None = None
    region: str | None = None
    resource_cache_seconds: float = 30.0
    # Issuer → JWK Set of the parties whose software statements (RFC 7591 §2.3) are trusted.
    software_statement_issuers: dict[str, Any] = field(default_factory=dict)
    # The sample "agent tools" API and the Lambda authorizer (resource-server side).
    tools_resource: str | None = None  # its resource identifier; None: <issuer>/tools
    authorizer_routes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # route key → scopes
    authorizer_audience: str | None = None  # the resource the authorizer protects; None: tools
    check_revocation: bool = True  # resource servers in the stack consult the revocation store
    # How long API Gateway caches the authorizer's answers: a cached answer skips the per-request
    # DPoP proof, so the authorizer refuses DPoP-bound tokens unless this is 0.
    authorizer_cache_seconds: int = 0
    # Key lifecycle: the stack owning the keys (KMS tag, alias prefix), rotation, replica regions.
    stack_name: str = "tokenmint"
    key_rotation_days: int = 30
    key_replica_regions: tuple[str, ...] = ()
    # private_key_jwt: fetch jwks_uri from private/loopback addresses and over http (local development only)
    allow_private_jwks_uri: bool = False
    max_assertion_lifetime: int = 600  # seconds a client assertion may live (its exp - now)
    # Seconds an outbound fetch (a client's jwks_uri) may take in all, DNS included (outbound.py):
    # well inside the functions' 20 s timeout, so a slow host ends in invalid_client, counted.
    fetch_deadline: float = DEFAULT_DEADLINE
    # RFC 8705 §5: the base URL of the mutual-TLS endpoints (the API's custom domain with a truststore,
    # or `tokenmint serve --mtls-port`), published as mtls_endpoint_aliases. None: no separate mTLS host.
    mtls_base_url: str | None = None
    # Abuse resistance (oauth/throttle.py): failed client authentications per fixed window of
    # auth_failure_window seconds, per (client, source) and per source; registrations per source
    # and window. 0 turns a limit off.
    auth_failure_window: int = 60
    auth_failures_per_client_source: int = 30
    auth_failures_per_source: int = 100
    registrations_per_source: int = 20

    def __post_init__(self) -> None:
        if self.auth_failure_window < 1:
            raise ConfigError("TOKENMINT_AUTH_FAILURE_WINDOW must be at least 1 (seconds)")
        if not 0 < self.fetch_deadline <= MAX_FETCH_DEADLINE:
            raise ConfigError(f"TOKENMINT_FETCH_DEADLINE must be more than 0 and at most {MAX_FETCH_DEADLINE:g} "
                              "seconds (the functions time out after 20)")
        if min(self.auth_failures_per_client_source, self.auth_failures_per_source, self.registrations_per_source) < 0:
            raise ConfigError("TOKENMINT_AUTH_FAILURES_PER_CLIENT_SOURCE, TOKENMINT_AUTH_FAILURES_PER_SOURCE and "
                              "TOKENMINT_REGISTRATIONS_PER_SOURCE must be 0 (off) or more")
        if self.backend not in BACKENDS:
            raise ConfigError(f"TOKENMINT_BACKEND must be one of {', '.join(BACKENDS)}")
        if self.signing_alg not in SIGNING_ALGORITHMS:
            raise ConfigError(f"TOKENMINT_SIGNING_ALG must be one of {', '.join(SIGNING_ALGORITHMS)}")
        if self.issuer is not None:
            object.__setattr__(self, "issuer", validate_issuer(self.issuer))
        if self.mtls_base_url is not None:
            object.__setattr__(self, "mtls_base_url", _validate_mtls_base_url(self.mtls_base_url))
        if self.backend == "aws" and not (self.table_name and self.signing_key_id):
            raise ConfigError("TOKENMINT_TABLE and TOKENMINT_SIGNING_KEY_ID are required with the aws backend")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        try:
            cache_seconds = float(env.get("TOKENMINT_RESOURCE_CACHE_SECONDS", "30"))
        except ValueError:
            raise ConfigError("TOKENMINT_RESOURCE_CACHE_SECONDS must be a number") from None
        return cls(
            backend=env.get("TOKENMINT_BACKEND", "embedded"),
            issuer=env.get("TOKENMINT_ISSUER") or None,
            data_dir=Path(env.get("TOKENMINT_DATA_DIR", ".tokenmint")),
            signing_alg=env.get("TOKENMINT_SIGNING_ALG", "RS256"),
            table_name=env.get("TOKENMINT_TABLE") or None,
            signing_key_id=env.get("TOKENMINT_SIGNING_KEY_ID") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            resource_cache_seconds=cache_seconds,
            software_statement_issuers=_statement_issuers(env.get("TOKENMINT_SOFTWARE_STATEMENT_ISSUERS") or "{}"),
            tools_resource=env.get("TOKENMINT_TOOLS_RESOURCE") or None,
            authorizer_routes=_authorizer_routes(env.get("TOKENMINT_AUTHORIZER_ROUTES") or "{}"),
            authorizer_audience=env.get("TOKENMINT_AUTHORIZER_AUDIENCE") or None,
            check_revocation=(env.get("TOKENMINT_CHECK_REVOCATION", "true").lower() != "false"),
            authorizer_cache_seconds=_int(env, "TOKENMINT_AUTHORIZER_CACHE_SECONDS", 0),
            stack_name=env.get("TOKENMINT_STACK") or "tokenmint",
            key_rotation_days=_int(env, "TOKENMINT_KEY_ROTATION_DAYS", 30),
            key_replica_regions=tuple(r for r in (env.get("TOKENMINT_KEY_REPLICA_REGIONS") or "").split(",") if r),
            max_assertion_lifetime=_int(env, "TOKENMINT_MAX_ASSERTION_LIFETIME", 600),
            mtls_base_url=env.get("TOKENMINT_MTLS_BASE_URL") or None,
            **throttle_settings(env),
            **outbound_settings(env),
        )


class ThrottleSettings(TypedDict):
    auth_failure_window: int
    auth_failures_per_client_source: int
    auth_failures_per_source: int
    registrations_per_source: int


class OutboundSettings(TypedDict):
    fetch_deadline: float


def throttle_settings(env: Mapping[str, str]) -> ThrottleSettings:
    """The abuse-resistance fields of :class:`Settings` from ``env`` (``tokenmint serve`` reads them too)."""
    return {"auth_failure_window": _int(env, "TOKENMINT_AUTH_FAILURE_WINDOW", 60),
            "auth_failures_per_client_source": _int(env, "TOKENMINT_AUTH_FAILURES_PER_CLIENT_SOURCE", 30),
            "auth_failures_per_source": _int(env, "TOKENMINT_AUTH_FAILURES_PER_SOURCE", 100),
            "registrations_per_source": _int(env, "TOKENMINT_REGISTRATIONS_PER_SOURCE", 20)}


def outbound_settings(env: Mapping[str, str]) -> OutboundSettings:
    """The outbound-fetch fields of :class:`Settings` from ``env`` (``tokenmint serve`` reads them too)."""
    value = env.get("TOKENMINT_FETCH_DEADLINE") or str(DEFAULT_DEADLINE)
    try:
        return {"fetch_deadline": float(value)}
    except ValueError:
        raise ConfigError("TOKENMINT_FETCH_DEADLINE must be a number of seconds") from None


def _validate_mtls_base_url(url: str) -> str:
    """An https URL without query or fragment: mutual TLS is TLS, so never http, not even on loopback."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"TOKENMINT_MTLS_BASE_URL {url!r} must be an https URL without query or fragment")
    return url.rstrip("/")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name) or default)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number") from None


def _authorizer_routes(value: str) -> dict[str, tuple[str, ...]]:
    try:
        routes = json.loads(value)
    except ValueError:
        routes = None
    if not isinstance(routes, dict) or not all(isinstance(s, str) for s in routes.values()):
        raise ConfigError('TOKENMINT_AUTHORIZER_ROUTES must be a JSON object {"<METHOD> <path>": "scope1 scope2"}')
    return {route: tuple(scopes.split()) for route, scopes in routes.items()}


def _statement_issuers(value: str) -> dict[str, Any]:
    try:
        issuers = json.loads(value)
    except ValueError:
        issuers = None
    if not isinstance(issuers, dict) or not all(
            isinstance(jwks, dict) and isinstance(jwks.get("keys"), list) for jwks in issuers.values()):
        raise ConfigError('TOKENMINT_SOFTWARE_STATEMENT_ISSUERS must be a JSON object {"<issuer>": <JWK Set>}')
    return issuers
