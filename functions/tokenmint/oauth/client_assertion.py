"""JWT client authentication: private_key_jwt (RFC 7523 §2.2 and §3, RFC 7521 §4.2).

The client signs a short-lived assertion with a key registered as ``jwks`` or ``jwks_uri``. It is
accepted when it is signed with an allowed asymmetric algorithm by one of the client's keys,
``iss`` = ``sub`` = the client id, ``aud`` names this server, it expires within the configured
maximum lifetime, and its ``jti`` has not been seen before (single use, enforced atomically).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .errors import InvalidClientError
from .json_text import unverified_jwt
from .jwk import CLOCK_SKEW, SIGNING_ALGORITHMS, numeric_date, remember_until

if TYPE_CHECKING:
    from ..ports import ReplayCache
    from .models import Client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = tuple(SIGNING_ALGORITHMS)  # asymmetric only: never none or HMAC
MAX_ASSERTION_LIFETIME = 600  # the MCP SDK signs 300 s assertions
MAX_ASSERTION_LENGTH = 8192


class JwksFetcher(Protocol):
    def fetch(self, url: str) -> list[dict[str, Any]]:
        """The keys at ``url``; OSError or ValueError when there are none to be had (a ``detail``
        attribute, if any, goes to the audit log, never to the client)."""


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
        if len(assertion) > MAX_ASSERTION_LENGTH:
            raise _refuse("the client assertion is too large")
        try:
            header, unverified = unverified_jwt(assertion)
        except ValueError:
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
        accepted_until = self._check_times(claims, client, now)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise _refuse("the client assertion needs a jti", client)
        if not self.replay.use_once(f"{client.client_id}#{jti}", remember_until(accepted_until)):
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
                # One answer whatever failed: which host refused, answered 404 or timed out is for
                # the audit log, not for a client probing the network through its jwks_uri.
                raise InvalidClientError("the client's jwks_uri cannot be used", client_id=client.client_id,
                                         detail=getattr(exc, "detail", None) or repr(exc)) from None
        return []

    def _verified_claims(self, assertion: str, header: dict[str, Any], client: Client,
                         audiences: tuple[str, ...]) -> dict[str, Any]:
        import jwt

        alg, kid = header["alg"], header.get("kid")
        candidates = [k for k in self.client_keys(client) if isinstance(k, dict)
                      and k.get("kty") == SIGNING_ALGORITHMS[alg][0] and (kid is None or k.get("kid") == kid)
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

    def _check_times(self, claims: dict[str, Any], client: Client, now: int) -> float:
        """Refuse an assertion outside its times; else the instant until which it is accepted."""
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
        return exp + CLOCK_SKEW  # accepted while exp > now - CLOCK_SKEW


@dataclass
class HttpsJwksFetcher:
    """A client's ``jwks_uri`` (RFC 7591 §2), cached ``cache_seconds``. ``get_document`` does the
    fetching (tokenmint.outbound.fetch_json with its policy: https to public addresses only, one
    total deadline, no redirects, bounded; OSError when it fails); here the answer must be a JWK Set.
    A failure is remembered ``failure_seconds``: a host that stalls to the deadline costs one wait,
    not one per request (the embedded server handles one request at a time)."""

    get_document: Callable[[str], dict[str, Any]]
    cache_seconds: float = 300.0
    failure_seconds: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, tuple[float, list[dict[str, Any]] | Exception]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fetch(self, url: str) -> list[dict[str, Any]]:
        cached = self._cache.get(url)
        if cached:
            at, value = cached
            if isinstance(value, Exception):
                if self.clock() - at < self.failure_seconds:
                    raise value
            elif self.clock() - at < self.cache_seconds:
                return value
        try:
            keys = self.get_document(url).get("keys")
            if not isinstance(keys, list):
                raise ValueError("jwks_uri did not answer a JWK Set (RFC 7517 §5: an object with keys)")
        except (OSError, ValueError) as exc:
            self._remember(url, exc)
            raise
        keys = [key for key in keys if isinstance(key, dict)]
        self._remember(url, keys)
        return keys

    def _remember(self, url: str, value: list[dict[str, Any]] | Exception) -> None:
        with self._lock:
            if len(self._cache) > 1000:
                self._cache.clear()
            self._cache[url] = (self.clock(), value)
