"""Access token verification for resource servers (RFC 9068 §4, RFC 6750 §3.1), usable by any
Python workload: an API, an MCP server (see :class:`McpTokenVerifier`), a Lambda authorizer.

A token is accepted when its signature verifies with a key from the issuer's JWKS, its header is
``typ: at+jwt``, ``iss`` is the issuer, ``aud`` is exactly this resource, it is within its
lifetime (with a small skew), and it carries the required scopes. Revocation is checked only when
a :class:`RevocationCheck` is given; without one, a revoked token stays valid until it expires.

Sender-constrained tokens (``cnf``) are accepted only with their proof: :meth:`TokenVerifier.verify_request`
checks a DPoP proof (RFC 9449 §7) for ``cnf.jkt``; :meth:`TokenVerifier.verify`, which sees the
token alone, refuses bound tokens, so code that cannot check a proof never accepts a stolen one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import jwt

from .oauth.access_token import ACCESS_TOKEN_TYP
from .oauth.dpop import DPOP_ALGORITHMS, InvalidDpopProofError, verify_proof
from .oauth.errors import challenge
from .oauth.json_text import unverified_jwt
from .oauth.jwk import SIGNING_ALGORITHMS, numeric_date
from .outbound import FetchError, FetchPolicy, fetch_json

if TYPE_CHECKING:
    from .ports import ReplayCache

ALGORITHMS = tuple(SIGNING_ALGORITHMS)  # asymmetric only: never none or HMAC
DEFAULT_LEEWAY = 30  # seconds of clock skew tolerated on exp, nbf and iat
MAX_TOKEN_LENGTH = 8192
_log = logging.getLogger(__name__)


class TokenRejected(Exception):
    """Why a request's token is refused, as RFC 6750 §3.1 names it: ``invalid_token`` (401) or
    ``insufficient_scope`` (403, with the ``scope`` the request needs)."""

    def __init__(self, error: str, description: str, scope: str | None = None, *, scheme: str = "Bearer") -> None:
        super().__init__(description)
        self.error, self.description, self.scope, self.scheme = error, description, scope, scheme

    @property
    def status_code(self) -> int:
        return 403 if self.error == "insufficient_scope" else 401

    def challenge(self, resource_metadata: str | None = None) -> str:
        """The ``WWW-Authenticate`` value (RFC 6750 §3, RFC 9449 §7.1, RFC 9728 §5.1)."""
        first = {"algs": " ".join(DPOP_ALGORITHMS)} if self.scheme == "DPoP" else {"realm": "tokenmint"}
        return challenge(self.scheme, **first, error=self.error, error_description=self.description,
                         scope=self.scope or None, resource_metadata=resource_metadata)


def invalid(description: str, scheme: str = "Bearer") -> TokenRejected:
    return TokenRejected("invalid_token", description, scheme=scheme)


def invalid_proof(description: str) -> TokenRejected:
    return TokenRejected("invalid_dpop_proof", description, scheme="DPoP")


@dataclass(frozen=True)
class VerifiedToken:
    claims: dict[str, Any]
    token: str = field(repr=False)  # the bearer credential itself: never log it

    @property
    def client_id(self) -> str:
        return str(self.claims["client_id"])

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(str(self.claims.get("scope", "")).split())

    @property
    def audience(self) -> str:
        return str(self.claims["aud"])

    @property
    def jti(self) -> str:
        return str(self.claims["jti"])

    @property
    def issued_at(self) -> int:
        return int(self.claims["iat"])

    @property
    def expires_at(self) -> int:
        return int(self.claims["exp"])

    @property
    def confirmation(self) -> dict[str, Any]:
        """The key the token is bound to (RFC 7800 ``cnf``); empty for a plain bearer token."""
        cnf = self.claims.get("cnf")
        return cnf if isinstance(cnf, dict) else {}


class KeySource(Protocol):
    def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The verification key for ``kid`` (refreshing if it is unknown), or None."""


class _DeclaredJwk(jwt.PyJWK):
    """A PyJWK that keeps the JWK's own ``alg``: PyJWK fills in a default when the JWK names none."""

    def __init__(self, jwk: dict[str, Any]) -> None:
        super().__init__(jwk)
        self.declared_alg: object = jwk.get("alg")


def _select(keys: list[dict[str, Any]], kid: str | None) -> jwt.PyJWK | None:
    for jwk in keys:
        if kid is None or jwk.get("kid") == kid:
            try:
                return _DeclaredJwk(jwk)
            except (jwt.PyJWTError, ValueError, TypeError):
                continue
    return None


@dataclass
class LocalKeys:
    """Keys from a callable (the authorization server's own key store, or a fixed list)."""

    public_jwks: Callable[[], list[dict[str, Any]]]

    def key(self, kid: str | None) -> jwt.PyJWK | None:
        return _select(self.public_jwks(), kid)


@dataclass
class RemoteJwks:
    """The issuer's ``jwks_uri``, cached ``ttl`` seconds and re-fetched at once for an unknown
    ``kid`` (at most every ``min_refresh_interval`` seconds), so a rotated key is picked up
    without letting made-up kids trigger a fetch per request. A failed fetch keeps the old keys.
    ``policy``: tokenmint.outbound's, for a URL the operator chose (one total deadline, no
    redirects, http only to loopback)."""

    url: str
    ttl: float = 300.0
    min_refresh_interval: float = 10.0
    policy: FetchPolicy = FetchPolicy.configured()
    clock: Callable[[], float] = time.monotonic
    _keys: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _fetched_at: float = field(default=float("-inf"), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _refresh(self, *, early: bool) -> None:
        """Fetch the JWKS: when the cache is stale, or ``early`` for an unknown kid (rate-limited)."""
        with self._lock:
            age = self.clock() - self._fetched_at
            if age < (self.min_refresh_interval if early else self.ttl):
                return  # another thread refreshed meanwhile, or an early fetch is not allowed yet
            self._fetched_at = self.clock()
            try:
                keys = self._download().get("keys")
            except FetchError as exc:  # keep serving the keys we have; the next refresh tries again
                _log.warning("the issuer's JWKS could not be fetched: %s", exc.detail)
                return
            if isinstance(keys, list):
                self._keys = [k for k in keys if isinstance(k, dict)]
            else:
                _log.warning("the issuer's JWKS is not a JWK Set; keeping the keys fetched before")

    def _download(self) -> dict[str, Any]:
        return fetch_json(self.url, self.policy, headers={"Accept": "application/json, application/jwk-set+json"})

    def key(self, kid: str | None) -> jwt.PyJWK | None:
        if self.clock() - self._fetched_at >= self.ttl:
            self._refresh(early=False)
        found = _select(self._keys, kid)
        if found is None:
            self._refresh(early=True)
            found = _select(self._keys, kid)
        return found


class RevocationCheck(Protocol):
    def is_revoked(self, token: VerifiedToken) -> bool: ...


class ReplayCacheFullError(Exception):
    """A bounded replay cache cannot record one more live proof for this partition (or at all)."""


@dataclass
class MemoryReplayCache:
    """DPoP proof jtis seen by this process (RFC 9449 §11.1), kept until they expire; bounded per
    partition (the client the proof's token was issued to) and in all. Resource servers with several
    instances can pass a shared cache (the AS's table) instead.

    A full cache refuses rather than forgets (forgetting a live jti would let its proof be replayed),
    and the per-client bound keeps that refusal on the client that filled it: one client sending
    proofs as fast as it can no longer blocks every other client's proofs. Sizing (docs/resource-servers.md,
    "DPoP proofs at the resource server"): a proof stays recorded about 300 s (MAX_PROOF_AGE), so a
    client sending r proofs a second to this process needs 300·r entries; the defaults (10,000 per
    client, 200,000 in all, about 140 bytes each, so under 30 MB when full) fit a client at ~33
    requests a second and twenty such clients at once.
    """

    max_entries: int = 200_000
    max_entries_per_partition: int = 10_000
    clock: Callable[[], float] = time.time
    _seen: dict[str | None, dict[bytes, int]] = field(default_factory=dict, repr=False)
    _size: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def use_once(self, key: str, expires_at: int, *, partition: str | None = None) -> bool:
        """Record ``key`` until ``expires_at``; False if it is recorded already. ReplayCacheFullError
        when ``partition`` (or the whole cache) holds as many live entries as it may."""
        import hashlib

        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with self._lock:
            now = self.clock()
            entries = self._seen.setdefault(partition, {})
            if entries.get(digest, 0) > now:
                return False
            if len(entries) >= self.max_entries_per_partition:
                self._expire(partition, now)
                if len(entries) >= self.max_entries_per_partition:
                    raise ReplayCacheFullError("too many recent DPoP proofs for this client")
            if self._size >= self.max_entries:
                for name in list(self._seen):
                    self._expire(name, now)
                if self._size >= self.max_entries:
                    raise ReplayCacheFullError("too many recent DPoP proofs")
            self._size += digest not in entries
            entries[digest] = expires_at
            self._seen.setdefault(partition, entries)
            return True

    def _expire(self, partition: str | None, now: float) -> None:
        """Drop the partition's expired entries, oldest first (entries are kept in insertion order,
        and a proof's record lives a fixed time, so the expired ones are at the front)."""
        entries = self._seen[partition]
        while entries:
            oldest = next(iter(entries))
            if entries[oldest] > now:
                break
            del entries[oldest]
            self._size -= 1
        if not entries:
            del self._seen[partition]


class TokenVerifier:
    """Verifies access tokens for one resource (``audience``); None: any audience (introspection)."""

    def __init__(self, *, issuer: str, audience: str | None, keys: KeySource,
                 algorithms: Iterable[str] = ALGORITHMS, leeway: int = DEFAULT_LEEWAY,
                 revocation: RevocationCheck | None = None, clock: Callable[[], float] = time.time,
                 dpop_replay: ReplayCache | None = None) -> None:
        self.issuer, self.audience, self._keys = issuer, audience, keys
        self._algorithms = tuple(a for a in algorithms if a in ALGORITHMS)  # never none or HMAC
        self._leeway, self._revocation, self._clock = leeway, revocation, clock
        self._dpop_replay = dpop_replay if dpop_replay is not None else MemoryReplayCache(clock=clock)

    def verify(self, token: str, required_scopes: Iterable[str] = ()) -> VerifiedToken:
        """A bearer token (RFC 6750): refused when it is bound to a key, since no proof comes with it."""
        verified = self.inspect(token)
        if "jkt" in verified.confirmation:
            raise invalid("this access token is DPoP-bound: present it with the DPoP scheme and a proof", "DPoP")
        if verified.confirmation:
            raise invalid("this access token is bound to a TLS client certificate: check it with verify_request")
        return self._with_scopes(verified, required_scopes)

    def verify_request(self, authorization: str | None, *, method: str, url: str, dpop: str | None = None,
                       certificate: str | None = None, required_scopes: Iterable[str] = ()) -> VerifiedToken:
        """The token of a request's ``Authorization`` header, ``Bearer`` (RFC 6750) or ``DPoP`` with
        the request's ``DPoP`` proof (RFC 9449 §7): ``method`` and ``url`` (without query) are the
        request's own, as the client sent it. ``certificate``: the PEM of the TLS client certificate
        the connection was made with, for certificate-bound tokens (RFC 8705 §3)."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        scheme, token = scheme.lower(), token.strip()
        if scheme not in ("bearer", "dpop") or not token:
            raise invalid("a Bearer or DPoP access token is required")
        verified = self.inspect(token)
        jkt = verified.confirmation.get("jkt")
        if scheme == "bearer" and jkt:
            raise invalid("this access token is DPoP-bound: present it with the DPoP scheme and a proof", "DPoP")
        if scheme == "dpop":
            if not jkt:
                raise invalid("this access token is not DPoP-bound: send it as a Bearer token", "DPoP")
            self._check_proof(token, jkt, dpop, method, url, verified.client_id)
        self._check_certificate(verified, certificate)
        return self._with_scopes(verified, required_scopes)

    def _check_proof(self, token: str, jkt: str, dpop: str | None, method: str, url: str, client_id: str) -> None:
        try:
            proof = verify_proof(dpop, method=method, urls=(url,), now=int(self._clock()), access_token=token)
        except InvalidDpopProofError as exc:
            raise invalid_proof(exc.description) from None
        if proof.jkt != jkt:
            raise invalid_proof("the DPoP proof is not signed by the key the access token is bound to")
        try:
            fresh = self._dpop_replay.use_once(proof.replay_key, proof.replay_expires_at, partition=client_id)
        except ReplayCacheFullError as exc:
            raise invalid_proof(f"{exc} at this resource server; retry later") from None
        if not fresh:
            raise invalid_proof("the DPoP proof was already used")

    @staticmethod
    def _check_certificate(verified: VerifiedToken, certificate: str | None) -> None:
        """RFC 8705 §3: a certificate-bound token only over a connection made with that certificate."""
        expected = verified.confirmation.get("x5t#S256")
        if expected is None:
            return
        from .oauth.errors import InvalidClientError
        from .oauth.mtls import certificate_thumbprint, load_certificate

        try:
            presented = certificate_thumbprint(load_certificate(certificate)) if certificate else None
        except InvalidClientError:
            presented = None
        if presented != expected:
            raise invalid("this access token is bound to a TLS client certificate this connection did not present")

    @staticmethod
    def _with_scopes(verified: VerifiedToken, required_scopes: Iterable[str]) -> VerifiedToken:
        required = tuple(required_scopes)
        if any(s not in verified.scopes for s in required):
            raise TokenRejected("insufficient_scope", "the access token lacks a required scope",
                                scope=" ".join(required))
        return verified

    def inspect(self, token: str) -> VerifiedToken:
        """Signature, issuer, audience, times and revocation, but not who presents the token: for
        introspection, which reports a bound token's ``cnf`` for the resource server to check."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise invalid("the access token is malformed")
        try:
            header, _ = unverified_jwt(token)
        except ValueError:
            raise invalid("the access token is malformed") from None
        if str(header.get("typ", "")).lower() not in (ACCESS_TOKEN_TYP, "application/" + ACCESS_TOKEN_TYP):
            raise invalid("the token is not a JWT access token (typ at+jwt)")
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise invalid("the token's signing algorithm is not accepted")
        kid = header.get("kid")
        key = self._keys.key(kid if isinstance(kid, str) else None)
        if key is None:
            raise invalid("the token was not signed by a key of this issuer")
        # No algorithm confusion: the header's alg must fit the key's type and its declared alg.
        declared = getattr(key, "declared_alg", None)
        if key.key_type != SIGNING_ALGORITHMS[alg][0] or (declared and declared != alg):
            raise invalid("the token's algorithm does not match its key")
        try:  # times are checked below, against this verifier's clock
            claims = jwt.decode(
                token, key.key, algorithms=[alg], issuer=self.issuer, audience=self.audience,
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"], "verify_aud": self.audience is not None,
                         "verify_exp": False, "verify_nbf": False, "verify_iat": False})
        except jwt.InvalidAudienceError:
            raise invalid("the access token is for another resource") from None
        except (jwt.PyJWTError, TypeError, ValueError):
            raise invalid("the access token is invalid") from None
        if not isinstance(claims.get("client_id"), str) or not isinstance(claims.get("scope", ""), str):
            raise invalid("the access token lacks RFC 9068 claims")
        self._check_times(claims)
        verified = VerifiedToken(claims, token)
        if self._revocation is not None and self._revocation.is_revoked(verified):
            raise invalid("the access token has been revoked")
        return verified


    def _check_times(self, claims: dict[str, Any]) -> None:
        now, leeway = self._clock(), self._leeway
        try:
            exp, iat = numeric_date(claims["exp"]), numeric_date(claims["iat"])
            nbf = numeric_date(claims.get("nbf", iat))
        except ValueError:
            raise invalid("the access token's times are malformed") from None
        if now >= exp + leeway:
            raise invalid("the access token has expired")
        if iat > now + leeway or nbf > now + leeway:
            raise invalid("the access token is not yet valid")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRejected("invalid_token", "a Bearer access token is required")
    return token.strip()


@dataclass
class StoreRevocationCheck:
    """Revocation read from the authorization server's own store (same account/table): revoked
    ``jti``, and a client that is deleted, disabled or revoked all its tokens issued before."""

    clients: Any  # ClientStore
    revocations: Any  # RevocationStore

    def is_revoked(self, token: VerifiedToken) -> bool:
        if self.revocations.is_token_revoked(token.jti):
            return True
        client = self.clients.get_client(token.client_id)
        if client is None or client.disabled:
            return True
        return client.tokens_not_before is not None and token.issued_at < client.tokens_not_before


@dataclass
class IntrospectionRevocationCheck:
    """Revocation through the issuer's introspection endpoint (RFC 7662), as a client with the
    introspection permission. Answers are cached ``cache_seconds`` per token; if the endpoint
    cannot be reached the token is refused (fail closed). ``policy``: tokenmint.outbound's, for a
    URL the operator chose; it follows no redirect, so the credentials go to ``endpoint`` only."""

    endpoint: str
    client_id: str
    client_secret: str = field(repr=False)
    cache_seconds: float = 10.0
    policy: FetchPolicy = FetchPolicy.configured()
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, tuple[float, bool]] = field(default_factory=dict, repr=False)

    def is_revoked(self, token: VerifiedToken) -> bool:
        now = self.clock()
        cached = self._cache.get(token.jti)
        if cached and now - cached[0] < self.cache_seconds:
            return cached[1]
        import base64
        from urllib.parse import quote, urlencode

        pair = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}".encode()
        try:
            answer = fetch_json(
                self.endpoint, self.policy,
                data=urlencode({"token": token.token, "token_type_hint": "access_token"}).encode(),
                headers={"Authorization": "Basic " + base64.b64encode(pair).decode(),
                         "Content-Type": "application/x-www-form-urlencoded"})
        except FetchError as exc:
            _log.warning("the introspection endpoint could not be asked: %s", exc.detail)
            raise invalid("the token's revocation status cannot be checked") from None
        active = answer.get("active") is True
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token.jti] = (now, not active)
        return not active


class McpTokenVerifier:
    """The MCP Python SDK's ``TokenVerifier`` (``mcp.server.auth.provider``) backed by tokenmint:
    pass it as ``token_verifier`` to an MCP server whose ``AuthSettings`` name the tokenmint issuer.
    The SDK's own ``required_scopes`` and per-tool checks apply on top."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def verify_token(self, token: str) -> Any:
        import anyio
        from mcp.server.auth.provider import AccessToken

        try:  # JWKS fetching and revocation checks block: keep them off the event loop
            verified = await anyio.to_thread.run_sync(self._verifier.verify, token)
        except TokenRejected:
            return None
        return AccessToken(token=token, client_id=verified.client_id, scopes=list(verified.scopes),
                           expires_at=verified.expires_at, resource=verified.audience,
                           subject=verified.claims.get("sub"),
                           claims={k: v for k, v in verified.claims.items() if k != "scope"})
