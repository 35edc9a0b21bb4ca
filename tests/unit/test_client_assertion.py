"""private_key_jwt (RFC 7523 §2.2, §3): assertions signed with PyJWT, checked at the token endpoint."""

import threading
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from support.fakes import InMemoryKeyStore, InMemoryStore
from support.hostile_http import MARGIN, document, drip, hostile_server, loopback_is_public, redirect
from tokenmint.oauth.client_assertion import ASSERTION_TYPE, ClientAssertionVerifier, HttpsJwksFetcher
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


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.9, 0.999])
def test_given_a_spent_assertion_then_no_second_of_its_acceptance_lets_it_be_replayed(world, keys, fraction):
    # Security review finding 8: an exp written by hand as time.time() + 300 (fractional) was
    # remembered until int(exp) + 60 but accepted while exp > now - 60: one replay in the last second.
    from tokenmint.verifier import MemoryReplayCache

    store = world[0]
    clock = Clock(NOW)
    verifier = ClientAssertionVerifier(replay=MemoryReplayCache(clock=clock), jwks_fetcher=NoFetch())
    value = assertion(keys, exp=NOW + 10 + fraction)
    assert verifier.authenticate(value, None, store.get_client, audiences=(ISSUER,), now=NOW).client_id == "agent"
    outcomes = set()
    for now in range(NOW + 1, NOW + 10 + 60 + 3):  # every second until well after it expired
        clock.now = now
        with pytest.raises(InvalidClientError) as refused:
            verifier.authenticate(value, None, store.get_client, audiences=(ISSUER,), now=now)
        outcomes.add(refused.value.description)
    assert outcomes == {"the client assertion was already used", "the client assertion has expired"}


# -- a client's jwks_uri, through the token function (security review findings 2, 3 and 7) --------
def jwks_uri_world(keys, url: str, deadline: float):
    """The token function (lambda_handler) with one client whose keys are at ``url``, fetched by the
    production code with a test policy (keys.example is 127.0.0.1, standing in for a public host)."""
    from tokenmint import runtime
    from tokenmint.config import Settings
    from tokenmint.outbound import fetch_json

    store = InMemoryStore()
    store.add_resource(API, "tools:read")
    store.create_client(Client("agent", "private_key_jwt", ("tools:read",), NOW, metadata={"jwks_uri": url}))
    backend = runtime.Backend(Settings(issuer=ISSUER), store, store, InMemoryKeyStore(), store, store,
                              clock=lambda: NOW)
    policy = loopback_is_public(deadline=deadline)
    backend.assertions = ClientAssertionVerifier(replay=store, jwks_fetcher=HttpsJwksFetcher(
        lambda address: fetch_json(address, policy)))
    runtime.install(backend)
    return backend


def token_event(keys, value: str | None = None) -> dict:
    from urllib.parse import urlencode

    from tokenmint.server import build_event

    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": value or assertion(keys)}
    return build_event("POST", "/token", {"content-type": "application/x-www-form-urlencoded"},
                       urlencode(form).encode(), domain="as.example.com", source_ip="192.0.2.1")


def call_token_function(event: dict) -> dict:
    import json

    from tokenmint.handlers import token
    from tokenmint.server import lambda_context

    response = token.lambda_handler(event, lambda_context("token"))
    return {"status": response["statusCode"], "body": json.loads(response["body"])}


@pytest.fixture
def audit_events():
    from tokenmint import runtime
    from tokenmint.observability import install_audit_sink, remove_audit_sink

    events: list[dict] = []
    install_audit_sink(events.append)
    yield events
    remove_audit_sink(events.append)
    runtime.install(None)


JWKS_URI_FAILURES = {
    "refused": None,  # nothing listens
    "404": document({"error": "not found"}, 404),
    "html": document(b"<html>keys</html>", content_type="text/html"),
    "array": document([{"kty": "EC"}]),  # was AttributeError: 500
    "nested": document(b"[" * 20_000 + b"]" * 20_000),  # was RecursionError: 500
    "not a jwk set": document({"keys": "none"}),
    "redirect": redirect("http://127.0.0.1/jwks"),
    "drip": drip(0.2),
}


def test_given_any_failing_jwks_uri_when_a_token_is_requested_then_one_generic_invalid_client_and_the_detail_audited(
        keys, audit_events):
    answers, details = [], []
    with hostile_server({f"/{name}": behaviour for name, behaviour in JWKS_URI_FAILURES.items() if behaviour}) as host:
        for name in JWKS_URI_FAILURES:
            url = host.url(f"/{name}", "keys.example") if JWKS_URI_FAILURES[name] else "http://keys.example:9/jwks"
            jwks_uri_world(keys, url, deadline=0.6)
            answers.append(call_token_function(token_event(keys)))
            details.append(audit_events[-1].get("detail"))
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0] == {"status": 401, "body": {"error": "invalid_client",
                                                  "error_description": "the client's jwks_uri cannot be used"}}
    assert all(details) and len(set(details)) == len(details)  # the audit log tells them apart
    assert {event["action"] for event in audit_events} == {"token.denied"}
    assert all(event["client_id"] == "agent" for event in audit_events)


def test_given_a_jwks_uri_that_drips_when_a_token_is_requested_then_invalid_client_within_the_deadline(
        keys, audit_events):
    with hostile_server({"/jwks": drip(0.3)}) as host:
        jwks_uri_world(keys, host.url("/jwks", "keys.example"), deadline=1.0)
        started = time.monotonic()
        answer = call_token_function(token_event(keys))
        elapsed = time.monotonic() - started
    assert answer["status"] == 401 and answer["body"]["error"] == "invalid_client"
    assert elapsed < 1.0 + MARGIN
    assert "within 1 s" in audit_events[-1]["detail"]


def test_given_a_dripping_jwks_uri_when_the_embedded_server_is_busy_with_it_then_discovery_waits_no_longer_than_the_deadline(
        keys, audit_events):
    from tokenmint.server import build_event, invoke

    with hostile_server({"/jwks": drip(0.2)}) as host:
        jwks_uri_world(keys, host.url("/jwks", "keys.example"), deadline=1.0)
        started = time.monotonic()
        answers: list[dict] = []
        worker = threading.Thread(target=lambda: answers.append(
            invoke("tokenmint.handlers.token", "token", token_event(keys))), daemon=True)
        worker.start()
        stop = started + 2
        while not host.seen and time.monotonic() < stop:  # the token invocation is fetching now
            time.sleep(0.01)
        discovery = invoke("tokenmint.handlers.discovery", "discovery", build_event(
            "GET", "/.well-known/oauth-authorization-server", {}, b"", domain="as.example.com", source_ip="192.0.2.2"))
        answered_after = time.monotonic() - started
        worker.join(timeout=5)
    assert discovery["statusCode"] == 200
    assert answered_after < 1.0 + MARGIN  # was: until the host stopped dripping
    assert answers and answers[0]["statusCode"] == 401


@pytest.mark.parametrize("segment", ["header", "claims"])
def test_given_an_assertion_nested_thousands_deep_when_a_token_is_requested_then_invalid_client_not_a_500(
        keys, audit_events, segment):
    from support.nested_jwt import nested_jwt

    jwks_uri_world(keys, "http://keys.example:9/jwks", deadline=0.5)
    answer = call_token_function(token_event(keys, nested_jwt({"alg": "ES256"}, {"iss": "agent", "sub": "agent"},
                                                               segment)))
    assert answer == {"status": 401, "body": {"error": "invalid_client",
                                              "error_description": "the client assertion is not a well-formed JWT"}}


@pytest.mark.parametrize("dev", [False, True])
def test_given_the_composed_backend_then_jwks_uri_fetches_keep_the_configured_deadline_and_address_policy(
        tmp_path, dev):
    from tokenmint import runtime
    from tokenmint.config import Settings

    backend = runtime.open_backend(Settings(data_dir=tmp_path, fetch_deadline=0.5, allow_private_jwks_uri=dev))
    with hostile_server({"/jwks": drip(0.2)}) as host:
        started = time.monotonic()
        with pytest.raises(OSError) as failed:
            backend.assertions.jwks_fetcher.fetch(host.url("/jwks"))
        elapsed = time.monotonic() - started
        seen = list(host.seen)
    if dev:  # tokenmint serve --dev: loopback over http is allowed, and the deadline ends the drip
        assert seen and 0.5 <= elapsed < 0.5 + MARGIN
    else:  # production: a client's jwks_uri may not point at loopback or plain http
        assert not seen and "may not reach" in failed.value.detail


def test_given_a_jwks_uri_that_failed_then_it_is_not_fetched_again_for_a_while():
    # A host that stalls until the fetch deadline costs one wait, not one per request
    calls = []

    def stalls(url):
        calls.append(url)
        raise OSError("no complete answer within the deadline")

    clock = Clock(0.0)
    fetcher = HttpsJwksFetcher(get_document=stalls, failure_seconds=10, clock=clock)
    for _ in range(3):
        with pytest.raises(OSError):
            fetcher.fetch("https://keys.example.com/jwks")
    assert len(calls) == 1
    clock.now = 10.5
    with pytest.raises(OSError):
        fetcher.fetch("https://keys.example.com/jwks")
    assert len(calls) == 2
