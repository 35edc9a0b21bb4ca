"""RFC 6749 §4.4 with client_secret_basic/post (§2.3.1) and RFC 8707 audiences, on in-memory ports.

Tokens are checked with PyJWT, never with the code that signed them.
"""

import base64
from urllib.parse import quote

import jwt
import pytest

from support.fakes import NOW, InMemoryKeyStore, InMemoryStore
from tokenmint.oauth.client_credentials import ClientCredentialsGrant
from tokenmint.oauth.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
    UnsupportedGrantTypeError,
)
from tokenmint.oauth.form import parse_form
from tokenmint.oauth.models import ClientSecret

ISSUER = "https://auth.example.com"
API = "https://api.example.com/mcp"
SECRET = "tmsec_" + "s" * 43


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()).decode()


@pytest.fixture
def store():
    store = InMemoryStore()
    store.add_resource(API, "tools:read tools:write tools:admin", lifetime=300)
    store.add_client("svc", SECRET, "tools:read tools:write")
    store.add_client("poster", SECRET, "tools:read", method="client_secret_post")
    return store


@pytest.fixture
def keys():
    return InMemoryKeyStore()


def token_request(store, keys, body: str, authorization: str | None = None, clock=lambda: NOW):
    grant = ClientCredentialsGrant(store, store, keys, clock)
    form = parse_form(body.encode(), "application/x-www-form-urlencoded")
    return grant.create_token_response(form, authorization, ISSUER)


def decode(token: str, keys: InMemoryKeyStore, alg: str = "RS256") -> dict:
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "typ": "at+jwt", "kid": keys.jwk["kid"]}
    return jwt.decode(token, keys.public_key, algorithms=[alg], audience=API, issuer=ISSUER,
                      options={"verify_exp": False, "verify_iat": False})


def test_given_basic_credentials_when_requesting_then_rfc9068_token_for_the_resource(store, keys):
    result = token_request(store, keys, f"grant_type=client_credentials&resource={quote(API)}",
                           basic("svc", SECRET))
    body = result.body()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert "refresh_token" not in body
    claims = decode(body["access_token"], keys)
    assert claims["sub"] == claims["client_id"] == "svc"
    assert claims["aud"] == API and claims["iss"] == ISSUER
    assert claims["exp"] - claims["iat"] == 300 and claims["iat"] == NOW
    assert claims["scope"] == body["scope"] == "tools:read tools:write"
    assert len(claims["jti"]) >= 22


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
def test_given_each_signing_algorithm_when_issuing_then_pyjwt_verifies(store, alg):
    keys = InMemoryKeyStore(alg)
    token = token_request(store, keys, "grant_type=client_credentials", basic("svc", SECRET)).body()
    assert decode(token["access_token"], keys, alg)["aud"] == API


def test_given_post_credentials_when_requesting_then_token(store, keys):
    body = token_request(store, keys, f"grant_type=client_credentials&client_id=poster&client_secret={SECRET}").body()
    assert body["scope"] == "tools:read"


def test_given_requested_scopes_partly_outside_the_grant_when_requesting_then_dropped(store, keys):
    body = token_request(store, keys, "grant_type=client_credentials&scope=tools:admin+tools:read+unknown",
                         basic("svc", SECRET)).body()
    assert body["scope"] == "tools:read"


def test_given_only_ungranted_scopes_when_requesting_then_invalid_scope(store, keys):
    with pytest.raises(InvalidScopeError):
        token_request(store, keys, "grant_type=client_credentials&scope=tools:admin", basic("svc", SECRET))
    assert keys.signatures == 0


@pytest.mark.parametrize("authorization, body", [
    (basic("svc", "wrong"), "grant_type=client_credentials"),
    (basic("nobody", SECRET), "grant_type=client_credentials"),
    (None, "grant_type=client_credentials&client_id=svc&client_secret=wrong"),
    (None, "grant_type=client_credentials&client_id=svc"),
    (None, "grant_type=client_credentials"),
    ("Basic !!!notbase64", "grant_type=client_credentials"),
    ("Basic " + base64.b64encode(b"no-colon").decode(), "grant_type=client_credentials"),
    ("Basic " + base64.b64encode(b"svc:").decode(), "grant_type=client_credentials"),
    ("Basic " + base64.b64encode(b"\xff:\xfe").decode(), "grant_type=client_credentials"),
    ("Bearer abc", "grant_type=client_credentials"),
    (basic("svc" * 100, SECRET), "grant_type=client_credentials"),
])
def test_given_failed_authentication_when_requesting_then_invalid_client_401(store, keys, authorization, body):
    with pytest.raises(InvalidClientError) as info:
        token_request(store, keys, body, authorization)
    assert info.value.status_code == 401
    assert info.value.headers["WWW-Authenticate"].startswith("Basic")
    assert keys.signatures == 0


def test_given_unknown_client_or_wrong_secret_when_failing_then_same_answer(store, keys):
    errors = []
    for authorization in (basic("svc", "wrong"), basic("nobody", "wrong")):
        with pytest.raises(InvalidClientError) as info:
            token_request(store, keys, "grant_type=client_credentials", authorization)
        errors.append(info.value.body())
    assert errors[0] == errors[1]


def test_given_a_client_using_a_method_it_is_not_registered_for_when_requesting_then_invalid_client(store, keys):
    with pytest.raises(InvalidClientError, match="client_secret_basic"):
        token_request(store, keys, f"grant_type=client_credentials&client_id=svc&client_secret={SECRET}")
    with pytest.raises(InvalidClientError, match="client_secret_post"):
        token_request(store, keys, "grant_type=client_credentials", basic("poster", SECRET))


def test_given_a_disabled_client_when_requesting_then_invalid_client(store, keys):
    store.clients["svc"] = store.clients["svc"].with_changes(disabled=True)
    with pytest.raises(InvalidClientError, match="disabled"):
        token_request(store, keys, "grant_type=client_credentials", basic("svc", SECRET))


def test_given_an_expired_secret_and_a_current_one_when_requesting_then_only_the_current_works(store, keys):
    old = ClientSecret(store.clients["svc"].secrets[0].hash, created_at=NOW - 100, expires_at=NOW)
    new_secret = "tmsec_" + "n" * 43
    from tokenmint.oauth.credentials import hash_secret
    store.clients["svc"] = store.clients["svc"].with_changes(secrets=(old, ClientSecret(hash_secret(new_secret), NOW)))
    assert token_request(store, keys, "grant_type=client_credentials", basic("svc", new_secret))
    with pytest.raises(InvalidClientError):
        token_request(store, keys, "grant_type=client_credentials", basic("svc", SECRET))


def test_given_basic_with_percent_encoded_credentials_when_requesting_then_decoded_per_2_3_1(store, keys):
    odd_secret = "p@ss word+:/%"
    store.add_client("odd id", odd_secret, "tools:read")
    assert token_request(store, keys, "grant_type=client_credentials", basic("odd id", odd_secret))


@pytest.mark.parametrize("body, authorization, error", [
    ("", basic("svc", SECRET), InvalidRequestError),
    ("grant_type=password", basic("svc", SECRET), UnsupportedGrantTypeError),
    ("grant_type=client_credentials&grant_type=client_credentials", basic("svc", SECRET), InvalidRequestError),
    ("grant_type=client_credentials&scope=a++b", basic("svc", SECRET), InvalidScopeError),
    ("grant_type=client_credentials&resource=https://api.example.com/mcp%23frag", basic("svc", SECRET),
     InvalidTargetError),
    ("grant_type=client_credentials&resource=relative", basic("svc", SECRET), InvalidTargetError),
    ("grant_type=client_credentials&resource=https://x.example/&resource=https://y.example/", basic("svc", SECRET),
     InvalidTargetError),
    ("grant_type=client_credentials&resource=https://unknown.example.com/", basic("svc", SECRET),
     InvalidTargetError),
    (f"grant_type=client_credentials&client_secret={SECRET}", basic("svc", SECRET), InvalidRequestError),
    ("grant_type=client_credentials&client_id=other", basic("svc", SECRET), InvalidRequestError),
])
def test_given_a_malformed_request_when_requesting_then_the_rfc_error_and_nothing_signed(
        store, keys, body, authorization, error):
    with pytest.raises(error) as info:
        token_request(store, keys, body, authorization)
    assert type(info.value) is error
    assert keys.signatures == 0


def test_given_a_syntactically_bad_request_when_requesting_then_no_storage_read(store, keys):
    store.reads = 0
    with pytest.raises(UnsupportedGrantTypeError):
        token_request(store, keys, "grant_type=password", basic("svc", SECRET))
    assert store.reads == 0


def test_given_a_token_request_when_issued_then_one_client_read_and_one_signature(store, keys):
    store.reads = 0
    token_request(store, keys, f"grant_type=client_credentials&resource={quote(API)}", basic("svc", SECRET))
    assert keys.signatures == 1
    assert store.reads == 2  # client + resource; the AWS backend serves resources from its cache


def test_given_a_client_limited_to_resources_when_requesting_another_then_invalid_target(store, keys):
    store.add_resource("https://other.example.com/", "tools:read")
    store.clients["svc"] = store.clients["svc"].with_changes(resources=("https://api.example.com/mcp",))
    with pytest.raises(InvalidTargetError, match="may not"):
        token_request(store, keys, "grant_type=client_credentials&resource=https://other.example.com/",
                      basic("svc", SECRET))
    body = token_request(store, keys, "grant_type=client_credentials", basic("svc", SECRET)).body()  # unambiguous now
    assert decode(body["access_token"], keys)["aud"] == API


def test_given_tokens_in_quick_succession_when_issued_then_usage_recorded_once_per_resolution(store, keys):
    now = [NOW]
    for offset in (0, 10, 299):
        now[0] = NOW + offset
        token_request(store, keys, "grant_type=client_credentials", basic("svc", SECRET), clock=lambda: now[0])
    assert store.uses == [("svc", NOW)]
    now[0] = NOW + 300
    token_request(store, keys, "grant_type=client_credentials", basic("svc", SECRET), clock=lambda: now[0])
    assert store.uses == [("svc", NOW), ("svc", NOW + 300)]


def test_given_the_usage_write_is_throttled_when_issuing_then_the_token_is_still_returned(store, keys, monkeypatch):
    from tokenmint.ports import UnavailableError

    def throttled(*args):
        raise UnavailableError("DynamoDB update_item is unavailable")
    monkeypatch.setattr(store, "record_client_use", throttled)
    assert token_request(store, keys, "grant_type=client_credentials", basic("svc", SECRET)).body()["access_token"]


def test_given_a_failed_request_when_rejected_then_no_usage_recorded(store, keys):
    with pytest.raises(InvalidScopeError):
        token_request(store, keys, "grant_type=client_credentials&scope=tools:admin", basic("svc", SECRET))
    assert store.uses == []


@pytest.mark.parametrize("secrets", ["all expired", "none"])
def test_given_a_client_without_a_valid_secret_when_any_secret_is_sent_then_invalid_client(store, keys, secrets):
    from tokenmint.oauth.credentials import CLIENT_SECRET_PREFIX

    client = store.clients["svc"]
    remaining = () if secrets == "none" else tuple(
        ClientSecret(s.hash, s.created_at, expires_at=NOW) for s in client.secrets)
    store.clients["svc"] = client.with_changes(secrets=remaining)
    for guess in (SECRET, CLIENT_SECRET_PREFIX + "unknown-client", ""):
        with pytest.raises(InvalidClientError):
            token_request(store, keys, "grant_type=client_credentials", basic("svc", guess or "x"))
    assert keys.signatures == 0
