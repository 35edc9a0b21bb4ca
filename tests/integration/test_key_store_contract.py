"""One behavioural suite for every KeyStore: local key files (embedded) and KMS (moto).

Whatever signs, a verifier holding only the published JWKS must accept the signature (checked
with PyJWT, not with tokenmint's code), and the JWKS must never expose private material.
"""

import jwt
import pytest

from tokenmint.adapters.aws.clients import aws_client
from tokenmint.adapters.aws.dynamodb import DynamoDbStore
from tokenmint.adapters.aws.kms import KmsKeyMaterial, KmsKeyStore
from tokenmint.adapters.embedded.local_keys import LocalKeyMaterial, SqliteKeyRegistry
from tokenmint.adapters.embedded.sqlite import SqliteDatabase
from tokenmint.keys import KeyRing, ManagedKeyStore
from tokenmint.oauth.access_token import issue_access_token

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


def embedded_keys(tmp_path, alg: str) -> tuple[ManagedKeyStore, KeyRing]:
    db = SqliteDatabase(tmp_path / "db")
    registry, material = SqliteKeyRegistry(db), LocalKeyMaterial(tmp_path / "keys")
    return ManagedKeyStore(registry, material, cache_seconds=0), KeyRing(registry, material, alg)


@pytest.fixture(params=[("embedded", "RS256"), ("embedded", "PS256"), ("embedded", "ES256"), ("embedded", "EdDSA"),
                        ("kms", "RS256"), ("kms", "ES256"), ("kms-bootstrap", "RS256")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def key_store(request, tmp_path):
    kind, alg = request.param
    if kind == "embedded":
        store, ring = embedded_keys(tmp_path, alg)
        ring.ensure_alg()
        return store, alg
    if kind == "kms-bootstrap":  # the key the stack is deployed with, before any rotation
        arn = request.getfixturevalue("kms_key")(alg)
        return KmsKeyStore(aws_client("kms", "us-east-1"), arn, alg), alg
    table = request.getfixturevalue("table")
    registry = DynamoDbStore(aws_client("dynamodb", "us-east-1"), table)
    material = KmsKeyMaterial(aws_client("kms", "us-east-1"), stack="test", alias_prefix="alias/test-key-")
    KeyRing(registry, material, alg).rotate()
    return ManagedKeyStore(registry, material, cache_seconds=0), alg


def test_given_a_key_store_when_a_token_is_signed_then_the_published_jwks_verifies_it(key_store):
    store, alg = key_store
    key = store.signing_key()
    token = issue_access_token(issuer="https://as.example", client_id="c", audience="https://api.example/",
                               scopes=("read",), lifetime=60, now=1_700_000_000, key=key).value
    published = {jwk["kid"]: jwk for jwk in store.public_jwks()}
    header = jwt.get_unverified_header(token)
    assert header["alg"] == alg and header["kid"] == key.kid in published
    assert not PRIVATE_MEMBERS & set(published[key.kid])
    claims = jwt.decode(token, jwt.PyJWK(published[key.kid]).key, algorithms=[alg], audience="https://api.example/",
                        options={"verify_exp": False, "verify_iat": False})
    assert claims["sub"] == "c"


def test_given_an_embedded_key_store_when_the_algorithm_changes_then_the_old_key_stays_published(tmp_path):
    store, ring = embedded_keys(tmp_path, "RS256")
    first = ring.ensure_alg()
    assert ring.ensure_alg().kid == first.kid  # idempotent across restarts
    ring.alg = "ES256"
    second = ring.ensure_alg()
    assert store.signing_key().kid == second.kid and store.signing_key().alg == "ES256"
    assert {jwk["kid"] for jwk in store.public_jwks()} == {first.kid, second.kid}
    assert oct((tmp_path / "keys" / second.key_ref).stat().st_mode & 0o777) == "0o600"


def test_given_a_kms_key_store_when_the_jwks_is_served_repeatedly_then_kms_is_asked_once(kms_key):
    kms = aws_client("kms", "us-east-1")
    calls = []
    kms.meta.events.register("before-call.kms", lambda model, **_: calls.append(model.name))
    store = KmsKeyStore(kms, kms_key("RS256"), "RS256")
    for _ in range(5):
        assert len(store.public_jwks()) == 1
    assert calls == ["GetPublicKey"]
