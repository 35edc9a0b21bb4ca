"""Races with exactly one winner, over HTTP, between two `tokenmint serve` processes sharing one data
directory: each process runs one invocation at a time, so only SQLite's locking and the stores'
conditional writes decide between them, as DynamoDB's conditions do between Lambda instances.

(Concurrent RFC 7592 updates with one registration access token: tests/e2e/test_registration.py.)
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from support.server import start_server, stop
from tokenmint.oauth.jwk import public_jwk

RACERS = 8
API = "https://api.example.com/demo"  # seeded with the data directory
# The racers share one source address: keep the abuse limits out of the race (they have tests of their own).
SERVER_ENV = {"TOKENMINT_REGISTRATIONS_PER_SOURCE": "0", "TOKENMINT_AUTH_FAILURES_PER_CLIENT_SOURCE": "0",
              "TOKENMINT_AUTH_FAILURES_PER_SOURCE": "0"}


@pytest.fixture(scope="module")
def issuers(world):
    """The robustness world's server and a second one on its data directory."""
    process, second = start_server(world.server.data_dir, env=SERVER_ENV)
    try:
        yield world.issuer, second.issuer
    finally:
        stop(process)


def race(send, n: int = RACERS) -> list[requests.Response]:
    """``send(i)`` on n threads released at once; every answer (bounded waits)."""
    answers: list[requests.Response] = []
    start = threading.Barrier(n)

    def racer(i: int) -> None:
        start.wait(timeout=10)
        answers.append(send(i))
    threads = [threading.Thread(target=racer, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == n
    return answers


def test_parallel_registrations_with_a_one_use_initial_access_token_register_exactly_one_client(world, issuers):
    token = json.loads(world.server.cli("iat", "create", "--max-uses", "1", "--scope", "demo:read",
                                        "--json").stdout)
    before = {client["client_id"] for client in json.loads(world.server.cli("client", "list", "--json").stdout)}

    answers = race(lambda i: requests.post(
        issuers[i % 2] + "/register", json={"client_name": f"racer {i}", "scope": "demo:read"}, timeout=20,
        headers={"Authorization": f"Bearer {token['initial_access_token']}"}))

    winners = [answer for answer in answers if answer.status_code == 201]
    assert len(winners) == 1
    assert all(answer.status_code == 401 and answer.json()["error"] == "invalid_token"
               for answer in answers if answer.status_code != 201)
    after = {client["client_id"] for client in json.loads(world.server.cli("client", "list", "--json").stdout)}
    assert after - before == {winners[0].json()["client_id"]}
    (stored,) = [t for t in json.loads(world.server.cli("iat", "list", "--json").stdout)
                 if t["token_id"] == token["token_id"]]
    assert stored["uses"] == 1


def test_one_private_key_jwt_assertion_sent_in_parallel_gets_exactly_one_token(world, issuers, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [public_jwk(key.public_key(), "ES256")]}))
    client_id = json.loads(world.server.cli("client", "create", "--auth-method", "private_key_jwt", "--scope",
                                            "demo:read", "--jwks-file", str(jwks), "--json").stdout)["client_id"]
    now = int(time.time())
    assertion = jwt.encode({"iss": client_id, "sub": client_id, "aud": world.issuer, "iat": now, "exp": now + 300,
                            "jti": str(uuid.uuid4())}, key, algorithm="ES256")

    answers = race(lambda i: requests.post(issuers[i % 2] + "/token", timeout=20, data={
        "grant_type": "client_credentials", "resource": API, "client_assertion": assertion,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}))

    assert sorted(answer.status_code for answer in answers) == [200] + [401] * (RACERS - 1)
    assert all(answer.json()["error"] == "invalid_client" for answer in answers if answer.status_code == 401)
    (winner,) = [answer.json() for answer in answers if answer.status_code == 200]
    signing_key = jwt.PyJWKClient(world.issuer + "/jwks.json").get_signing_key_from_jwt(winner["access_token"])
    claims = jwt.decode(winner["access_token"], signing_key.key, algorithms=["RS256"], audience=API,
                        issuer=world.issuer)
    assert claims["client_id"] == client_id
