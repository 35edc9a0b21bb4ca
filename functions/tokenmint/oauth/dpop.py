"""DPoP proofs (RFC 9449 §4): the client proves, per request, that it holds the private key a
token is bound to. Used at the token endpoint (§5: the token gets ``cnf.jkt``) and by resource
servers (§7: the proof covers the request and, through ``ath``, the access token).

A proof is accepted when (§4.3) it is one well-formed JWT with ``typ: dpop+jwt``, an allowed
asymmetric algorithm, a public ``jwk`` in its header that verifies its signature, ``htm`` and
``htu`` naming this request (``htu`` without query and fragment, compared after RFC 3986
normalisation), an ``iat`` within the acceptance window, a ``jti`` not seen before (the caller's
replay cache), and, with an access token, ``ath`` = its SHA-256. Server-provided nonces (§8) are
not used: the ``jti`` cache and the short window bound replay instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .errors import OAuthError
from .json_text import unverified_jwt
from .jwk import CLOCK_SKEW, PRIVATE_JWK_MEMBERS, SIGNING_ALGORITHMS, b64url, numeric_date, remember_until, thumbprint
from .resource import normalize_resource_identifier

DPOP_TYP = "dpop+jwt"
DPOP_ALGORITHMS = tuple(SIGNING_ALGORITHMS)  # asymmetric only: never none or HMAC (§4.3 step 5)
MAX_PROOF_AGE = 300  # a proof's iat may be this many seconds old, or CLOCK_SKEW in the future
MAX_PROOF_LENGTH = 8192
MAX_JTI_LENGTH = 256


class InvalidDpopProofError(OAuthError):
    """RFC 9449 §5 / §7.1: the DPoP proof is missing, malformed, replayed or not for this request."""

    error = "invalid_dpop_proof"


@dataclass(frozen=True)
class DpopProof:
    jkt: str  # RFC 7638 thumbprint of the proof's public key: what a bound token's cnf.jkt holds
    jti: str
    iat: float

    @property
    def replay_key(self) -> str:
        return f"dpop#{self.jkt}#{self.jti}"

    @property
    def replay_expires_at(self) -> int:
        """Until when the jti must be remembered: the proof is accepted while iat >= now - MAX_PROOF_AGE."""
        return remember_until(self.iat + MAX_PROOF_AGE)


def access_token_hash(access_token: str) -> str:
    """§4.2 ``ath``: base64url(SHA-256(ASCII of the access token))."""
    return b64url(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


def comparable_url(url: str) -> str:
    """``htu`` as §4.3 step 9 compares it: without query and fragment, RFC 3986 §6.2.2–6.2.3
    normalised (scheme and host case, default port, empty path as /)."""
    base = url.split("#", 1)[0].split("?", 1)[0]
    try:
        return normalize_resource_identifier(base)
    except OAuthError:
        return base


def verify_proof(header_value: str | None, *, method: str, urls: tuple[str, ...], now: int,
                 access_token: str | None = None) -> DpopProof:
    """The checked proof of a request to any of ``urls`` with ``method``; its jti is not yet spent
    (the caller records it once the request is otherwise acceptable)."""
    import jwt

    if not header_value or not header_value.strip():
        raise InvalidDpopProofError("a DPoP proof is required")
    proof = header_value.strip()
    if "," in proof:  # API Gateway joins repeated headers with commas; a JWT never has one
        raise InvalidDpopProofError("send exactly one DPoP header")
    if len(proof) > MAX_PROOF_LENGTH:
        raise InvalidDpopProofError("the DPoP proof is too large")
    try:
        header, _ = unverified_jwt(proof)
    except ValueError:
        raise InvalidDpopProofError("the DPoP proof is not a well-formed JWT") from None
    if header.get("typ") != DPOP_TYP:
        raise InvalidDpopProofError(f"the DPoP proof's typ must be {DPOP_TYP}")
    alg = header.get("alg")
    if alg not in DPOP_ALGORITHMS:
        raise InvalidDpopProofError(f"DPoP proofs must be signed with {', '.join(DPOP_ALGORITHMS)}")
    jwk, jkt = _public_jwk(header.get("jwk"), alg)
    try:
        key = jwt.PyJWK(jwk, algorithm=alg).key
        claims = jwt.decode(proof, key, algorithms=[alg], options={
            "verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False})
    except (jwt.PyJWTError, TypeError, ValueError):
        raise InvalidDpopProofError("the DPoP proof's signature does not verify with its jwk") from None
    _check_claims(claims, method, urls, now, access_token)
    return DpopProof(jkt=jkt, jti=claims["jti"], iat=numeric_date(claims["iat"]))


def _public_jwk(jwk: object, alg: str) -> tuple[dict[str, Any], str]:
    """The header's ``jwk`` once it is a public key of ``alg``'s type, and its RFC 7638 thumbprint."""
    kty, crv = SIGNING_ALGORITHMS[alg]
    if not isinstance(jwk, dict) or jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        raise InvalidDpopProofError(f"the DPoP proof's header needs a public {kty} jwk for {alg}")
    if PRIVATE_JWK_MEMBERS.intersection(jwk):
        raise InvalidDpopProofError("the DPoP proof's jwk must not contain a private key")
    try:
        return jwk, thumbprint(jwk)
    except (KeyError, TypeError):
        raise InvalidDpopProofError("the DPoP proof's jwk is incomplete") from None


def _check_claims(claims: dict[str, Any], method: str, urls: tuple[str, ...], now: int,
                  access_token: str | None) -> None:
    jti, htm, htu, iat = (claims.get(name) for name in ("jti", "htm", "htu", "iat"))
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise InvalidDpopProofError("the DPoP proof needs a jti")
    try:
        iat = numeric_date(iat)
    except ValueError:
        iat = None
    if not isinstance(htm, str) or not isinstance(htu, str) or iat is None:
        raise InvalidDpopProofError("the DPoP proof needs htm, htu and a numeric iat")
    if htm != method:
        raise InvalidDpopProofError(f"the DPoP proof's htm is not this request's method, {method}")
    if comparable_url(htu) not in {comparable_url(url) for url in urls}:
        raise InvalidDpopProofError("the DPoP proof's htu is not this endpoint's URL")
    if iat < now - MAX_PROOF_AGE or iat > now + CLOCK_SKEW:
        raise InvalidDpopProofError(f"the DPoP proof's iat must be within {MAX_PROOF_AGE} seconds of now")
    if access_token is not None and claims.get("ath") != access_token_hash(access_token):
        raise InvalidDpopProofError("the DPoP proof's ath does not match the access token")
