"""Signing with an asymmetric KMS key: the private key never leaves KMS; one Sign call per token."""

from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...keys import KeyRecord
from ...oauth.jwk import der_to_jose_ecdsa, public_jwk_from_der
from ...observability import logger
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
# An interrupted key creation is looked for among at most this many keys of the region (described
# one by one: ~1000 calls fit well within the rotation function's timeout).
MAX_SEARCHED_KEYS = 1000


def _kms_call(kms: Any, operation: str, **kwargs: Any) -> Any:
    try:
        return getattr(kms, operation)(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        if is_unavailable(exc):
            raise UnavailableError(f"KMS {operation} is unavailable") from exc
        raise


class KmsSigningKey:
    """A KMS key as a JWS signer. Its public JWK is given (from the key record) or fetched once."""

    def __init__(self, kms: Any, key_id: str, alg: str, jwk: dict[str, str] | None = None) -> None:
        if alg not in KMS_ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {alg}")
        self._kms, self._key_id, self.alg = kms, key_id, alg
        self._jwk: dict[str, str] | None = jwk
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
    """One fixed KMS key as a KeyStore: the bootstrap key, before the first rotation records keys."""

    def __init__(self, kms: Any, key_id: str, alg: str) -> None:
        self._key = KmsSigningKey(kms, key_id, alg)

    def signing_key(self) -> KmsSigningKey:
        return self._key

    def public_jwks(self) -> list[dict[str, str]]:
        return [self._key.jwk]


STACK_TAG = "tokenmint:stack"


class KmsKeyMaterial:
    """Signing keys in KMS, each reachable by the alias ``<alias_prefix><key_id>``: a retried
    creation finds the key the first attempt made. Keys are tagged with the stack, which is what
    the functions' IAM policies require before they may use them."""

    def __init__(self, kms: Any, *, stack: str, alias_prefix: str, multi_region: bool = False,
                 replica_regions: tuple[str, ...] = ()) -> None:
        self._kms, self._stack, self._alias_prefix = kms, stack, alias_prefix
        self._multi_region, self._replicas = multi_region, replica_regions

    def _metadata(self, key: str, absent: tuple[str, ...] = ("NotFoundException",)) -> dict[str, Any] | None:
        """DescribeKey's KeyMetadata for ``key`` (an id, ARN or alias); None for the ``absent`` answers."""
        try:
            return _kms_call(self._kms, "describe_key", KeyId=key)["KeyMetadata"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in absent:
                return None
            raise

    def _describe(self, alias: str) -> str | None:
        metadata = self._metadata(alias)
        return metadata["Arn"] if metadata else None

    def public_jwk(self, key_ref: str, alg: str) -> dict[str, str]:
        return KmsSigningKey(self._kms, key_ref, alg).jwk

    def create(self, key_id: str, alg: str, *, retry: bool = False) -> tuple[str, dict[str, str]]:
        alias = self._alias_prefix + key_id
        arn = self._describe(alias)
        if arn is None:
            # An earlier attempt may have made the key and lost CreateKey's answer, or failed to
            # alias it: find that key (retries only: the search describes the region's keys).
            arn = self._unaliased_key(key_id, alg) if retry else None
            if arn is None:
                created = _kms_call(self._kms, "create_key", KeySpec=KMS_ALGORITHMS[alg][0], KeyUsage="SIGN_VERIFY",
                                    Description=self._description(key_id, alg), MultiRegion=self._multi_region,
                                    Tags=[{"TagKey": STACK_TAG, "TagValue": self._stack}])
                arn = created["KeyMetadata"]["Arn"]
            try:
                _kms_call(self._kms, "create_alias", AliasName=alias, TargetKeyId=arn)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "AlreadyExistsException":
                    raise
                _kms_call(self._kms, "schedule_key_deletion", KeyId=self._key_id(arn),  # lost the race
                          PendingWindowInDays=7)
                arn = self._describe(alias) or arn
        self._replicate(arn)
        return arn, self.public_jwk(arn, alg)

    def _description(self, key_id: str, alg: str) -> str:
        """Names the key's stack too: key ids repeat across stacks (key_first, successor ids)."""
        return f"tokenmint signing key {key_id} ({alg}) of stack {self._stack}"

    def _unaliased_key(self, key_id: str, alg: str) -> str | None:
        """The key an interrupted creation of ``key_id`` made, if any: described as ``key_id``'s and
        not on its way out. Keys of other owners answer AccessDenied (the role may describe only
        keys tagged with its stack) and are skipped. More than one (several interrupted attempts):
        the first is kept, the others are scheduled for deletion. Describes at most
        MAX_SEARCHED_KEYS keys; past that, a warning names the gap and the key is made anew."""
        found: list[str] = []
        searched, marker = 0, None
        while True:
            limit = min(1000, MAX_SEARCHED_KEYS - searched)
            page = _kms_call(self._kms, "list_keys", Limit=limit, **({"Marker": marker} if marker else {}))
            keys = page.get("Keys", [])
            for key in keys[:limit]:
                searched += 1
                metadata = self._metadata(key["KeyId"], absent=("NotFoundException", "AccessDeniedException"))
                if (metadata and metadata.get("Description") == self._description(key_id, alg)
                        and metadata.get("KeyState") in ("Enabled", "Creating")):
                    found.append(metadata["Arn"])
            if not (page.get("Truncated") or len(keys) > limit):
                break
            marker = page.get("NextMarker")
            if searched >= MAX_SEARCHED_KEYS or not marker:
                logger.warning("interrupted key creation: not every KMS key was searched",
                               extra={"key_id": key_id, "searched": searched})
                break
        for extra in found[1:]:
            _kms_call(self._kms, "schedule_key_deletion", KeyId=self._key_id(extra), PendingWindowInDays=7)
        return found[0] if found else None

    def _replicate(self, arn: str) -> None:
        """One issuer, one JWKS in every region: each replica region gets the key, also when an
        earlier attempt made the key but failed before (or while) replicating it."""
        if not self._replicas:
            return
        configuration = _kms_call(self._kms, "describe_key", KeyId=arn)["KeyMetadata"].get(
            "MultiRegionConfiguration", {})
        present = {replica.get("Region") for replica in configuration.get("ReplicaKeys", [])}
        for region in self._replicas:
            if region not in present:
                _kms_call(self._kms, "replicate_key", KeyId=self._key_id(arn), ReplicaRegion=region,
                          Tags=[{"TagKey": STACK_TAG, "TagValue": self._stack}])

    def signer(self, record: KeyRecord) -> KmsSigningKey:
        # By key id: for a multi-Region key (mrk-…) that is this region's replica, so every region
        # signs locally with the same key material, under the same kid.
        return KmsSigningKey(self._kms, self._key_id(record.key_ref or ""), record.alg, record.public_jwk)

    @staticmethod
    def _key_id(key_ref: str) -> str:
        # The key id names the key in this client's region as the ARN does (and moto knows only ids).
        return key_ref.rsplit("/", 1)[-1]

    def disable(self, key_ref: str) -> None:
        try:
            _kms_call(self._kms, "disable_key", KeyId=self._key_id(key_ref))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "KMSInvalidStateException":  # pending deletion
                raise

    def schedule_deletion(self, key_ref: str, days: int) -> None:
        try:
            _kms_call(self._kms, "schedule_key_deletion", KeyId=self._key_id(key_ref), PendingWindowInDays=days)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "KMSInvalidStateException":  # already pending
                raise
