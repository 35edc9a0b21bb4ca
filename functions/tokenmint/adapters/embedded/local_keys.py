"""Signing keys as local PEM files (mode 0600) with their records in SQLite: the embedded KMS."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...keys import KeyRecord
from ...oauth.jwk import SIGNING_ALGORITHMS, der_to_jose_ecdsa, public_jwk
from ...ports import ConflictError
from .sqlite import SqliteDatabase


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


class LocalKeyMaterial:
    """Private keys in ``<dir>/<key_id>.pem``; the file name makes creation idempotent."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory

    def _path(self, key_ref: str) -> Path:
        return self._dir / key_ref

    @staticmethod
    def _load(path: Path) -> Any:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        return load_pem_private_key(path.read_bytes(), password=None)

    def create(self, key_id: str, alg: str, *, retry: bool = False) -> tuple[str, dict[str, Any]]:
        """The file's name comes from ``key_id``, so a retry finds what an earlier attempt wrote."""
        from cryptography.hazmat.primitives import serialization

        key_ref = f"{key_id}.pem"
        path = self._path(key_ref)
        if not path.exists():
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            pem = generate_private_key(alg).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption())
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # created concurrently: use that one
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
        return key_ref, public_jwk(self._load(path).public_key(), alg)

    def signer(self, record: KeyRecord) -> LocalSigningKey:
        return LocalSigningKey(record.kid or "", record.alg, self._load(self._path(record.key_ref or "")))

    def public_jwk(self, key_ref: str, alg: str) -> dict[str, Any]:
        return public_jwk(self._load(self._path(key_ref)).public_key(), alg)

    def disable(self, key_ref: str) -> None:
        path = self._path(key_ref)
        if path.exists():
            path.rename(path.with_suffix(".disabled"))

    def schedule_deletion(self, key_ref: str, days: int) -> None:
        # The embedded backend keeps no recovery window: a disabled local key is simply removed.
        self._path(key_ref).with_suffix(".disabled").unlink(missing_ok=True)


class SqliteKeyRegistry:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def list_keys(self) -> list[KeyRecord]:
        rows = self._db.execute("SELECT record FROM key_records ORDER BY created_at, key_id").fetchall()
        return [KeyRecord.from_record(json.loads(row[0])) for row in rows]

    def create_key_record(self, record: KeyRecord) -> None:
        self._db.execute("INSERT INTO key_records (key_id, version, created_at, record) VALUES (?, ?, ?, ?)",
                         (record.key_id, record.version, record.created_at, json.dumps(record.to_record())))

    def update_key_records(self, records: list[KeyRecord]) -> None:
        with self._db.transaction() as conn:
            for record in records:
                cursor = conn.execute("UPDATE key_records SET version = ?, record = ? WHERE key_id = ? AND version = ?",
                                      (record.version, json.dumps(record.to_record()), record.key_id,
                                       record.version - 1))
                if cursor.rowcount != 1:
                    raise ConflictError(f"key {record.key_id} changed concurrently")
