"""Dynamic registration and management over HTTP, with a plain HTTP client that knows only the
metadata document, RFC 7591 and RFC 7592 (no tokenmint code on the client side)."""

import json
import os
import subprocess
import threading
import time

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from support.server import TOKENMINT, read_banner, start_server, stop

API = "https://api.example.com/agents"


@pytest.fixture(scope="module")
def world(server):
    server.cli("resource", "create", API, "--scope", "tools:search tools:fetch tools:admin")
    token = json.loads(server.cli("iat", "create", "--scope", "tools:search tools:fetch", "--max-uses", "50",
                                  "--json").stdout)
    return server, token["initial_access_token"]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def register(server, initial_token: str, **metadata) -> requests.Response:
    endpoint = server.metadata["registration_endpoint"]
    return requests.post(endpoint, json=metadata, headers=bearer(initial_token), timeout=10)


def get_token(server, client_id: str, secret: str) -> requests.Response:
    return requests.post(server.metadata["token_endpoint"], auth=(client_id, secret), timeout=10,
                         data={"grant_type": "client_credentials", "resource": API})


def test_given_only_the_metadata_when_a_plain_client_registers_then_it_gets_a_verifiable_token(world):
    server, initial_token = world
    metadata = requests.get(server.issuer + "/.well-known/oauth-authorization-server", timeout=5).json()
    response = requests.post(metadata["registration_endpoint"], headers=bearer(initial_token), timeout=10,
                             json={"client_name": "search agent", "scope": "tools:search"})
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    client = response.json()
    token = requests.post(metadata["token_endpoint"], auth=(client["client_id"], client["client_secret"]),
                          data={"grant_type": "client_credentials"}, timeout=10).json()
    keys = KeySet.import_key_set(requests.get(metadata["jwks_uri"], timeout=5).json())
    claims = jwt.decode(token["access_token"], keys, algorithms=["RS256"]).claims
    assert (claims["client_id"], claims["aud"], claims["scope"]) == (client["client_id"], API, "tools:search")


def test_a_clients_whole_life_over_http(world):
    server, initial_token = world
    created = register(server, initial_token, client_name="fetcher", scope="tools:fetch").json()
    client_id, secret, uri = created["client_id"], created["client_secret"], created["registration_client_uri"]
    assert get_token(server, client_id, secret).status_code == 200

    read = requests.get(uri, headers=bearer(created["registration_access_token"]), timeout=10)
    assert read.status_code == 200 and read.json()["client_name"] == "fetcher" and "client_secret" not in read.json()

    update = {"client_id": client_id, "client_name": "fetcher v2", "scope": "tools:fetch tools:search"}
    updated = requests.put(uri, json=update, headers=bearer(created["registration_access_token"]), timeout=10)
    assert updated.status_code == 200 and updated.json()["client_name"] == "fetcher v2"
    stale = requests.get(uri, headers=bearer(created["registration_access_token"]), timeout=10)
    assert stale.status_code == 401 and stale.headers["WWW-Authenticate"].startswith("Bearer")
    rat = updated.json()["registration_access_token"]

    rotated = json.loads(server.cli("client", "rotate-secret", client_id, "--grace", "2s", "--json").stdout)
    new_secret = rotated["client_secret"]
    assert get_token(server, client_id, secret).status_code == 200
    assert get_token(server, client_id, new_secret).status_code == 200
    time.sleep(2.2)
    assert get_token(server, client_id, secret).status_code == 401
    assert get_token(server, client_id, new_secret).status_code == 200

    server.cli("client", "disable", client_id)
    assert get_token(server, client_id, new_secret).json()["error"] == "invalid_client"
    server.cli("client", "enable", client_id)

    deleted = requests.delete(uri, headers=bearer(rat), timeout=10)
    assert deleted.status_code == 204 and deleted.content == b""
    assert get_token(server, client_id, new_secret).status_code == 401
    assert requests.get(uri, headers=bearer(rat), timeout=10).status_code == 401


def test_given_concurrent_updates_with_one_token_then_exactly_one_wins_and_nothing_is_lost(world):
    server, initial_token = world
    created = register(server, initial_token, scope="tools:search").json()
    uri, rat = created["registration_client_uri"], created["registration_access_token"]
    results: list[requests.Response] = []
    start = threading.Barrier(6)

    def update(i: int) -> None:
        start.wait(timeout=10)
        document = {"client_id": created["client_id"], "client_name": f"writer {i}", "scope": "tools:search"}
        results.append(requests.put(uri, json=document, headers=bearer(rat), timeout=10))

    threads = [threading.Thread(target=update, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    winners = [r for r in results if r.status_code == 200]
    assert len(results) == 6 and len(winners) == 1
    assert all(r.status_code in (401, 409) and r.json()["error"] in ("invalid_token", "invalid_request")
               for r in results if r.status_code != 200)
    winner = winners[0].json()
    final = requests.get(uri, headers=bearer(winner["registration_access_token"]), timeout=10).json()
    assert final["client_name"] == winner["client_name"]


@pytest.mark.parametrize("headers, body, status, error", [
    ({}, b'{"scope": "tools:search"}', 401, "invalid_token"),
    ({"Authorization": "Bearer tmiat_wrong"}, b'{"scope": "tools:search"}', 401, "invalid_token"),
    ({"Content-Type": "application/json"}, b'{"scope": ', 400, "invalid_client_metadata"),
    ({"Content-Type": "text/plain"}, b'{"scope": "tools:search"}', 400, "invalid_client_metadata"),
    ({"Content-Type": "application/json"}, b'{"scope": "tools:admin"}', 400, "invalid_client_metadata"),
    ({"Content-Type": "application/json"}, b'{"redirect_uris": ["https://x.example/cb"]}', 400,
     "invalid_client_metadata"),
    ({"Content-Type": "application/json"}, b'{"grant_types": ["authorization_code"]}', 400, "invalid_client_metadata"),
])
def test_given_bad_registration_input_when_sent_then_the_rfc7591_error_and_nothing_written(world, headers, body,
                                                                                         status, error):
    server, initial_token = world
    before = server.cli("client", "list", "--json").stdout
    if "Authorization" not in headers and status != 401:
        headers = {**headers, **bearer(initial_token)}
    headers.setdefault("Content-Type", "application/json")
    response = requests.post(server.metadata["registration_endpoint"], data=body, headers=headers, timeout=10)
    assert response.status_code == status and response.json()["error"] == error
    assert response.headers["Cache-Control"] == "no-store"
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert server.cli("client", "list", "--json").stdout == before


def test_given_an_initial_access_token_with_one_use_when_used_twice_then_the_second_is_refused(world):
    server, _ = world
    once = json.loads(server.cli("iat", "create", "--scope", "tools:search", "--max-uses", "1", "--json").stdout)
    assert register(server, once["initial_access_token"], scope="tools:search").status_code == 201
    second = register(server, once["initial_access_token"], scope="tools:search")
    assert second.status_code == 401 and second.json()["error"] == "invalid_token"


def test_given_serve_when_started_then_it_prints_a_working_initial_access_token_or_uses_the_fixed_one(tmp_path):
    process, server = start_server(tmp_path / "printed")
    try:
        banner = read_banner(process, server, "registration:")
        printed = banner.split("Bearer ")[1].split()[0]
        assert register(server, printed, scope="demo:read").status_code == 201
    finally:
        stop(process)
    process, server = start_server(tmp_path / "printed", env={"TOKENMINT_INITIAL_ACCESS_TOKEN": FIXED})
    try:
        read_banner(process, server, "registration:")
        assert register(server, FIXED, scope="demo:read").status_code == 201
        assert register(server, printed, scope="demo:read").status_code == 401  # replaced on restart
    finally:
        stop(process)


FIXED = "tmiat_fixedR8wQ2zX5cV7bN1mK4jH6gF9dS3aP0oIuY"


@pytest.mark.parametrize("weak", ["tmiat_fixed_dev", "tmiat_" + "ab" * 30])
def test_given_a_guessable_initial_access_token_then_serve_refuses_to_start_unless_dev_says_so_loudly(tmp_path, weak):
    # Given a short or repetitive TOKENMINT_INITIAL_ACCESS_TOKEN (security review finding 5)
    env = {**os.environ, "TOKENMINT_INITIAL_ACCESS_TOKEN": weak}
    # When serve starts without --dev, Then it exits at once, naming the variable, before it listens
    refused = subprocess.run([*TOKENMINT, "serve", "--port", "0", "--data-dir", str(tmp_path / "weak")],
                             capture_output=True, text=True, timeout=30, env=env)
    assert refused.returncode != 0 and "TOKENMINT_INITIAL_ACCESS_TOKEN is too weak" in refused.stderr
    assert weak not in refused.stderr + refused.stdout
    # And with --dev it serves, with a warning on stderr, and the value works
    process, server = start_server(tmp_path / "dev", "--dev", env={"TOKENMINT_INITIAL_ACCESS_TOKEN": weak})
    try:
        banner = read_banner(process, server, "registration:")
        assert "WARNING: TOKENMINT_INITIAL_ACCESS_TOKEN is weak" in banner and weak not in banner
        assert register(server, weak, scope="demo:read").status_code == 201
    finally:
        stop(process)
