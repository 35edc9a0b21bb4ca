"""Signing with an asymmetric KMS key: the private key never leaves KMS; one Sign call per token."""

from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...oauth.jwk import der_to_jose_ecdsa, public_jwk_from_der
from ...ports import UnavailableError
from .clients import is_unavailable

# JWS alg → (KMS key spec, KMS signing algorithm). KMS RSASSA_PSS_SHA_256 uses a 32-byte salt,
# as RFC 7518 §3.5 requires; ED25519_SHA_512 is pure Ed25519 (RFC 8037), which needs RAW messages.
KMS_ALGORITHMS = {
    "RS256": ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256"),
    "PS256": ("RSA_2048", "RSASSA_PSS_SHA_256"),
    "ES256": ("ECC_NIST_P256", "ECDSA_SHA_256"),
    "EdDSA": ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512"),
}
MAX_RAW_MESSAGE = 4096  # KMS limit for MessageType=RAW


def _kms_call(kms: Any, operation: str, **kwargs: Any) -> Any:
    try:
        return getattr(kms, operation)(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        if is_unavailable(exc):
            raise UnavailableError(f"KMS {operation} is unavailable") from exc
        raise


class KmsSigningKey:
    """A KMS key as a JWS signer. The public key is fetched once per process, for ``kid`` and JWKS."""

    def __init__(self, kms: Any, key_id: str, alg: str) -> None:
        if alg not in KMS_ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {alg}")
        self._kms, self._key_id, self.alg = kms, key_id, alg
        self._jwk: dict[str, str] | None = None
        self._lock = threading.Lock()

    @property
    def jwk(self) -> dict[str, str]:
        if self._jwk is None:
            with self._lock:
                if self._jwk is None:
                    response = _kms_call(self._kms, "get_public_key", KeyId=self._key_id)
                    expected = KMS_ALGORITHMS[self.alg][1]
                    if expected not in response.get("SigningAlgorithms", ()):
                        raise ValueError(f"KMS key {self._key_id} cannot sign with {expected} ({self.alg})")
                    self._jwk = public_jwk_from_der(response["PublicKey"], self.alg)
        return self._jwk

    @property
    def kid(self) -> str:
        return self.jwk["kid"]

    def sign(self, signing_input: bytes) -> bytes:
        if len(signing_input) > MAX_RAW_MESSAGE:
            raise ValueError("JWS signing input exceeds the KMS RAW message limit")
        # RAW, not DIGEST: KMS hashes the message itself, and RAW is what Ed25519 requires.
        response = _kms_call(self._kms, "sign", KeyId=self._key_id, Message=signing_input,
                             MessageType="RAW", SigningAlgorithm=KMS_ALGORITHMS[self.alg][1])
        signature = response["Signature"]
        return der_to_jose_ecdsa(signature) if self.alg == "ES256" else signature


class KmsKeyStore:
    """The stack's one signing key. Key states and rotation records come with the key lifecycle."""

    def __init__(self, kms: Any, key_id: str, alg: str) -> None:
        self._key = KmsSigningKey(kms, key_id, alg)

    def signing_key(self) -> KmsSigningKey:
        return self._key

    def public_jwks(self) -> list[dict[str, str]]:
        return [self._key.jwk]
