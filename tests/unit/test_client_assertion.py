"""private_key_jwt (RFC 7523 §2.2, §3): assertions signed with PyJWT, checked at the token endpoint."""

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from support.fakes import InMemoryKeyStore, InMemoryStore
from tokenmint.oauth.client_assertion import ASSERTION_TYPE, ClientAssertionVerifier
from tokenmint.oauth.client_credentials import ClientCredentialsGrant
from tokenmint.oauth.errors import InvalidClientError, InvalidRequestError
from tokenmint.oauth.form import parse_form
from tokenmint.oauth.jwk import public_jwk
from tokenmint.oauth.models import Client

ISSUER = "https://as.example.com"
API = "https://api.example.com/mcp"
NOW = int(time.time())


class Replay:
    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def use_once(self, key: str, expires_at: int) -> bool:
        if key in self.seen:
            return False
        self.seen[key] = expires_at
        return True


class NoFetch:
    def fetch(self, url):
        raise OSError("not reachable in unit tests")


@pytest.fixture(scope="module")
def keys():
    return {"RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES256": ec.generate_private_key(ec.SECP256R1())}


@pytest.fixture
def world(keys):
    store = InMemoryStore()
    store.add_resource(API, "tools:read")
    jwks = {"keys": [public_jwk(keys["ES256"].public_key(), "ES256"), public_jwk(keys["RS256"].public_key(), "RS256")]}
    store.create_client(Client("agent", "private_key_jwt", ("tools:read",), NOW, metadata={"jwks": jwks}))
    store.add_client("secretive", "tmsec_" + "x" * 43, "tools:read")
    replay = Replay()
    grant = ClientCredentialsGrant(store, store, InMemoryKeyStore(), lambda: NOW,
                                   ClientAssertionVerifier(replay=replay, jwks_fetcher=NoFetch()))
    return store, grant, replay


def assertion(keys, *, alg="ES256", key=None, headers=None, **claims) -> str:
    body = {"iss": "agent", "sub": "agent", "aud": ISSUER, "iat": NOW, "exp": NOW + 300, "jti": str(uuid.uuid4()),
            **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key if key is not None else keys[alg], algorithm=alg, headers=headers)


def request(grant, value: str, **extra) -> dict:
    from urllib.parse import urlencode
    fields = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
              "client_assertion": value, **extra}
    form = parse_form(urlencode(fields).encode(), "application/x-www-form-urlencoded")
    return grant.create_token_response(form, extra.pop("authorization", None), ISSUER).body()


@pytest.mark.parametrize("claims", [{}, {"aud": ISSUER + "/"}, {"aud": ISSUER + "/token"}, {"aud": [ISSUER, "x"]}])
def test_given_a_valid_assertion_like_the_mcp_sdk_sends_then_a_token(world, keys, claims):
    body = request(world[1], assertion(keys, **claims))  # no kid, typ JWT, 300 s, aud = issuer
    assert body["scope"] == "tools:read"


def test_given_an_rsa_assertion_with_a_kid_and_the_body_client_id_then_a_token(world, keys):
    kid = public_jwk(keys["RS256"].public_key(), "RS256")["kid"]
    assert request(world[1], assertion(keys, alg="RS256", headers={"kid": kid}), client_id="agent")


def test_given_a_replayed_assertion_then_invalid_client(world, keys):
    value = assertion(keys)
    request(world[1], value)
    with pytest.raises(InvalidClientError, match="already used"):
        request(world[1], value)


other = ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize("make, message", [
    (lambda k: assertion(k, exp=NOW - 120), "expired"),
    (lambda k: assertion(k, exp=NOW + 3600), "at most"),
    (lambda k: assertion(k, iat=NOW + 600), "not yet valid"),
    (lambda k: assertion(k, nbf=NOW + 600), "not yet valid"),
    (lambda k: assertion(k, exp=None), "not signed by a key"),  # exp is required
    (lambda k: assertion(k, jti=None), "jti"),
    (lambda k: assertion(k, aud="https://elsewhere.example.com"), "aud"),
    (lambda k: assertion(k, iss="other"), "iss and sub"),
    (lambda k: assertion(k, sub="other"), "iss and sub"),
    (lambda k: assertion(k, iss="nobody", sub="nobody"), "client authentication failed"),
    (lambda k: assertion(k, iss="secretive", sub="secretive"), "client authentication failed"),
    (lambda k: assertion(k, key=other), "not signed by a key"),
    (lambda k: assertion(k, alg="HS256", key="a-shared-secret-that-is-long-enough-for-hs256"), "signed with"),
    (lambda k: jwt.encode({"iss": "agent", "sub": "agent"}, None, algorithm="none"), "signed with"),
    (lambda k: assertion(k, alg="ES256", key=k["ES256"], headers={"kid": "nope"}), "not signed by a key"),
    (lambda k: "not-a-jwt", "well-formed"),
    # JSON NumericDates only: Python's parser also lets NaN (which no comparison rejects) through
    (lambda k: assertion(k, exp=float("nan")), "malformed"),
    (lambda k: assertion(k, iat=float("nan")), "malformed"),
    (lambda k: assertion(k, exp=str(NOW + 300)), "malformed"),
    (lambda k: "x" * 9000, "too large"),
])
def test_given_a_bad_assertion_then_invalid_client_401_and_no_token(world, keys, make, message):
    with pytest.raises(InvalidClientError, match=message) as info:
        request(world[1], make(keys))
    assert info.value.status_code == 401


def test_given_an_es256_header_over_the_rsa_key_then_refused_not_crashed(world, keys):
    forged = assertion(keys, alg="ES256", key=other, headers={"kid": public_jwk(keys["RS256"].public_key(),
                                                                                  "RS256")["kid"]})
    with pytest.raises(InvalidClientError):
        request(world[1], forged)


def test_given_an_assertion_plus_a_secret_or_a_wrong_type_then_invalid_request(world, keys):
    with pytest.raises(InvalidRequestError):
        request(world[1], assertion(keys), client_secret="tmsec_x")
    with pytest.raises(InvalidRequestError):
        request(world[1], assertion(keys), client_assertion_type="urn:other")
    with pytest.raises(InvalidClientError, match="does not match"):
        request(world[1], assertion(keys), client_id="someone-else")


def test_given_a_disabled_client_with_a_valid_assertion_then_invalid_client(world, keys):
    store = world[0]
    store.clients["agent"] = store.clients["agent"].with_changes(disabled=True)
    with pytest.raises(InvalidClientError, match="disabled"):
        request(world[1], assertion(keys))
