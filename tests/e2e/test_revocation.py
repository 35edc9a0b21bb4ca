"""Tokens that can really be taken back, over HTTP: revocation, introspection, and every way a
resource server checks a token (in-function verifier, Lambda authorizer, standalone verifier)."""

import json
import time

import pytest
import requests

from tokenmint.verifier import IntrospectionRevocationCheck, RemoteJwks, TokenRejected, TokenVerifier


@pytest.fixture(scope="module")
def world(server):
    tools = server.issuer + "/tools"
    agent = json.loads(server.cli("client", "create", "--scope", "tools:echo tools:time", "--json").stdout)
    introspector = json.loads(server.cli("client", "create", "--introspect", "--json").stdout)
    return server, tools, agent, introspector


def token(server, client, resource) -> str:
    response = requests.post(server.metadata["token_endpoint"], auth=(client["client_id"], client["client_secret"]),
                             data={"grant_type": "client_credentials", "resource": resource}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def introspect(server, introspector, value) -> dict:
    response = requests.post(server.metadata["introspection_endpoint"], data={"token": value}, timeout=10,
                             auth=(introspector["client_id"], introspector["client_secret"]))
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    return response.json()


def call_tool(server, value, tool="echo", authorized=False) -> requests.Response:
    prefix = "/authorized" if authorized else ""
    return requests.post(f"{server.issuer}{prefix}/tools/{tool}", data="hello", timeout=10,
                         headers={"Authorization": f"Bearer {value}"})


def standalone_verifier(server, introspector) -> TokenVerifier:
    """What any Python workload would configure: the issuer's JWKS and introspection endpoint."""
    return TokenVerifier(issuer=server.issuer, audience=server.issuer + "/tools",
                         keys=RemoteJwks(server.metadata["jwks_uri"]),
                         revocation=IntrospectionRevocationCheck(server.metadata["introspection_endpoint"],
                                                                 introspector["client_id"],
                                                                 introspector["client_secret"], cache_seconds=0))


def test_issue_revoke_then_every_check_denies(world):
    server, tools, agent, introspector = world
    value = token(server, agent, tools)
    verifier = standalone_verifier(server, introspector)
    assert introspect(server, introspector, value)["active"] is True
    assert call_tool(server, value).status_code == 200
    assert call_tool(server, value, authorized=True).status_code == 200
    assert verifier.verify(value, ["tools:echo"]).client_id == agent["client_id"]

    revoked = requests.post(server.metadata["revocation_endpoint"], data={"token": value}, timeout=10,
                            auth=(agent["client_id"], agent["client_secret"]))
    assert revoked.status_code == 200 and revoked.content == b""

    assert introspect(server, introspector, value) == {"active": False}
    denied = call_tool(server, value)
    assert denied.status_code == 401 and 'error="invalid_token"' in denied.headers["WWW-Authenticate"]
    assert call_tool(server, value, authorized=True).status_code == 403
    with pytest.raises(TokenRejected, match="revoked"):
        verifier.verify(value)
    # revoking again, or revoking garbage, is still a quiet 200
    for again in (value, "garbage"):
        assert requests.post(server.metadata["revocation_endpoint"], data={"token": again}, timeout=10,
                             auth=(agent["client_id"], agent["client_secret"])).status_code == 200


def test_client_wide_revocation_covers_earlier_tokens_and_not_later_ones(world):
    server, tools, agent, introspector = world
    earlier = token(server, agent, tools)
    server.cli("client", "revoke-tokens", agent["client_id"])
    time.sleep(1.1)  # iat has one-second resolution: a later token is issued in a later second
    later = token(server, agent, tools)
    assert introspect(server, introspector, earlier) == {"active": False}
    assert introspect(server, introspector, later)["active"] is True
    assert call_tool(server, earlier).status_code == 401 and call_tool(server, later).status_code == 200
    assert call_tool(server, earlier, authorized=True).status_code == 403
    assert call_tool(server, later, authorized=True).status_code == 200


def test_the_sample_api_answers_with_rfc6750_and_rfc9728_challenges(world):
    server, tools, agent, _ = world
    metadata = requests.get(server.issuer + "/.well-known/oauth-protected-resource/tools", timeout=5).json()
    assert metadata["resource"] == tools and metadata["authorization_servers"] == [server.issuer]
    assert metadata["scopes_supported"] == ["tools:echo", "tools:time"]
    anonymous = requests.post(tools + "/echo", timeout=5)
    assert anonymous.status_code == 401
    assert f'resource_metadata="{server.issuer}/.well-known/oauth-protected-resource/tools"' in \
        anonymous.headers["WWW-Authenticate"]
    narrow = json.loads(server.cli("client", "create", "--scope", "tools:echo", "--json").stdout)
    value = token(server, narrow, tools)
    forbidden = call_tool(server, value, tool="time")
    assert forbidden.status_code == 403
    assert 'error="insufficient_scope"' in forbidden.headers["WWW-Authenticate"]
    assert 'scope="tools:time"' in forbidden.headers["WWW-Authenticate"]
    assert call_tool(server, value, tool="time", authorized=True).status_code == 403
    assert requests.get(server.issuer + "/authorized/tools/time", timeout=5).status_code == 401
    demo = token(server, agent, tools)
    other_audience = json.loads(server.cli("client", "create", "--scope", "demo:read", "--json").stdout)
    assert call_tool(server, token(server, other_audience, "https://api.example.com/demo")).status_code == 401
    assert call_tool(server, demo).json()["echo"] == "hello"


def test_deleting_a_client_makes_its_tokens_inactive(world):
    server, tools, _, introspector = world
    doomed = json.loads(server.cli("client", "create", "--scope", "tools:echo", "--json").stdout)
    value = token(server, doomed, tools)
    server.cli("client", "delete", doomed["client_id"])
    assert introspect(server, introspector, value) == {"active": False}
    assert call_tool(server, value).status_code == 401


@pytest.mark.parametrize("path", ["/revoke", "/introspect", "/tools/echo", "/authorized/tools/echo"])
@pytest.mark.parametrize("value", ["", "garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "x" * 20000, "\u00e9\u00e9"])
def test_garbage_tokens_never_cause_a_5xx(world, path, value):
    server, _, agent, introspector = world
    caller = introspector if path == "/introspect" else agent
    response = requests.post(server.issuer + path, data={"token": value}, timeout=10,
                             auth=(caller["client_id"], caller["client_secret"]) if "tools" not in path else None,
                             headers={"Authorization": f"Bearer {value}"} if "tools" in path else {})
    assert response.status_code < 500


def test_an_unknown_tool_is_404_once_the_token_is_good_and_401_before(world):
    server, tools, agent, _ = world
    assert call_tool(server, token(server, agent, tools), tool="nope").status_code == 404
    assert requests.post(tools + "/nope", timeout=5).status_code == 401
