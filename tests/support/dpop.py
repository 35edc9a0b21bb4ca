"""DPoP proofs (RFC 9449 §4.2) made with joserfc, a library tokenmint does not use to check them."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

GENERATORS = {"ES256": lambda: ECKey.generate_key("P-256"), "RS256": lambda: RSAKey.generate_key(2048),
              "PS256": lambda: RSAKey.generate_key(2048), "EdDSA": lambda: OKPKey.generate_key("Ed25519")}


class DpopKey:
    """A client's DPoP key pair; ``jkt`` is its RFC 7638 thumbprint as joserfc computes it."""

    def __init__(self, alg: str = "ES256") -> None:
        self.alg = alg
        self.key = GENERATORS[alg]()

    @property
    def jkt(self) -> str:
        return self.key.thumbprint()

    @property
    def public_jwk(self) -> dict[str, Any]:
        return self.key.as_dict(private=False)

    def proof(self, method: str, url: str, *, access_token: str | None = None, iat: Any = None,
              jti: str | None = None, header: dict[str, Any] | None = None, **claims: Any) -> str:
        body: dict[str, Any] = {"jti": str(uuid.uuid4()) if jti is None else jti, "htm": method, "htu": url,
                                "iat": int(time.time()) if iat is None else iat}
        if access_token is not None:
            body["ath"] = ath(access_token)
        body.update(claims)
        protected = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.public_jwk, **(header or {})}
        protected = {k: v for k, v in protected.items() if v is not None}
        return jwt.encode(protected, {k: v for k, v in body.items() if v is not None}, self.key,
                          algorithms=[protected["alg"]])


def ath(access_token: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(access_token.encode()).digest()).rstrip(b"=").decode()
