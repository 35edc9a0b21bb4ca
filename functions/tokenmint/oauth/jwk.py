"""JSON Web Keys for the signing keys (RFC 7517, RFC 7518 §6, RFC 8037) and their thumbprints (RFC 7638)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from typing import Any

# JWS algorithm → JWK key type, curve (if any) and the JOSE signature length in bytes (EC only).
SIGNING_ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "EdDSA": ("OKP", "Ed25519"),
}
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}


def numeric_date(value: Any) -> float:
    """A JWT NumericDate (RFC 7519 §2): a finite JSON number. ValueError for anything else (a
    string, a boolean, NaN or Infinity, which Python's JSON parser lets through, or an integer
    too large for a float, such as 10**400, which would overflow later)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("not a NumericDate")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError("not a NumericDate") from None
    if not math.isfinite(number):
        raise ValueError("not a NumericDate")
    return number


# RFC 7518 §6.2.2, §6.3.2, §6.4: the members that hold private or symmetric key material; a JWK that
# a client publishes (its jwks, a DPoP proof's header) must have none of them.
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

# Seconds by which the clocks of two parties (a client and this server, two servers) may disagree:
# what every time check of a JWT (assertion, DPoP proof, software statement) and every "has every
# token it signed expired" wait allows for.
CLOCK_SKEW = 60


def remember_until(last_accepted_at: float) -> int:
    """The expiry to give a replay record (a spent ``jti``) that guards a one-time value accepted up
    to ``last_accepted_at``. A record counts while its expiry is later than now (ports.ReplayCache),
    so it must outlive every accepted instant, fractions of a second included (a record kept until
    ``int(exp) + skew`` let an assertion with an ``exp`` of 1000.9 be replayed at 1060)."""
    return math.floor(last_accepted_at) + 1


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int, length: int | None = None) -> str:
    return b64url(value.to_bytes(length or max(1, (value.bit_length() + 7) // 8), "big"))


def public_jwk(public_key: Any, alg: str) -> dict[str, str]:
    """The public JWK of a ``cryptography`` public key, with ``kid`` = its RFC 7638 thumbprint."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    kty, crv = SIGNING_ALGORITHMS[alg]
    if kty == "RSA" and isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        jwk = {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e)}
    elif kty == "EC" and isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1":
        point = public_key.public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "x": _uint(point.x, 32), "y": _uint(point.y, 32)}
    elif kty == "OKP" and isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": crv or "Ed25519", "x": b64url(raw)}
    else:
        raise ValueError(f"the key does not fit algorithm {alg}")
    return {**jwk, "kid": thumbprint(jwk), "use": "sig", "alg": alg}


def public_jwk_from_der(der: bytes, alg: str) -> dict[str, str]:
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    return public_jwk(load_der_public_key(der), alg)


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, without whitespace."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return b64url(hashlib.sha256(canonical).digest())


def der_to_jose_ecdsa(der_signature: bytes, size: int = 32) -> bytes:
    """RFC 7518 §3.4: an ECDSA signature in JWS is r || s, each ``size`` bytes; KMS returns DER."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(der_signature)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")
