"""RFC 7638 thumbprints (the kid) and RFC 7518 §3.4 ECDSA signature encoding."""

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokenmint.oauth.jwk import der_to_jose_ecdsa, public_jwk, thumbprint

RFC7638_N = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4"
             "n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0"
             "zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-c"
             "sFCur-kEgU8awapJzKnqDKgw")


def _b64int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def test_given_the_rfc7638_example_key_when_converted_then_kid_is_the_published_thumbprint():
    key = rsa.RSAPublicNumbers(e=65537, n=_b64int(RFC7638_N)).public_key()
    jwk = public_jwk(key, "RS256")
    assert jwk["n"] == RFC7638_N and jwk["e"] == "AQAB"
    assert jwk["kid"] == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert thumbprint(jwk) == jwk["kid"]


def test_given_a_key_for_another_algorithm_when_converted_then_refused():
    with pytest.raises(ValueError):
        public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), "RS256")


def test_given_a_der_ecdsa_signature_with_short_integers_when_converted_then_fixed_64_bytes():
    signature = der_to_jose_ecdsa(encode_dss_signature(5, 2**255 + 7))
    assert len(signature) == 64
    assert int.from_bytes(signature[:32], "big") == 5


def test_given_a_real_es256_signature_when_converted_then_it_verifies_as_r_s():
    key = ec.generate_private_key(ec.SECP256R1())
    raw = der_to_jose_ecdsa(key.sign(b"msg", ec.ECDSA(hashes.SHA256())))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.public_key().verify(der, b"msg", ec.ECDSA(hashes.SHA256()))
