"""Signing keys of a running server, changed with `tokenmint keys` (embedded backend)."""

import json

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from support.server import read_banner, start_server, stop


def test_rotation_and_emergency_rollover_while_serving(tmp_path):
    process, server = start_server(tmp_path / "data")
    try:
        read_banner(process, server, "/token")
        client = json.loads(server.cli("client", "create", "--scope", "demo:read", "--json").stdout)
        introspector = json.loads(server.cli("client", "create", "--introspect", "--json").stdout)

        def token() -> str:
            return requests.post(server.metadata["token_endpoint"], auth=(client["client_id"], client["client_secret"]),
                                 data={"grant_type": "client_credentials"}, timeout=10).json()["access_token"]

        def jwks() -> dict:
            response = requests.get(server.metadata["jwks_uri"], timeout=5)
            assert "max-age=300" in response.headers["Cache-Control"]
            return response.json()

        def active(value: str) -> bool:
            return requests.post(server.metadata["introspection_endpoint"], data={"token": value}, timeout=10,
                                 auth=(introspector["client_id"], introspector["client_secret"])).json()["active"]

        first = token()
        (key,) = jwks()["keys"]
        # a forced rotation pre-publishes the next key; the current one keeps signing
        server.cli("keys", "rotate", "--force")
        assert len(jwks()["keys"]) == 2
        second = token()
        assert jwt.decode(second, KeySet.import_key_set(jwks())).header["kid"] == key["kid"]
        listed = json.loads(server.cli("keys", "list", "--json").stdout)
        assert sorted(k["state"] for k in listed) == ["active", "next"]

        # emergency: a new key signs at once, the old one leaves the JWKS, its tokens die
        server.cli("keys", "rollover", "--compromised")
        third = token()
        published = {k["kid"] for k in jwks()["keys"]}
        assert key["kid"] not in published
        assert not active(first) and not active(second) and active(third)
        assert jwt.decode(third, KeySet.import_key_set(jwks())).header["kid"] in published
    finally:
        stop(process)


def test_given_a_fresh_server_when_keys_rotate_then_a_rotation_starts_and_says_when_its_key_signs(tmp_path):
    # Whoever types `rotate` means it (it used to answer "nothing to do: no rotation is due")
    process, server = start_server(tmp_path / "data")
    try:
        read_banner(process, server, "/token")
        started = server.cli("keys", "rotate").stdout
        listed = {k["state"]: k for k in json.loads(server.cli("keys", "list", "--json").stdout)}
        assert set(listed) == {"active", "next"}
        assert f"created {listed['next']['kid']} (next" in started
        assert f"{listed['next']['kid']} is published and signs from " in started
        assert len(requests.get(server.metadata["jwks_uri"], timeout=5).json()["keys"]) == 2
        # A second rotate while that one is under way says so, and when its key signs
        again = server.cli("keys", "rotate").stdout
        assert again.startswith("a rotation is already under way")
        assert started.splitlines()[-1] in again
        assert len(json.loads(server.cli("keys", "list", "--json").stdout)) == 2  # no third key
        assert "--force" not in again
    finally:
        stop(process)
