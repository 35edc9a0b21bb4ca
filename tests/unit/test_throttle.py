"""Failed-authentication throttling and registration limits (oauth/throttle.py), on in-memory ports
with a clock the tests move: the grant, the revocation endpoint and the registration endpoint as a
client meets them, and the 429 as the token handler answers it."""

import base64
import json
import uuid
from urllib.parse import quote, urlencode

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from support.fakes import NOW, InMemoryKeyStore, InMemoryStore
from tokenmint import runtime
from tokenmint.config import ConfigError, Settings
from tokenmint.handlers import token as token_handler
from tokenmint.oauth.client_assertion import ASSERTION_TYPE, ClientAssertionVerifier
from tokenmint.oauth.client_credentials import ClientCredentialsGrant
from tokenmint.oauth.errors import InvalidClientError, InvalidTokenError
from tokenmint.oauth.form import parse_form
from tokenmint.oauth.jwk import public_jwk
from tokenmint.oauth.models import MAX_AUTH_BLOCKS, Client, RegistrationPolicy
from tokenmint.oauth.registration import ClientRegistrationEndpoint, new_initial_access_token
from tokenmint.oauth.revocation import TokenStatusEndpoints
from tokenmint.oauth.throttle import AuthenticationThrottle, ThrottledError, ThrottlePolicy, source_key
from tokenmint.ports import UnavailableError
from tokenmint.server import build_event, lambda_context

ISSUER = "https://as.example.com"
API = "https://api.example.com/mcp"
SECRET = "tmsec_" + "s" * 43
WRONG = "tmsec_" + "w" * 43
ATTACKER, OFFICE = "198.51.100.7", "203.0.113.20"
POLICY = ThrottlePolicy(window=60, failures_per_client_source=5, failures_per_source=12, registrations_per_source=3)
START = NOW - NOW % 60  # the tests start at the beginning of a window


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store():
    store = InMemoryStore()
    store.add_resource(API, "tools:read")
    store.add_client("svc", SECRET, "tools:read")
    return store


@pytest.fixture
def grant(store, clock):
    return ClientCredentialsGrant(store, store, InMemoryKeyStore(), clock,
                                  throttle=AuthenticationThrottle(store, POLICY))


def request_token(grant, client_id="svc", secret=SECRET, source=ATTACKER):
    """The grant's answer: the response body, or the OAuth error it raised."""
    form = parse_form(urlencode({"grant_type": "client_credentials", "resource": API}).encode(),
                      "application/x-www-form-urlencoded")
    authorization = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    try:
        return grant.create_token_response(form, authorization, ISSUER, source_ip=source).body()
    except (InvalidClientError, ThrottledError) as exc:
        return exc


def outcome(answer) -> str:
    return "token" if isinstance(answer, dict) else f"{answer.status_code} {answer.error}"


# -- the policy ----------------------------------------------------------------------------------
@pytest.mark.parametrize("now, window, expected", [(120, 60, (120, 180)), (179, 60, (120, 180)),
                                                    (1_800_000_007, 5, (1_800_000_005, 1_800_000_010))])
def test_windows_are_fixed_and_aligned(now, window, expected):
    assert ThrottlePolicy(window=window).window_at(now) == expected


@pytest.mark.parametrize("fields", [{"window": 0}, {"failures_per_source": -1}])
def test_a_nonsensical_policy_is_refused(fields):
    with pytest.raises(ValueError):
        ThrottlePolicy(**fields)


@pytest.mark.parametrize("variable, value", [("TOKENMINT_AUTH_FAILURE_WINDOW", "0"),
                                             ("TOKENMINT_AUTH_FAILURES_PER_SOURCE", "-1"),
                                             ("TOKENMINT_REGISTRATIONS_PER_SOURCE", "many")])
def test_bad_throttle_settings_fail_at_start_naming_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_settings_default_to_dozens_of_failures_a_minute_and_read_the_environment():
    default = Settings.from_env({})
    assert (default.auth_failure_window, default.auth_failures_per_client_source, default.auth_failures_per_source,
            default.registrations_per_source) == (60, 30, 100, 20)
    tuned = Settings.from_env({"TOKENMINT_AUTH_FAILURE_WINDOW": "5", "TOKENMINT_AUTH_FAILURES_PER_CLIENT_SOURCE": "0"})
    assert (tuned.auth_failure_window, tuned.auth_failures_per_client_source) == (5, 0)


@pytest.mark.parametrize("ip, key", [
    ("198.51.100.7", "198.51.100.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # same /64: same source
    ("::ffff:198.51.100.7", "198.51.100.7"),  # an IPv4 client seen through a dual-stack socket
    ("", "unknown"), (None, "unknown"), ("not an address", "unknown"),
])
def test_sources_are_ipv4_addresses_and_ipv6_64s(ip, key):
    assert source_key(ip) == key


# -- failed client authentication at the token endpoint -----------------------------------------
def test_given_wrong_secrets_from_one_source_then_429_until_the_window_ends_and_other_sources_unaffected(
        grant, store, clock):
    # Given the limit's worth of wrong secrets for svc from the attacker's address
    answers = [request_token(grant, secret=WRONG) for _ in range(POLICY.failures_per_client_source)]
    assert [outcome(a) for a in answers] == ["401 invalid_client"] * 5

    # Then the attacker's address is refused, even with the right secret, which is not even checked
    clock.now += 10
    refused = request_token(grant, secret=SECRET)
    assert outcome(refused) == "429 temporarily_unavailable"
    assert refused.headers == {"Retry-After": "50"}  # the rest of the window
    assert "retry after 50 seconds" in refused.description and SECRET not in refused.description
    # while svc itself, from its own address, gets its token
    assert outcome(request_token(grant, secret=SECRET, source=OFFICE)) == "token"

    # And when the window has passed, the right secret from the attacker's address works again
    clock.now = START + 60
    assert outcome(request_token(grant, secret=SECRET)) == "token"


def test_given_a_blocked_known_client_and_an_unknown_id_past_the_limit_then_they_cost_the_same(grant, store, clock):
    # Given one source blocked for svc, and another over the limit for an id that does not exist
    tried = {"svc": ATTACKER, "tmc_nobody": "198.51.100.8"}
    for client_id, source in tried.items():
        for _ in range(POLICY.failures_per_client_source):
            request_token(grant, client_id, WRONG, source=source)
    costs = {}
    for client_id, source in tried.items():
        reads, writes = store.reads, store.writes
        # When each is tried again (fewer times than it takes to reach the per-source limit)
        answers = {outcome(request_token(grant, client_id, WRONG, source=source)) for _ in range(3)}
        assert answers == {"429 temporarily_unavailable"}
        costs[client_id] = (store.reads - reads, store.writes - writes)
    # Then the store sees the same reads and writes: nothing tells which client id exists
    assert costs["svc"] == costs["tmc_nobody"] == (3, 6)


def test_given_a_successful_token_then_the_throttle_adds_no_read_and_no_write(grant, store, clock):
    unthrottled = ClientCredentialsGrant(store, store, InMemoryKeyStore(), clock)
    reads = store.reads
    assert outcome(request_token(unthrottled, source=OFFICE)) == "token"
    baseline, reads = store.reads - reads, store.reads
    assert outcome(request_token(grant, source=OFFICE)) == "token"
    assert store.reads - reads == baseline and store.writes == 0


def test_given_an_unknown_client_id_then_the_answers_are_those_of_a_known_one(grant):
    # Enumeration: a guessed id that does not exist is answered exactly like svc
    known = [outcome(request_token(grant, "svc", WRONG)) for _ in range(7)]
    unknown = [outcome(request_token(grant, "tmc_nobody", WRONG)) for _ in range(7)]
    assert known == unknown == ["401 invalid_client"] * 5 + ["429 temporarily_unavailable"] * 2


def test_given_one_source_spraying_client_ids_then_it_is_refused_unchecked_past_the_source_limit(grant, store, clock):
    answers = [outcome(request_token(grant, f"tmc_guess{i}", WRONG)) for i in range(POLICY.failures_per_source + 2)]
    assert answers == ["401 invalid_client"] * 12 + ["429 temporarily_unavailable"] * 2
    # Past the limit nothing from that source is checked, so even a right secret gains nothing
    # (security review finding 5): no read, no write, a 429 until the window ends
    reads, writes = store.reads, store.writes
    assert outcome(request_token(grant, "svc", SECRET)) == "429 temporarily_unavailable"
    assert (store.reads, store.writes) == (reads, writes)
    # another source is not affected
    assert outcome(request_token(grant, "tmc_guess0", WRONG, source=OFFICE)) == "401 invalid_client"
    assert outcome(request_token(grant, "svc", SECRET, source=OFFICE)) == "token"
    clock.now = START + 60  # the next window
    assert outcome(request_token(grant, "svc", SECRET)) == "token"


def test_given_an_ipv6_attacker_when_it_hops_addresses_within_its_64_then_it_is_one_source(grant):
    answers = [outcome(request_token(grant, secret=WRONG, source=f"2001:db8:7:7::{i:x}")) for i in range(1, 8)]
    assert answers == ["401 invalid_client"] * 5 + ["429 temporarily_unavailable"] * 2
    assert outcome(request_token(grant, source="2001:db8:7:8::1")) == "token"  # the next /64


def test_given_an_unavailable_counter_store_then_the_failure_is_still_a_401(store, clock):
    class Failing(InMemoryStore):
        def add_to_counter(self, key, *, now, expires_at):
            raise UnavailableError("throttled")
    failing = Failing()
    failing.clients, failing.resources = store.clients, store.resources
    grant = ClientCredentialsGrant(failing, failing, InMemoryKeyStore(), clock,
                                   throttle=AuthenticationThrottle(failing, POLICY))
    assert [outcome(request_token(grant, secret=WRONG)) for _ in range(8)] == ["401 invalid_client"] * 8


def test_given_limits_of_zero_then_nothing_is_counted(store, clock):
    off = AuthenticationThrottle(store, ThrottlePolicy(failures_per_client_source=0, failures_per_source=0))
    grant = ClientCredentialsGrant(store, store, InMemoryKeyStore(), clock, throttle=off)
    assert {outcome(request_token(grant, secret=WRONG)) for _ in range(40)} == {"401 invalid_client"}
    assert store.writes == 0


def test_given_many_attacking_sources_then_a_clients_blocks_stay_bounded(grant, store):
    for n in range(MAX_AUTH_BLOCKS + 3):
        for _ in range(POLICY.failures_per_client_source):
            request_token(grant, secret=WRONG, source=f"192.0.2.{n}")
    assert 1 <= len(store.clients["svc"].auth_blocks) <= MAX_AUTH_BLOCKS
    # whatever was dropped to make room, every attacking source is still answered 429
    answers = {outcome(request_token(grant, secret=WRONG, source=f"192.0.2.{n}")) for n in range(MAX_AUTH_BLOCKS + 3)}
    assert answers == {"429 temporarily_unavailable"}


def test_given_a_private_key_jwt_client_then_forged_assertions_count_and_block_its_source(store, clock):
    key = ec.generate_private_key(ec.SECP256R1())
    store.create_client(Client("agent", "private_key_jwt", ("tools:read",), NOW,
                               metadata={"jwks": {"keys": [public_jwk(key.public_key(), "ES256")]}}))

    class Replay:
        def use_once(self, key, expires_at):
            return True
    grant = ClientCredentialsGrant(store, store, InMemoryKeyStore(), clock,
                                   ClientAssertionVerifier(replay=Replay(), jwks_fetcher=None),
                                   throttle=AuthenticationThrottle(store, POLICY))

    def assertion(signer):
        now = int(clock())
        return jwt.encode({"iss": "agent", "sub": "agent", "aud": ISSUER, "iat": now, "exp": now + 60,
                           "jti": str(uuid.uuid4())}, signer, algorithm="ES256")

    def attempt(signer, source=ATTACKER):
        form = parse_form(urlencode({"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                                     "client_assertion": assertion(signer)}).encode(),
                          "application/x-www-form-urlencoded")
        try:
            return outcome(grant.create_token_response(form, None, ISSUER, source_ip=source).body())
        except (InvalidClientError, ThrottledError) as exc:
            return outcome(exc)

    forger = ec.generate_private_key(ec.SECP256R1())
    assert [attempt(forger) for _ in range(6)] == ["401 invalid_client"] * 5 + ["429 temporarily_unavailable"]
    assert attempt(key) == "429 temporarily_unavailable"  # refused before the signature is checked
    assert attempt(key, source=OFFICE) == "token"


def test_given_failures_at_the_revocation_endpoint_then_they_count_with_the_token_endpoints(grant, store, clock):
    endpoints = TokenStatusEndpoints(store, store, InMemoryKeyStore(), clock,
                                     throttle=AuthenticationThrottle(store, POLICY))
    form = parse_form(b"token=whatever", "application/x-www-form-urlencoded")
    wrong = "Basic " + base64.b64encode(f"svc:{WRONG}".encode()).decode()
    for _ in range(POLICY.failures_per_client_source):
        with pytest.raises(InvalidClientError):
            endpoints.revoke(form, wrong, ISSUER, source_ip=ATTACKER)
    with pytest.raises(ThrottledError):
        endpoints.introspect(form, wrong, ISSUER, source_ip=ATTACKER)
    assert outcome(request_token(grant, secret=SECRET)) == "429 temporarily_unavailable"


# -- registration (RFC 7591) ---------------------------------------------------------------------
def registration_endpoint(store, clock):
    return ClientRegistrationEndpoint(store, store, clock, throttle=AuthenticationThrottle(store, POLICY))


def test_given_a_source_over_its_registration_limit_then_429_and_nothing_registered_or_spent(store, clock):
    iat, value = new_initial_access_token(now=NOW, policy=RegistrationPolicy(scopes=("tools:read",)))
    store.create_initial_access_token(iat)
    endpoint = registration_endpoint(store, clock)
    body = json.dumps({"scope": "tools:read"}).encode()

    def register(source=ATTACKER):
        return endpoint.register(body, "application/json", "Bearer " + value, ISSUER, source_ip=source)

    assert [register().status for _ in range(POLICY.registrations_per_source)] == [201] * 3
    clients = len(store.clients)
    with pytest.raises(ThrottledError) as refused:
        register()
    assert refused.value.status_code == 429 and refused.value.headers == {"Retry-After": "60"}
    assert "registrations" in refused.value.description
    assert len(store.clients) == clients and store.tokens[iat.hash].uses == 3
    assert register(OFFICE).status == 201  # another source
    clock.now = START + 60
    assert register().status == 201  # the next window


def test_given_wrong_initial_access_tokens_from_one_source_then_429_past_the_source_limit(store, clock):
    endpoint = registration_endpoint(store, clock)
    answers = []
    for _ in range(POLICY.failures_per_source + 1):
        try:
            endpoint.register(b"{}", "application/json", "Bearer tmiat_guess", ISSUER, source_ip=ATTACKER)
        except (InvalidTokenError, ThrottledError) as exc:
            answers.append(outcome(exc))
    assert answers == ["401 invalid_token"] * 12 + ["429 temporarily_unavailable"]
    with pytest.raises(ThrottledError):  # a wrong registration access token counts the same
        endpoint.read("tmc_someone", "Bearer tmrat_guess", ISSUER, source_ip=ATTACKER)


def test_given_a_source_over_the_limit_then_a_right_initial_access_token_is_not_even_checked(store, clock):
    # Given a guessable initial access token, and a source that guessed wrong up to the limit
    iat, value = new_initial_access_token(now=NOW, policy=RegistrationPolicy(), value="tmiat_weak")
    store.create_initial_access_token(iat)
    for _ in range(POLICY.failures_per_source):
        with pytest.raises(InvalidTokenError):
            registration_endpoint(store, clock).register(b"{}", "application/json", "Bearer tmiat_wrong", ISSUER,
                                                         source_ip=ATTACKER)
    # When it then guesses right, in this process or in another one sharing the store
    for endpoint in (registration_endpoint(store, clock), registration_endpoint(store, clock)):
        with pytest.raises(ThrottledError) as refused:
            endpoint.register(b'{"scope": "tools:read"}', "application/json", "Bearer " + value, ISSUER,
                              source_ip=ATTACKER)
        assert refused.value.headers == {"Retry-After": "60"}
    # Then nothing was registered and the token was not spent, while another source registers
    assert set(store.clients) == {"svc"} and store.tokens[iat.hash].uses == 0
    assert registration_endpoint(store, clock).register(b'{"scope": "tools:read"}', "application/json",
                                                        "Bearer " + value, ISSUER, source_ip=OFFICE).status == 201
    with pytest.raises(InvalidTokenError):  # and a missing one guessed nothing: not a 429
        endpoint.read("tmc_someone", None, ISSUER, source_ip=ATTACKER)


# -- the HTTP answer -----------------------------------------------------------------------------
def test_the_token_handler_answers_429_with_retry_after_no_store_and_an_rfc6749_body(store, clock):
    backend = runtime.Backend(Settings(issuer=ISSUER), store, store, InMemoryKeyStore(), store, store, clock=clock,
                              throttle=AuthenticationThrottle(store, POLICY))
    runtime.install(backend)
    try:
        def post(secret, source):
            body = f"grant_type=client_credentials&resource={quote(API)}".encode()
            headers = {"content-type": "application/x-www-form-urlencoded",
                       "authorization": "Basic " + base64.b64encode(f"svc:{secret}".encode()).decode()}
            event = build_event("POST", "/token", headers, body, domain="as.example.com", source_ip=source)
            return token_handler.lambda_handler(event, lambda_context("test"))

        statuses = [post(WRONG, ATTACKER)["statusCode"] for _ in range(POLICY.failures_per_client_source)]
        clock.now += 15
        response = post(SECRET, ATTACKER)
    finally:
        runtime.install(None)
    assert statuses == [401] * 5
    assert response["statusCode"] == 429
    assert response["headers"]["Retry-After"] == "45"
    assert response["headers"]["Cache-Control"] == "no-store"
    assert response["headers"]["Content-Type"] == "application/json"
    body = json.loads(response["body"])
    assert set(body) == {"error", "error_description"} and body["error"] == "temporarily_unavailable"
    assert "svc" not in response["body"] and "tmsec_" not in response["body"]

