"""DPoP (RFC 9449) over HTTP against the real server: a client with a key gets a token bound to it,
uses it with per-request proofs, and a thief holding only the token gets nowhere. Proofs are
signed with joserfc and tokens read with PyJWT: neither is tokenmint's own code."""

import json

import jwt
import pytest
import requests

from support.dpop import DpopKey


@pytest.fixture(scope="module")
def world(server):
    agent = json.loads(server.cli("client", "create", "--scope", "tools:echo tools:time", "--json").stdout)
    introspector = json.loads(server.cli("client", "create", "--introspect", "--json").stdout)
    return server, agent, introspector


def token_request(server, client, proof: str | None) -> requests.Response:
    headers = {"DPoP": proof} if proof is not None else {}
    return requests.post(server.metadata["token_endpoint"], auth=(client["client_id"], client["client_secret"]),
                         data={"grant_type": "client_credentials", "resource": server.issuer + "/tools"},
                         headers=headers, timeout=10)


def call_tool(server, token: str, proof: str | None, scheme: str = "DPoP", path: str = "/tools/echo"):
    headers = {"Authorization": f"{scheme} {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return requests.post(server.issuer + path, data="hello", headers=headers, timeout=10)


def test_metadata_advertises_dpop(world):
    server, _, _ = world
    assert set(server.metadata["dpop_signing_alg_values_supported"]) == {"RS256", "PS256", "ES256", "EdDSA"}
    resource = requests.get(server.issuer + "/.well-known/oauth-protected-resource/tools", timeout=10).json()
    assert "ES256" in resource["dpop_signing_alg_values_supported"]


def test_a_dpop_client_gets_a_bound_token_and_uses_it_with_fresh_proofs(world):
    server, agent, introspector = world
    key = DpopKey("ES256")
    response = token_request(server, agent, key.proof("POST", server.metadata["token_endpoint"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": key.jkt}

    url = server.issuer + "/tools/echo"
    for _ in range(2):  # each request with a proof of its own
        answer = call_tool(server, body["access_token"], key.proof("POST", url, access_token=body["access_token"]))
        assert answer.status_code == 200, answer.text
        assert answer.json()["echo"] == "hello"

    # RFC 9449 §6.2: introspection tells the resource server the token's type and key
    info = requests.post(server.metadata["introspection_endpoint"], data={"token": body["access_token"]},
                         auth=(introspector["client_id"], introspector["client_secret"]), timeout=10).json()
    assert (info["active"], info["token_type"], info["cnf"]) == (True, "DPoP", {"jkt": key.jkt})


def test_a_stolen_dpop_token_or_proof_is_useless(world):
    server, agent, _ = world
    key, thief = DpopKey("ES256"), DpopKey("ES256")
    token = token_request(server, agent, key.proof("POST", server.metadata["token_endpoint"])).json()["access_token"]
    url = server.issuer + "/tools/echo"
    proof = key.proof("POST", url, access_token=token)
    assert call_tool(server, token, proof).status_code == 200

    attempts = {
        "the same proof again": call_tool(server, token, proof),
        "as a bearer token": call_tool(server, token, None, scheme="Bearer"),
        "without a proof": call_tool(server, token, None),
        "with the thief's key": call_tool(server, token, thief.proof("POST", url, access_token=token)),
        "with a proof for another tool": call_tool(server, token, key.proof("POST", server.issuer + "/tools/time",
                                                                            access_token=token)),
        "with a proof for GET": call_tool(server, token, key.proof("GET", url, access_token=token)),
    }
    for name, answer in attempts.items():
        assert answer.status_code == 401, (name, answer.text)
        assert answer.headers["WWW-Authenticate"].startswith("DPoP"), name
        assert answer.json()["error"] in ("invalid_dpop_proof", "invalid_token"), name
    assert attempts["the same proof again"].json()["error"] == "invalid_dpop_proof"


def test_bad_proofs_at_the_token_endpoint_get_invalid_dpop_proof(world):
    server, agent, _ = world
    key = DpopKey("RS256")
    endpoint = server.metadata["token_endpoint"]
    proof = key.proof("POST", endpoint)
    assert token_request(server, agent, proof).status_code == 200
    cases = {
        "replayed": proof,
        "for another URL": key.proof("POST", server.issuer + "/revoke"),
        "for another method": key.proof("GET", endpoint),
        "stale": key.proof("POST", endpoint, iat=1_000_000_000),
        "unsigned": proof.rsplit(".", 1)[0] + ".",
    }
    for name, bad in cases.items():
        answer = token_request(server, agent, bad)
        assert answer.status_code == 400, (name, answer.text)
        assert answer.json()["error"] == "invalid_dpop_proof", name
        assert answer.headers["Cache-Control"] == "no-store"


def test_the_lambda_authorizer_checks_proofs_too(world):
    server, agent, _ = world
    key = DpopKey("EdDSA")
    token = token_request(server, agent, key.proof("POST", server.metadata["token_endpoint"])).json()["access_token"]
    url = server.issuer + "/authorized/tools/echo"
    proof = key.proof("POST", url, access_token=token)
    assert call_tool(server, token, proof, path="/authorized/tools/echo").status_code == 200
    # API Gateway answers an authorizer's denial 403
    assert call_tool(server, token, proof, path="/authorized/tools/echo").status_code == 403
    assert call_tool(server, token, None, scheme="Bearer", path="/authorized/tools/echo").status_code == 403


def test_a_client_registered_with_dpop_bound_access_tokens_must_send_proofs(world):
    server, _, _ = world
    initial = json.loads(server.cli("iat", "create", "--scope", "tools:echo", "--json").stdout)["initial_access_token"]
    registered = requests.post(server.metadata["registration_endpoint"], timeout=10,
                               headers={"Authorization": f"Bearer {initial}"},
                               json={"scope": "tools:echo", "dpop_bound_access_tokens": True})
    assert registered.status_code == 201, registered.text
    client = registered.json()
    assert client["dpop_bound_access_tokens"] is True
    refused = token_request(server, client, None)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof"
    key = DpopKey()
    assert token_request(server, client, key.proof("POST", server.metadata["token_endpoint"])).json()[
        "token_type"] == "DPoP"
