"""RFC 7009 revocation and RFC 7662 introspection on in-memory ports."""

import base64
import time

import pytest

from support.fakes import InMemoryKeyStore, InMemoryStore
from tokenmint.oauth.access_token import issue_access_token
from tokenmint.oauth.errors import InvalidClientError, InvalidRequestError, UnauthorizedClientError
from tokenmint.oauth.form import parse_form
from tokenmint.oauth.revocation import TokenStatusEndpoints

ISSUER = "https://as.example.com"
API = "https://api.example.com/mcp"
OTHER = "https://other.example.com/"
SECRET = "tmsec_" + "r" * 43
NOW = int(time.time())


def basic(client_id: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{SECRET}".encode()).decode()


@pytest.fixture
def world():
    store, keys = InMemoryStore(), InMemoryKeyStore()
    store.add_resource(API, "tools:read")
    store.add_resource(OTHER, "tools:read")
    store.add_client("agent", SECRET, "tools:read")
    store.add_client("other-agent", SECRET, "tools:read")
    store.add_client("rs", SECRET, "", introspect=True)
    store.add_client("rs-api-only", SECRET, "", introspect=True, introspect_resources=(API,))
    return store, keys, TokenStatusEndpoints(store, store, keys, lambda: NOW)


def token_for(world, client_id="agent", audience=API, issued=NOW, lifetime=600, issuer=ISSUER) -> str:
    store, keys, _ = world
    return issue_access_token(issuer=issuer, client_id=client_id, audience=audience, scopes=("tools:read",),
                              lifetime=lifetime, now=issued, key=keys.key).value


def form(**fields) -> object:
    from urllib.parse import urlencode
    return parse_form(urlencode(fields).encode(), "application/x-www-form-urlencoded")


def introspect(world, token, caller="rs") -> dict:
    return world[2].introspect(form(token=token), basic(caller), ISSUER).body


def test_given_an_active_token_when_introspected_then_the_rfc7662_claims(world):
    body = introspect(world, token_for(world))
    assert body["active"] is True and body["token_type"] == "Bearer"
    assert (body["client_id"], body["sub"], body["aud"], body["iss"], body["scope"]) == (
        "agent", "agent", API, ISSUER, "tools:read")
    assert body["exp"] == NOW + 600 and body["iat"] == NOW and body["jti"]


def test_given_a_clients_own_token_when_revoked_then_inactive_and_kept_until_its_exp(world):
    store, _, endpoints = world
    token = token_for(world)
    result = endpoints.revoke(form(token=token, token_type_hint="access_token"), basic("agent"), ISSUER)
    assert result.revoked_jti and store.revoked[result.revoked_jti] == NOW + 600 + 60  # exp + verifier skew
    assert introspect(world, token) == {"active": False}


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 9000])
def test_given_garbage_when_revoked_then_200_and_nothing_written(world, token):
    store, _, endpoints = world
    assert endpoints.revoke(form(token=token), basic("agent"), ISSUER).revoked_jti is None
    assert store.revoked == {}


def test_given_another_clients_token_when_revoked_then_200_and_it_stays_active(world):
    store, _, endpoints = world
    token = token_for(world, client_id="other-agent")
    assert endpoints.revoke(form(token=token), basic("agent"), ISSUER).revoked_jti is None
    assert introspect(world, token)["active"] is True


def test_given_no_token_or_no_authentication_then_rfc_errors(world):
    endpoints = world[2]
    with pytest.raises(InvalidRequestError):
        endpoints.revoke(form(), basic("agent"), ISSUER)
    with pytest.raises(InvalidClientError):
        endpoints.revoke(form(token=token_for(world)), None, ISSUER)
    with pytest.raises(InvalidClientError):
        endpoints.introspect(form(token=token_for(world)), None, ISSUER)


def test_given_a_caller_without_the_permission_when_introspecting_then_403(world):
    with pytest.raises(UnauthorizedClientError) as info:
        introspect(world, token_for(world), caller="agent")
    assert info.value.status_code == 403


def test_given_a_caller_limited_to_a_resource_when_introspecting_another_then_it_learns_nothing(world):
    assert introspect(world, token_for(world, audience=API), caller="rs-api-only")["active"] is True
    assert introspect(world, token_for(world, audience=OTHER), caller="rs-api-only") == {"active": False}


@pytest.mark.parametrize("make", [
    lambda w: token_for(w, issued=NOW - 700, lifetime=600),   # expired
    lambda w: token_for(w, issued=NOW + 600),                 # not yet valid
    lambda w: token_for(w, issuer="https://evil.example.com"),  # foreign issuer
    lambda w: token_for(w)[:-4] + "AAAA",                     # wrongly signed
    lambda w: "garbage",
])
def test_given_a_token_that_is_not_active_when_introspected_then_only_active_false(world, make):
    assert introspect(world, make(world)) == {"active": False}


def test_given_a_disabled_deleted_or_token_revoked_client_when_introspected_then_inactive(world):
    store = world[0]
    token = token_for(world)
    store.clients["agent"] = store.clients["agent"].with_changes(disabled=True)
    assert introspect(world, token) == {"active": False}
    store.clients["agent"] = store.clients["agent"].with_changes(disabled=False, tokens_not_before=NOW + 1)
    assert introspect(world, token) == {"active": False}
    later = (store, world[1], TokenStatusEndpoints(store, store, world[1], lambda: NOW + 1))
    assert introspect(later, token_for(world, issued=NOW + 1))["active"] is True  # later tokens are fine
    del store.clients["agent"]
    assert introspect(later, token_for(world, issued=NOW + 1)) == {"active": False}


def test_given_a_key_removed_from_the_jwks_when_introspected_then_its_tokens_are_inactive(world):
    token = token_for(world)
    world[1].jwk = {**world[1].jwk, "kid": "another-key"}
    assert introspect(world, token) == {"active": False}


def test_given_a_revoked_token_just_past_exp_when_a_lenient_verifier_checks_it_then_still_revoked(world):
    from tokenmint.verifier import LocalKeys, StoreRevocationCheck, TokenRejected, TokenVerifier

    store, keys, endpoints = world
    token = token_for(world, lifetime=60)
    endpoints.revoke(form(token=token), basic("agent"), ISSUER)
    entry_until = max(store.revoked.values())
    # a resource server allowing 30 s of skew still accepts the token's times at exp + 29 s …
    verifier = TokenVerifier(issuer=ISSUER, audience=API, keys=LocalKeys(lambda: [keys.jwk]), leeway=30,
                             revocation=StoreRevocationCheck(store, store), clock=lambda: NOW + 60 + 29)
    assert entry_until >= NOW + 60 + 30  # … so the revocation entry must outlive that window
    with pytest.raises(TokenRejected, match="revoked"):
        verifier.verify(token)
    # and introspection, with no leeway, calls it inactive the moment it expires
    late = TokenStatusEndpoints(store, store, keys, lambda: NOW + 60)
    assert late.introspect(form(token=token_for(world, lifetime=60)), basic("rs"), ISSUER).body == {"active": False}


def test_the_introspection_revocation_check_never_shows_its_secret():
    from tokenmint.verifier import IntrospectionRevocationCheck

    check = IntrospectionRevocationCheck("https://as.example.com/introspect", "rs", "tmsec_do_not_show")
    assert "tmsec_do_not_show" not in repr(check)
