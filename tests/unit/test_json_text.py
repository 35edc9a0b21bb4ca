"""Untrusted JSON (oauth/json_text.py): too deep, malformed or not an object is a ValueError, never
a RecursionError; compact JWTs are read the same way before PyJWT sees them."""

import base64
import json

import pytest

from tokenmint.oauth.json_text import MAX_DEPTH, parse_json, unverified_jwt


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("text", [nested(MAX_DEPTH + 1), nested(100_000), b'{"a":' * 50 + b"1" + b"}" * 50,
                                  b"[1,", b"\xff", b"", b"NaN-ish", b'{"a": 1} trailing'])
def test_given_json_that_is_too_deep_or_malformed_when_parsed_then_a_value_error(text):
    with pytest.raises(ValueError):
        parse_json(text)


@pytest.mark.parametrize("text, value", [
    (nested(MAX_DEPTH), json.loads(nested(MAX_DEPTH))),
    ('{"s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', {"s": "[" * 48}),  # brackets in strings do not nest
    ('{"s": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\\"}', {"s": '"' + "[" * 36 + "\\"}),  # nor after escapes
    ('{"keys": [{"kty": "EC", "x5c": ["MII"]}]}', {"keys": [{"kty": "EC", "x5c": ["MII"]}]}),
])
def test_given_json_within_the_limit_when_parsed_then_its_value(text, value):
    assert parse_json(text) == value


@pytest.mark.parametrize("token", [
    b64(nested(3000)) + "." + b64(b"{}") + ".",  # header
    b64(b'{"alg":"ES256"}') + "." + b64(b'{"iss":' + nested(3000) + b"}") + ".",  # claims
    b64(b'{"alg":"ES256","jwk":' + nested(3000) + b"}") + "." + b64(b"{}") + ".sig",
    b64(b"[]") + "." + b64(b"{}") + ".", b64(b"{}") + "." + b64(b'"claims"') + ".",
    "a.b", "a.b.c.d", "!!!." + b64(b"{}") + ".", b64(b"{}") + ".é.", "",
])
def test_given_a_jwt_whose_header_or_claims_are_not_shallow_json_objects_when_read_then_a_value_error(token):
    with pytest.raises(ValueError):
        unverified_jwt(token)


def test_given_a_compact_jwt_when_read_then_its_header_and_claims():
    token = b64(b'{"alg":"ES256","typ":"JWT"}') + "." + b64(b'{"iss":"agent"}') + ".c2ln"
    assert unverified_jwt(token) == ({"alg": "ES256", "typ": "JWT"}, {"iss": "agent"})
