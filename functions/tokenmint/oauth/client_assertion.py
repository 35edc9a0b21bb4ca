"""JWT client authentication: private_key_jwt (RFC 7523 §2.2 and §3, RFC 7521 §4.2).

The client signs a short-lived assertion with a key registered as ``jwks`` or ``jwks_uri``. It is
accepted when it is signed with an allowed asymmetric algorithm by one of the client's keys,
``iss`` = ``sub`` = the client id, ``aud`` names this server, it expires within the configured
maximum lifetime, and its ``jti`` has not been seen before (single use, enforced atomically).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from .errors import InvalidClientError
from .jwk import numeric_date

if TYPE_CHECKING:
    from .models import Client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")  # never none or HMAC
_KEY_TYPES = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}
MAX_ASSERTION_LIFETIME = 600  # the MCP SDK signs 300 s assertions
CLOCK_SKEW = 60
MAX_ASSERTION_LENGTH = 8192


class ReplayCache(Protocol):
    def use_once(self, key: str, expires_at: int) -> bool:
        """Record ``key`` until ``expires_at``; False if it was already recorded (atomically)."""


class JwksFetcher(Protocol):
    def fetch(self, url: str) -> list[dict[str, Any]]: ...


def _refuse(description: str = "client authentication failed", client: Client | None = None) -> InvalidClientError:
    return InvalidClientError(description, client_id=client.client_id if client else None)


@dataclass
class ClientAssertionVerifier:
    """Authenticates a client by its assertion (§3); every failure is ``invalid_client``."""

    replay: ReplayCache
    jwks_fetcher: JwksFetcher
    max_lifetime: int = MAX_ASSERTION_LIFETIME

    def authenticate(self, assertion: str, claimed_client_id: str | None, client_for: Callable[[str], Client | None],
                     *, audiences: tuple[str, ...], now: int) -> Client:
        import jwt

        if len(assertion) > MAX_ASSERTION_LENGTH:
            raise _refuse("the client assertion is too large")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _refuse("the client assertion is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in ASSERTION_ALGORITHMS:
            raise _refuse(f"client assertions must be signed with {', '.join(ASSERTION_ALGORITHMS)}")
        issuer, subject = unverified.get("iss"), unverified.get("sub")
        if not isinstance(issuer, str) or issuer != subject or len(issuer) > 128:
            raise _refuse("the client assertion's iss and sub must both be the client_id")
        if claimed_client_id is not None and claimed_client_id != issuer:
            raise _refuse("client_id does not match the client assertion")
        client = client_for(issuer)
        if client is None or client.auth_method != "private_key_jwt":
            raise _refuse()  # the assertion is not verified yet: say nothing about the client
        claims = self._verified_claims(assertion, header, client, audiences)
        self._check_times(claims, client, now)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise _refuse("the client assertion needs a jti", client)
        if not self.replay.use_once(f"{client.client_id}#{jti}", int(claims["exp"]) + CLOCK_SKEW):
            raise _refuse("the client assertion was already used", client)
        if client.disabled:
            raise _refuse("this client is disabled", client)
        return client

    def client_keys(self, client: Client) -> list[dict[str, Any]]:
        if client.metadata.get("jwks"):
            return list(client.metadata["jwks"].get("keys", []))
        if client.metadata.get("jwks_uri"):
            try:
                return self.jwks_fetcher.fetch(client.metadata["jwks_uri"])
            except (OSError, ValueError) as exc:
                raise _refuse(f"the client's jwks_uri cannot be used: {exc}", client) from None
        return []

    def _verified_claims(self, assertion: str, header: dict[str, Any], client: Client,
                         audiences: tuple[str, ...]) -> dict[str, Any]:
        import jwt

        alg, kid = header["alg"], header.get("kid")
        candidates = [k for k in self.client_keys(client) if isinstance(k, dict)
                      and k.get("kty") == _KEY_TYPES[alg] and (kid is None or k.get("kid") == kid)
                      and k.get("alg", alg) == alg]
        for jwk in candidates:  # no kid (the MCP SDK sends none): try each key of the right type
            try:
                key = jwt.PyJWK(jwk, algorithm=alg).key
                return jwt.decode(assertion, key, algorithms=[alg], audience=list(audiences),
                                  options={"require": ["exp"], "verify_exp": False, "verify_nbf": False,
                                           "verify_iat": False})
            except jwt.InvalidAudienceError:
                raise _refuse("the client assertion's aud must be this server's issuer or token endpoint",
                              client) from None
            except (jwt.PyJWTError, TypeError, ValueError):
                continue
        raise _refuse("the client assertion is not signed by a key registered for this client", client)

    def _check_times(self, claims: dict[str, Any], client: Client, now: int) -> None:
        try:
            exp = numeric_date(claims["exp"])
            iat = numeric_date(claims.get("iat", now))
            nbf = numeric_date(claims.get("nbf", now))
        except ValueError:
            raise _refuse("the client assertion's times are malformed", client) from None
        if exp <= now - CLOCK_SKEW:
            raise _refuse("the client assertion has expired", client)
        if exp > now + self.max_lifetime + CLOCK_SKEW:
            raise _refuse(f"client assertions may live at most {self.max_lifetime} seconds", client)
        if iat > now + CLOCK_SKEW or nbf > now + CLOCK_SKEW:
            raise _refuse("the client assertion is not yet valid", client)


@dataclass
class HttpsJwksFetcher:
    """Fetches a client's ``jwks_uri``: https only, public addresses only (no SSRF into the VPC,
    the metadata service or loopback, unless ``allow_private`` for local development), bounded in
    size and time, cached. (A DNS answer that changes between the check and the connection is not
    caught; the short timeout and size limit bound what that could do.)"""

    allow_private: bool = False
    timeout: float = 3.0
    max_bytes: int = 64 * 1024
    cache_seconds: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, tuple[float, list[dict[str, Any]]]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fetch(self, url: str) -> list[dict[str, Any]]:
        cached = self._cache.get(url)
        if cached and self.clock() - cached[0] < self.cache_seconds:
            return cached[1]
        parts = urlsplit(url)
        if parts.scheme != "https" and not (self.allow_private and parts.scheme == "http"):
            raise ValueError("jwks_uri must be https")
        self._check_host(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        import urllib.request  # only jwks_uri clients need it: keep it off the token function's cold start

        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            body = response.read(self.max_bytes + 1)
        if len(body) > self.max_bytes:
            raise ValueError("jwks_uri document is too large")
        keys = json.loads(body).get("keys")
        if not isinstance(keys, list):
            raise ValueError("jwks_uri did not return a JWK Set")
        with self._lock:
            if len(self._cache) > 1000:
                self._cache.clear()
            self._cache[url] = (self.clock(), keys)
        return keys

    def _check_host(self, host: str, port: int) -> None:
        import ipaddress
        import socket

        if self.allow_private:
            return
        for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP):
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global:
                raise ValueError("jwks_uri must resolve to public addresses")
