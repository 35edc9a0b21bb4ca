"""tokenmint's verifier as the MCP Python SDK's TokenVerifier, inside the SDK's own auth middleware."""

import time

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

from tokenmint.oauth.jwk import public_jwk
from tokenmint.verifier import LocalKeys, McpTokenVerifier, TokenVerifier

ISSUER = "https://as.example.com"
RESOURCE = "http://localhost:8000/mcp"


@pytest.fixture(scope="module")
def key():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return private, public_jwk(private.public_key(), "RS256")


def token(key, audience=RESOURCE, scope="tools:echo") -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "agent", "client_id": "agent", "aud": audience, "iat": now, "exp": now + 300,
              "jti": f"j-{now}-{audience}-{scope}", "scope": scope}
    return jwt.encode(claims, key[0], algorithm="RS256", headers={"typ": "at+jwt", "kid": key[1]["kid"]})


def adapter(key) -> McpTokenVerifier:
    return McpTokenVerifier(TokenVerifier(issuer=ISSUER, audience=RESOURCE, keys=LocalKeys(lambda: [key[1]])))


def test_given_a_valid_token_when_the_sdk_asks_then_an_access_token_for_this_resource(key):
    access = anyio.run(adapter(key).verify_token, token(key))
    assert (access.client_id, access.scopes, access.resource, access.subject) == (
        "agent", ["tools:echo"], RESOURCE, "agent")
    assert access.expires_at > time.time()


def test_given_a_token_for_another_resource_when_the_sdk_asks_then_none(key):
    assert anyio.run(adapter(key).verify_token, token(key, audience="https://elsewhere.example.com/")) is None


async def _post(app, bearer: str) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "test", "version": "1"}}}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8000") as client:
            return await client.post("/mcp", json=body, headers={
                "Authorization": f"Bearer {bearer}", "Accept": "application/json, text/event-stream"})


@pytest.mark.parametrize("make, status", [
    (lambda k: token(k), 200),
    (lambda k: token(k, audience="https://elsewhere.example.com/"), 401),
    (lambda k: token(k, scope="tools:time"), 403),
    (lambda k: "garbage", 401),
])
def test_given_an_mcp_server_protected_by_tokenmint_when_called_then_the_sdk_enforces_audience_and_scope(
        key, make, status):
    server = MCPServer("tools", token_verifier=adapter(key), auth=AuthSettings(
        issuer_url=ISSUER, resource_server_url=RESOURCE, required_scopes=["tools:echo"], validate_token_resource=True))
    response = anyio.run(_post, server.streamable_http_app(), make(key))
    assert response.status_code == status, response.text


def test_the_mcp_sdk_accepts_tokenmints_authorization_server_metadata():
    """The SDK's client discards metadata its model refuses (it requires authorization_endpoint)."""
    from mcp.shared.auth import OAuthMetadata

    from tokenmint.oauth.metadata import authorization_server_metadata

    metadata = OAuthMetadata.model_validate(authorization_server_metadata("http://127.0.0.1:8000", ["tools:echo"]))
    assert str(metadata.token_endpoint) == "http://127.0.0.1:8000/token"
    assert "client_credentials" in metadata.grant_types_supported
