"""JWT access tokens (RFC 9068 §2): header ``typ: at+jwt``, audience-bound, short-lived."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .jwk import b64url

if TYPE_CHECKING:
    from ..ports import SigningKey

ACCESS_TOKEN_TYP = "at+jwt"


@dataclass(frozen=True)
class AccessToken:
    value: str
    claims: dict[str, Any]

    @property
    def jti(self) -> str:
        return self.claims["jti"]

    @property
    def token_type(self) -> str:
        return token_type(self.claims)

    def __repr__(self) -> str:  # the token is a bearer credential: keep it out of logs
        return f"AccessToken(jti={self.jti!r})"


def token_type(claims: dict[str, Any]) -> str:
    """RFC 9449 §5: a DPoP-bound token is of type DPoP; every other token (also one bound to a TLS
    certificate, RFC 8705 §3) is a Bearer token."""
    cnf = claims.get("cnf")
    return "DPoP" if isinstance(cnf, dict) and "jkt" in cnf else "Bearer"


def _segment(data: dict[str, Any]) -> str:
    return b64url(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def issue_access_token(*, issuer: str, client_id: str, audience: str, scopes: tuple[str, ...],
                       lifetime: int, now: int, key: SigningKey,
                       confirmation: dict[str, str] | None = None) -> AccessToken:
    """Sign the RFC 9068 §2.2 claims for ``client_id`` acting on its own behalf (sub = client_id).

    ``confirmation`` binds the token to a key the client holds (RFC 7800 ``cnf``): ``jkt`` for
    DPoP (RFC 9449 §6), ``x5t#S256`` for a TLS client certificate (RFC 8705 §3.1).
    """
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": client_id,
        "client_id": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
        "jti": secrets.token_urlsafe(16),
        "scope": " ".join(scopes),
    }
    if confirmation:
        claims["cnf"] = confirmation
    signing_input = f"{_segment({'alg': key.alg, 'typ': ACCESS_TOKEN_TYP, 'kid': key.kid})}.{_segment(claims)}"
    signature = key.sign(signing_input.encode("ascii"))
    return AccessToken(f"{signing_input}.{b64url(signature)}", claims)
