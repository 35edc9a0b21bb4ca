"""Signing keys as local PEM files (mode 0600) with their records in SQLite: the embedded KMS."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from ...oauth.jwk import SIGNING_ALGORITHMS, der_to_jose_ecdsa, public_jwk
from .sqlite import SqliteDatabase

ACTIVE, RETIRING = "active", "retiring"


def generate_private_key(alg: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    kty, _ = SIGNING_ALGORITHMS[alg]
    if kty == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kty == "EC":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


class LocalSigningKey:
    def __init__(self, kid: str, alg: str, private_key: Any) -> None:
        self.kid, self.alg, self._key = kid, alg, private_key

    def sign(self, signing_input: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding

        if self.alg == "RS256":
            return self._key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        if self.alg == "PS256":  # RFC 7518 §3.5: salt as long as the hash, as KMS does
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            return self._key.sign(signing_input, pss, hashes.SHA256())
        if self.alg == "ES256":
            return der_to_jose_ecdsa(self._key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return self._key.sign(signing_input)

    def __repr__(self) -> str:
        return f"LocalSigningKey(kid={self.kid!r}, alg={self.alg!r})"


class LocalKeyStore:
    """KeyStore over ``<data_dir>/keys/<kid>.pem``; the private key never leaves the file and memory."""

    def __init__(self, db: SqliteDatabase, key_dir: Path) -> None:
        self._db = db
        self._dir = key_dir
        self._loaded: dict[str, LocalSigningKey] = {}
        self._lock = threading.Lock()

    def ensure_active_key(self, alg: str) -> str:
        """Make sure a key for ``alg`` signs; a previous key of another algorithm keeps being published."""
        row = self._db.execute("SELECT kid, alg FROM signing_keys WHERE state = ?", (ACTIVE,)).fetchone()
        if row and row[1] == alg:
            return row[0]
        from cryptography.hazmat.primitives import serialization

        private_key = generate_private_key(alg)
        jwk = public_jwk(private_key.public_key(), alg)
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        fd = os.open(self._dir / f"{jwk['kid']}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        with self._db.transaction() as conn:
            conn.execute("UPDATE signing_keys SET state = ? WHERE state = ?", (RETIRING, ACTIVE))
            conn.execute("INSERT INTO signing_keys (kid, alg, state, created_at, public_jwk) VALUES (?, ?, ?, "
                         "CAST(strftime('%s','now') AS INTEGER), ?)", (jwk["kid"], alg, ACTIVE, json.dumps(jwk)))
        return jwk["kid"]

    def signing_key(self) -> LocalSigningKey:
        row = self._db.execute("SELECT kid, alg FROM signing_keys WHERE state = ?", (ACTIVE,)).fetchone()
        if row is None:
            raise RuntimeError("no active signing key; start the server with `tokenmint serve`")
        kid, alg = row
        key = self._loaded.get(kid)
        if key is None:
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            with self._lock:
                private_key = load_pem_private_key((self._dir / f"{kid}.pem").read_bytes(), password=None)
                key = self._loaded[kid] = LocalSigningKey(kid, alg, private_key)
        return key

    def public_jwks(self) -> list[dict[str, str]]:
        rows = self._db.execute("SELECT public_jwk FROM signing_keys WHERE state IN (?, ?) ORDER BY created_at DESC",
                                (ACTIVE, RETIRING)).fetchall()
        return [json.loads(row[0]) for row in rows]
