"""The KMS signer for each JWS algorithm, checked with keys from KMS itself.

moto signs PSS with a maximal salt (real KMS uses a 32-byte salt, as RFC 7518 §3.5 wants), so
PS256 is checked with cryptography's salt auto-detection; moto has no Ed25519 keys, so EdDSA is
checked against botocore's Stubber with a real Ed25519 signature.
"""

import boto3
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding
from cryptography.hazmat.primitives.serialization import load_der_public_key

from tokenmint.adapters.aws.kms import KmsKeyStore, KmsSigningKey
from tokenmint.oauth.access_token import issue_access_token


def issue(key) -> str:
    return issue_access_token(issuer="https://as.example", client_id="c", audience="https://api.example/",
                              scopes=("read",), lifetime=60, now=1_700_000_000, key=key).value


def kms_public_key(arn):
    return load_der_public_key(boto3.client("kms").get_public_key(KeyId=arn)["PublicKey"])


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_given_a_kms_key_when_signing_then_pyjwt_verifies(kms_key, alg):
    arn = kms_key(alg)
    token = issue(KmsSigningKey(boto3.client("kms"), arn, alg))
    assert jwt.decode(token, kms_public_key(arn), algorithms=[alg], audience="https://api.example/",
                      options={"verify_exp": False})["client_id"] == "c"


def test_given_a_kms_rsa_key_when_signing_ps256_then_the_pss_signature_verifies(kms_key):
    arn = kms_key("PS256")
    token = issue(KmsSigningKey(boto3.client("kms"), arn, "PS256"))
    signing_input, _, signature = token.rpartition(".")
    kms_public_key(arn).verify(jwt.utils.base64url_decode(signature), signing_input.encode(),
                               padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO), hashes.SHA256())


def test_given_a_key_of_another_type_when_used_then_refused_before_signing(kms_key):
    arn = kms_key("ES256")
    with pytest.raises(ValueError, match="cannot sign"):
        KmsSigningKey(boto3.client("kms"), arn, "RS256").kid


class Ed25519Kms:
    """Stands in for KMS, which moto lacks for Ed25519: checks each call's parameters as KMS would."""

    def __init__(self) -> None:
        self.private = ed25519.Ed25519PrivateKey.generate()
        self.calls: list[dict] = []

    def get_public_key(self, **params):
        self.calls.append(params)
        der = self.private.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        return {"PublicKey": der, "KeySpec": "ECC_NIST_EDWARDS25519", "SigningAlgorithms": ["ED25519_SHA_512"]}

    def sign(self, **params):
        self.calls.append(params)
        assert params["MessageType"] == "RAW" and params["SigningAlgorithm"] == "ED25519_SHA_512"
        return {"Signature": self.private.sign(params["Message"])}


def test_given_an_ed25519_kms_key_when_signing_then_eddsa_verifies():
    kms = Ed25519Kms()
    store = KmsKeyStore(kms, "arn:aws:kms:us-east-1:111122223333:key/k", "EdDSA")
    token = issue(store.signing_key())
    (jwk,) = store.public_jwks()
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "typ": "at+jwt", "kid": jwk["kid"]}
    assert jwt.decode(token, kms.private.public_key(), algorithms=["EdDSA"], audience="https://api.example/",
                      options={"verify_exp": False})["sub"] == "c"
    assert [c.get("MessageType") for c in kms.calls] == [None, "RAW"]  # public key fetched once
