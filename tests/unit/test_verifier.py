"""The resource-server verifier (RFC 9068 §4), against tokens signed by PyJWT, not by tokenmint."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from support.hostile_http import MARGIN, document, drip, hostile_server, loopback_is_public, redirect
from tokenmint.oauth.jwk import public_jwk
from tokenmint.verifier import LocalKeys, RemoteJwks, TokenRejected, TokenVerifier, VerifiedToken

ISSUER = "https://as.example.com"
API = "https://api.example.com/mcp"
NOW = int(time.time())


@pytest.fixture(scope="module")
def key():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return private, public_jwk(private.public_key(), "RS256")


def sign(key, *, headers=None, alg="RS256", signing_key=None, **claims) -> str:
    private, jwk = key
    body = {"iss": ISSUER, "sub": "c1", "client_id": "c1", "aud": API, "iat": NOW, "exp": NOW + 300,
            "jti": "j1", "scope": "tools:read tools:write", **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, signing_key or private, algorithm=alg,
                      headers={"typ": "at+jwt", "kid": jwk["kid"], **(headers or {})})


def verifier(key, **kwargs) -> TokenVerifier:
    # The verifier's clock is the tokens' NOW, not the wall clock: the suite may run for minutes
    kwargs.setdefault("clock", lambda: NOW)
    return TokenVerifier(issuer=ISSUER, audience=API, keys=LocalKeys(lambda: [key[1]]), **kwargs)


def test_given_a_valid_token_when_verified_then_its_claims(key):
    verified = verifier(key).verify(sign(key), required_scopes=["tools:read"])
    assert (verified.client_id, verified.scopes, verified.audience) == ("c1", ("tools:read", "tools:write"), API)


@pytest.mark.parametrize("make, message", [
    (lambda k: sign(k, headers={"typ": "JWT"}), "typ"),
    (lambda k: sign(k, aud="https://other.example.com/"), "another resource"),
    (lambda k: sign(k, iss="https://evil.example.com"), "invalid"),
    (lambda k: sign(k, exp=NOW - 120, iat=NOW - 420), "expired"),
    (lambda k: sign(k, iat=NOW + 600, exp=NOW + 900), "not yet valid"),
    (lambda k: sign(k, nbf=NOW + 600), "not yet valid"),
    (lambda k: sign(k, exp=float("nan")), "malformed"),  # NaN passes every comparison
    (lambda k: sign(k, jti=None), "invalid"),
    (lambda k: sign(k, client_id=None), "RFC 9068"),
    (lambda k: sign(k, headers={"kid": "unknown"}), "not signed by a key"),
    (lambda k: sign(k, signing_key=rsa.generate_private_key(public_exponent=65537, key_size=2048)), "invalid"),
    (lambda k: sign(k, alg="HS256", signing_key="a-shared-secret-that-is-long-enough-for-hs256"), "algorithm"),
    (lambda k: jwt.encode({"iss": ISSUER}, None, algorithm="none", headers={"typ": "at+jwt"}), "algorithm"),
    (lambda k: "not.a.jwt", "malformed"),
    (lambda k: "", "malformed"),
    (lambda k: "x" * 10_000, "malformed"),
])
def test_given_a_bad_token_when_verified_then_invalid_token_401(key, make, message):
    with pytest.raises(TokenRejected, match=message) as info:
        verifier(key).verify(make(key))
    assert info.value.error == "invalid_token" and info.value.status_code == 401


def test_given_an_rs256_key_when_an_es256_token_claims_its_kid_then_refused(key):
    es = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TokenRejected):
        verifier(key).verify(sign(key, alg="ES256", signing_key=es))


def test_given_a_missing_scope_when_verified_then_insufficient_scope_403_naming_it(key):
    with pytest.raises(TokenRejected) as info:
        verifier(key).verify(sign(key, scope="tools:read"), required_scopes=["tools:admin"])
    assert (info.value.error, info.value.status_code, info.value.scope) == ("insufficient_scope", 403, "tools:admin")
    challenge = info.value.challenge("https://api.example.com/.well-known/oauth-protected-resource/mcp")
    assert 'error="insufficient_scope"' in challenge and 'scope="tools:admin"' in challenge
    assert 'resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp"' in challenge


def test_given_a_revocation_check_when_it_says_revoked_then_invalid_token(key):
    class Revoked:
        def is_revoked(self, token: VerifiedToken) -> bool:
            return token.jti == "j1"

    with pytest.raises(TokenRejected, match="revoked"):
        verifier(key, revocation=Revoked()).verify(sign(key))
    assert verifier(key, revocation=Revoked()).verify(sign(key, jti="j2"))


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 whose keys the test changes; counts fetches."""

    def __init__(self) -> None:
        self.keys: list[dict] = []
        self.fetches = 0
        self.fail = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.fetches += 1
                if outer.fail:
                    self.send_error(503)
                    return
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def jwks_server():
    server = JwksServer()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_given_a_remote_jwks_when_a_new_kid_appears_then_refetched_at_once_but_rate_limited(key, jwks_server):
    now = [0.0]
    remote = RemoteJwks(jwks_server.url, ttl=300, min_refresh_interval=10, clock=lambda: now[0])
    check = TokenVerifier(issuer=ISSUER, audience=API, keys=remote, clock=lambda: NOW)
    with pytest.raises(TokenRejected):
        check.verify(sign(key))  # no keys published yet
    jwks_server.keys = [key[1]]
    with pytest.raises(TokenRejected):
        check.verify(sign(key))  # within the rate limit: no new fetch
    now[0] = 11
    assert check.verify(sign(key)).client_id == "c1"  # unknown kid → refetch
    fetches = jwks_server.fetches
    for _ in range(5):
        check.verify(sign(key))
    assert jwks_server.fetches == fetches  # cached


def test_given_the_jwks_endpoint_fails_when_refreshing_then_the_cached_keys_keep_working(key, jwks_server):
    now = [0.0]
    jwks_server.keys = [key[1]]
    remote = RemoteJwks(jwks_server.url, ttl=300, min_refresh_interval=10, clock=lambda: now[0])
    check = TokenVerifier(issuer=ISSUER, audience=API, keys=remote, clock=lambda: NOW)
    assert check.verify(sign(key))
    jwks_server.fail = True
    now[0] = 400  # stale: a refresh is attempted and fails
    assert check.verify(sign(key))


def test_given_a_long_early_refresh_limit_when_the_cache_expires_then_it_still_refreshes(key, jwks_server):
    now = [0.0]
    remote = RemoteJwks(jwks_server.url, ttl=300, min_refresh_interval=float("inf"), clock=lambda: now[0])
    check = TokenVerifier(issuer=ISSUER, audience=API, keys=remote, clock=lambda: NOW)
    with pytest.raises(TokenRejected):
        check.verify(sign(key))  # nothing published at the first fetch
    jwks_server.keys = [key[1]]
    now[0] = 301  # stale: the TTL refresh is not an early one and must happen
    assert check.verify(sign(key))


# -- outbound fetches of a resource server (security review findings 2, 3 and 7) -----------------
@pytest.mark.parametrize("behaviour", [drip(0.3), document([0, 1, 2]), document(b"[" * 20_000 + b"]" * 20_000),
                                       redirect("/jwks-moved")], ids=["drip", "array", "nested", "redirect"])
def test_given_an_issuer_jwks_that_drips_redirects_or_is_not_an_object_then_the_token_is_refused_within_the_deadline(
        key, behaviour):
    with hostile_server({"/jwks": behaviour, "/jwks-moved": document({"keys": [key[1]]})}) as host:
        remote = RemoteJwks(host.url("/jwks", "keys.example"), policy=loopback_is_public(deadline=1.0))
        started = time.monotonic()
        with pytest.raises(TokenRejected, match="not signed by a key"):
            TokenVerifier(issuer=ISSUER, audience=API, keys=remote, clock=lambda: NOW).verify(sign(key))
        assert time.monotonic() - started < 2 * (1.0 + MARGIN)  # a fetch, and at most one early refetch
        assert "/jwks-moved" not in host.paths()


@pytest.mark.parametrize("segment", ["header", "claims"])
def test_given_an_access_token_nested_thousands_deep_then_invalid_token_not_a_crash(key, segment):
    from support.nested_jwt import nested_jwt

    with pytest.raises(TokenRejected, match="malformed") as refused:
        verifier(key).verify(nested_jwt({"typ": "at+jwt", "alg": "RS256"}, {}, segment))
    assert refused.value.error == "invalid_token"


@pytest.mark.parametrize("status", [302, 307])
def test_given_an_introspection_endpoint_that_redirects_then_the_token_is_refused_and_no_credentials_go_elsewhere(
        key, status):
    from tokenmint.verifier import IntrospectionRevocationCheck

    with hostile_server({"/introspect": document({"active": True})}) as elsewhere:
        with hostile_server({"/introspect": redirect(elsewhere.url("/introspect"), status)}) as issuer:
            check = IntrospectionRevocationCheck(issuer.url("/introspect", "keys.example"), "rs",
                                                 "tmsec_" + "r" * 43, policy=loopback_is_public())
            with pytest.raises(TokenRejected, match="revocation status cannot be checked"):
                verifier(key, revocation=check).verify(sign(key))
            assert issuer.seen[0].headers["Authorization"].startswith("Basic ")
        assert elsewhere.seen == []  # neither the credentials nor the token went to the other host


def test_given_an_introspection_endpoint_that_answers_then_active_tokens_pass_and_inactive_ones_are_revoked(key):
    from tokenmint.verifier import IntrospectionRevocationCheck

    for active in (True, False):
        with hostile_server({"/introspect": document({"active": active})}) as issuer:
            check = IntrospectionRevocationCheck(issuer.url("/introspect", "keys.example"), "rs",
                                                 "tmsec_" + "r" * 43, policy=loopback_is_public())
            if active:
                assert verifier(key, revocation=check).verify(sign(key)).client_id == "c1"
            else:
                with pytest.raises(TokenRejected, match="revoked"):
                    verifier(key, revocation=check).verify(sign(key))
            assert issuer.seen[0].method == "POST" and b"token_type_hint=access_token" in issuer.seen[0].body
