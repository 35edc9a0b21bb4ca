"""Failed-authentication throttling and registration limits, over HTTP against the real ``tokenmint
serve``, from several real source addresses (127.0.0.x: the server sees each as its own client).

The window is a few seconds (TOKENMINT_AUTH_FAILURE_WINDOW), so "until the window passes" is a
short wait, not minutes. Tokens are verified with PyJWT against the published JWKS.
"""

import json
import time

import jwt
import pytest
import requests
from requests.adapters import HTTPAdapter

from support.server import start_server, stop

WINDOW = 3
PER_CLIENT_SOURCE, PER_SOURCE, REGISTRATIONS = 4, 8, 2
INITIAL_ACCESS_TOKEN = "tmiat_abuseQ7vX2kLp9RzT4mWc8bNy1HdFgJs6uE3oK5aZ"
ENV = {"TOKENMINT_AUTH_FAILURE_WINDOW": str(WINDOW),
       "TOKENMINT_AUTH_FAILURES_PER_CLIENT_SOURCE": str(PER_CLIENT_SOURCE),
       "TOKENMINT_AUTH_FAILURES_PER_SOURCE": str(PER_SOURCE),
       "TOKENMINT_REGISTRATIONS_PER_SOURCE": str(REGISTRATIONS),
       "TOKENMINT_INITIAL_ACCESS_TOKEN": INITIAL_ACCESS_TOKEN}
API = "https://api.example.com/abuse"


class SourceAddress(HTTPAdapter):
    """Connections from one local address: what the server records as the request's source."""

    def __init__(self, address: str) -> None:
        self._address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self._address, 0)
        super().init_poolmanager(*args, **kwargs)


def from_address(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", SourceAddress(address))
    return session


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process, server = start_server(tmp_path_factory.mktemp("abuse"), env=ENV)
    try:
        server.cli("resource", "create", API, "--scope", "abuse:read")
        yield server
    finally:
        stop(process)


@pytest.fixture(scope="module")
def client(server):
    return json.loads(server.cli("client", "create", "--scope", "abuse:read", "--json").stdout)


def fresh_window() -> None:
    """Wait (at most WINDOW seconds) for a window with room for a whole scenario."""
    left = WINDOW - time.time() % WINDOW
    if left < 2:
        time.sleep(left + 0.05)


def token_request(server, session: requests.Session, client_id: str, secret: str) -> requests.Response:
    return session.post(server.metadata["token_endpoint"], auth=(client_id, secret), timeout=5,
                        data={"grant_type": "client_credentials", "resource": API})


def assert_throttled(response: requests.Response) -> int:
    assert response.status_code == 429, response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == "temporarily_unavailable" and "retry after" in body["error_description"]
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= WINDOW
    return retry_after


def verified(server, response: requests.Response, client_id: str) -> dict:
    assert response.status_code == 200, response.text
    access_token = response.json()["access_token"]
    key = jwt.PyJWKClient(server.metadata["jwks_uri"]).get_signing_key_from_jwt(access_token).key
    claims = jwt.decode(access_token, key, algorithms=["RS256"], audience=API, issuer=server.issuer)
    assert claims["client_id"] == client_id
    return claims


def test_given_wrong_secrets_from_one_address_then_it_is_throttled_and_the_client_elsewhere_is_not(server, client):
    attacker, office = from_address("127.0.0.2"), from_address("127.0.0.1")
    client_id, secret = client["client_id"], client["client_secret"]
    fresh_window()

    # Given the limit's worth of wrong secrets for the client from the attacker's address
    wrong = [token_request(server, attacker, client_id, "tmsec_" + "x" * 43) for _ in range(PER_CLIENT_SOURCE)]
    assert [r.status_code for r in wrong] == [401] * PER_CLIENT_SOURCE

    # Then from that address even the right secret is refused, 429 with Retry-After
    retry_after = assert_throttled(token_request(server, attacker, client_id, secret))
    # while the client, from its own address, still gets a valid token
    verified(server, token_request(server, office, client_id, secret), client_id)

    # And once the window has passed, the right secret works from the attacker's address too
    time.sleep(retry_after + 0.1)
    verified(server, token_request(server, attacker, client_id, secret), client_id)


def test_given_one_address_spraying_client_ids_then_its_failures_become_429(server, client):
    sprayer = from_address("127.0.0.3")
    fresh_window()
    statuses = [token_request(server, sprayer, f"tmc_guess{i}", "tmsec_" + "y" * 43).status_code
                for i in range(PER_SOURCE)]
    assert statuses == [401] * PER_SOURCE
    assert_throttled(token_request(server, sprayer, "tmc_one_more", "tmsec_" + "y" * 43))
    # the revocation endpoint authenticates clients too: the same source is over the same limit
    revoked = sprayer.post(server.metadata["revocation_endpoint"], data={"token": "x"}, timeout=5,
                           auth=("tmc_guess0", "tmsec_" + "y" * 43))
    assert_throttled(revoked)


def test_given_registrations_from_one_address_then_429_past_the_limit_and_nothing_registered(server):
    def register(session: requests.Session) -> requests.Response:
        return session.post(server.metadata["registration_endpoint"], json={"scope": "abuse:read"}, timeout=5,
                            headers={"Authorization": "Bearer " + INITIAL_ACCESS_TOKEN})

    busy, other = from_address("127.0.0.4"), from_address("127.0.0.5")
    register(other)  # the registration function's first call imports what it needs: keep it out of the window
    before = len(json.loads(server.cli("client", "list", "--json").stdout))
    fresh_window()
    assert [register(busy).status_code for _ in range(REGISTRATIONS)] == [201] * REGISTRATIONS
    assert_throttled(register(busy))
    assert register(other).status_code == 201
    assert len(json.loads(server.cli("client", "list", "--json").stdout)) == before + REGISTRATIONS + 1


def test_given_an_address_over_its_failure_limit_then_right_credentials_from_it_are_not_even_checked(server, client):
    # Security review finding 5: past the limit, a correct guess used to succeed (201 on the 143rd guess)
    guesser = from_address("127.0.0.6")
    fresh_window()
    wrong = [guesser.post(server.metadata["registration_endpoint"], json={"scope": "abuse:read"}, timeout=5,
                          headers={"Authorization": "Bearer tmiat_guess" + str(i)}).status_code
             for i in range(PER_SOURCE)]
    assert wrong == [401] * PER_SOURCE
    before = len(json.loads(server.cli("client", "list", "--json").stdout))
    # When it then presents the right initial access token, and a client's right secret
    assert_throttled(guesser.post(server.metadata["registration_endpoint"], json={"scope": "abuse:read"},
                                  timeout=5, headers={"Authorization": "Bearer " + INITIAL_ACCESS_TOKEN}))
    assert_throttled(token_request(server, guesser, client["client_id"], client["client_secret"]))
    # Then both are refused, nothing was registered, and other addresses are served
    assert len(json.loads(server.cli("client", "list", "--json").stdout)) == before
    verified(server, token_request(server, from_address("127.0.0.7"), client["client_id"], client["client_secret"]),
             client["client_id"])
