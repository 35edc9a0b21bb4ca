"""The MCP Python SDK, unmodified, against tokenmint: an MCP server (streamable HTTP, uvicorn on
127.0.0.1) protected by ``tokenmint.verifier.McpTokenVerifier``, and the SDK's own machine clients
(``ClientCredentialsOAuthProvider`` with client_secret_basic and client_secret_post,
``PrivateKeyJWTOAuthProvider``) finding tokenmint through the server's RFC 9728 metadata.

Each tool needs its own scope. The SDK has no per-tool scopes, so the server answers a
``tools/call`` whose token lacks the tool's scope the way the MCP specification's scope
challenge says (HTTP 403, ``WWW-Authenticate: Bearer error="insufficient_scope", scope=…``, the
challenge built by tokenmint's verifier); the SDK's client then steps up once and gives up.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import anyio
import httpx2
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.auth import OAuthTokenError
from mcp.client.auth.extensions.client_credentials import (
    ClientCredentialsOAuthProvider,
    PrivateKeyJWTOAuthProvider,
    SignedJWTParameters,
)
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from mcp.shared.exceptions import MCPError

from tokenmint.verifier import McpTokenVerifier, RemoteJwks, TokenRejected, TokenVerifier, bearer_token

TOOL_SCOPES = {"echo": "mcp:echo", "add": "mcp:add", "whoami": "mcp:whoami"}
TOOL_ARGUMENTS = {"echo": {"text": "hello"}, "add": {"a": 2, "b": 3}, "whoami": {}}
START_TIMEOUT = 10.0
SESSION_TIMEOUT = 30.0


class ToolScopeChallenge:
    """ASGI middleware in front of the SDK's app: a ``tools/call`` whose token lacks the tool's scope
    is answered 403 with tokenmint's RFC 6750 challenge naming that scope; everything else (and
    missing or invalid tokens, which the SDK answers 401 itself) goes through unchanged."""

    def __init__(self, app: Any, verifier: TokenVerifier, scopes: dict[str, str], resource_metadata: str) -> None:
        self.app, self.verifier, self.scopes, self.resource_metadata = app, verifier, scopes, resource_metadata

    def needed_scope(self, body: bytes) -> str | None:
        try:
            message = json.loads(body)
        except ValueError:
            return None
        if not isinstance(message, dict) or message.get("method") != "tools/call":
            return None
        params = message.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        return self.scopes.get(name) if isinstance(name, str) else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("type") == "http.request" and message.get("more_body", False)
        body = b"".join(chunks)
        needed = self.needed_scope(body)
        if needed is not None:
            authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            try:
                await anyio.to_thread.run_sync(lambda: self.verifier.verify(bearer_token(authorization), [needed]))
            except TokenRejected as rejected:
                if rejected.error == "insufficient_scope":
                    await self.deny(send, rejected)
                    return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def deny(self, send: Callable, rejected: TokenRejected) -> None:
        body = json.dumps({"error": rejected.error, "error_description": rejected.description}).encode()
        await send({"type": "http.response.start", "status": rejected.status_code, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", rejected.challenge(self.resource_metadata).encode())]})
        await send({"type": "http.response.body", "body": body})


@dataclass
class McpServer:
    url: str
    uvicorn: uvicorn.Server


@pytest.fixture(scope="module")
def mcp_server(tokenmint, metadata):
    """The MCP server a user would write with the SDK, started on a free loopback port (bounded
    start and stop), and registered with tokenmint as a resource defining one scope per tool."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    host = f"127.0.0.1:{sock.getsockname()[1]}"
    url = f"http://{host}/mcp"
    verifier = TokenVerifier(issuer=tokenmint.issuer, audience=url, keys=RemoteJwks(metadata["jwks_uri"]))
    # No required_scopes: each tool needs its own, so the server names none for the whole endpoint.
    server = MCPServer("interop tools", token_verifier=McpTokenVerifier(verifier), auth=AuthSettings(
        issuer_url=tokenmint.issuer, resource_server_url=url, validate_token_resource=True))

    @server.tool()
    def echo(text: str) -> str:
        return text

    @server.tool()
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool()
    def whoami() -> str:
        return get_access_token().client_id

    app = server.streamable_http_app(transport_security=TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=[host], allowed_origins=[f"http://{host}"]))
    guarded = ToolScopeChallenge(app, verifier, TOOL_SCOPES, str(build_resource_metadata_url(url)))
    web = uvicorn.Server(uvicorn.Config(guarded, log_level="warning", lifespan="on", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=web.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not web.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert web.started, "the MCP server did not start"
        tokenmint.cli("resource", "create", url, "--scope", " ".join(TOOL_SCOPES.values()), "--name", "MCP tools")
        yield McpServer(url, web)
    finally:
        web.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive(), "the MCP server did not stop"


@dataclass
class Storage:
    """The SDK's TokenStorage, in memory, remembering every token it was given."""

    tokens: list[OAuthToken] = field(default_factory=list)
    client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens[-1] if self.tokens else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@dataclass
class Traffic:
    """What the SDK's HTTP client sent and got, observed through httpx2 event hooks (nothing changed)."""

    token_endpoint: str
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    challenges: list[tuple[int, str]] = field(default_factory=list)

    async def on_request(self, request: httpx2.Request) -> None:
        if str(request.url) == self.token_endpoint:
            self.token_requests.append({"form": dict(parse_qsl(request.content.decode())),
                                        "authorization": request.headers.get("authorization", "")})

    async def on_response(self, response: httpx2.Response) -> None:
        if response.status_code in (401, 403) and str(response.request.url) != self.token_endpoint:
            self.challenges.append((response.status_code, response.headers.get("www-authenticate", "")))


async def run_session(url: str, provider: Any, traffic: Traffic, steps: Callable) -> Any:
    """Connect with the SDK's streamable HTTP client, authenticated by ``provider``, and run ``steps``."""
    with anyio.fail_after(SESSION_TIMEOUT):
        async with httpx2.AsyncClient(auth=provider, timeout=10, event_hooks={
                "request": [traffic.on_request], "response": [traffic.on_response]}) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                return await steps(client)


def leaf_errors(error: BaseException) -> list[BaseException]:
    """The exceptions inside (possibly nested) exception groups raised by the SDK's task groups."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaf_errors(inner)]
    return [error]


def scopes_of(form: dict[str, str]) -> set[str]:
    return set(form.get("scope", "").split())


async def use_tools(client: Client, allowed: str, denied: str) -> dict:
    """List the tools, call one the token allows, one it does not, and the allowed one again."""
    listed = {tool.name for tool in (await client.list_tools()).tools}
    first = await client.call_tool(allowed, TOOL_ARGUMENTS[allowed])
    with pytest.raises(MCPError) as refused:
        await client.call_tool(denied, TOOL_ARGUMENTS[denied])
    again = await client.call_tool(allowed, TOOL_ARGUMENTS[allowed])
    return {"listed": listed, "result": first, "refused": refused.value, "again": again}


@pytest.mark.parametrize("method, granted, allowed, expected, denied", [
    ("client_secret_basic", "mcp:echo", "echo", "hello", "add"),
    ("client_secret_post", "mcp:add", "add", "5", "whoami"),
])
def test_given_the_sdk_client_credentials_provider_when_using_tools_then_only_its_scopes_work(
        tokenmint, metadata, mcp_server, new_client, verify, method, granted, allowed, expected, denied):
    client = new_client(granted, method)
    storage, traffic = Storage(), Traffic(metadata["token_endpoint"])
    provider = ClientCredentialsOAuthProvider(mcp_server.url, storage, client["client_id"], client["client_secret"],
                                              token_endpoint_auth_method=method, scope=granted,
                                              issuer=tokenmint.issuer)

    outcome = anyio.run(run_session, mcp_server.url, provider, traffic,
                        lambda session: use_tools(session, allowed, denied))

    assert outcome["listed"] == set(TOOL_SCOPES)
    assert not outcome["result"].is_error and outcome["result"].content[0].text == expected
    assert not outcome["again"].is_error and outcome["again"].content[0].text == expected
    # The SDK found tokenmint through the MCP server's metadata and asked for this resource, with
    # the credentials where the method puts them.
    first = traffic.token_requests[0]
    assert first["form"]["grant_type"] == "client_credentials" and first["form"]["resource"] == mcp_server.url
    if method == "client_secret_basic":
        assert first["authorization"].startswith("Basic ") and "client_secret" not in first["form"]
    else:
        assert not first["authorization"] and first["form"]["client_secret"] == client["client_secret"]
    # The server names no scopes, so the SDK asks for every scope tokenmint advertises (other
    # resources' too; the provider's own `scope` is replaced on the 401); tokenmint drops what this
    # client may not have for this resource.
    assert {"demo:read", "tools:echo", *TOOL_SCOPES.values()} <= scopes_of(first["form"])
    token = storage.tokens[0]
    assert token.scope == granted and token.refresh_token is None
    claims = verify(token.access_token, mcp_server.url)
    assert claims["scope"] == granted and claims["client_id"] == client["client_id"]
    # The denied tool: a 403 scope challenge, one step-up request naming the tool's scope, a token
    # that still lacks it (dropped, not refused), and the SDK gives up with an error.
    (first_status, _), *refusals = traffic.challenges
    assert first_status == 401 and [status for status, _ in refusals] == [403, 403]  # before and after step-up
    assert all('error="insufficient_scope"' in challenge and f'scope="{TOOL_SCOPES[denied]}"' in challenge
               for _, challenge in refusals)
    step_up = traffic.token_requests[1]
    assert TOOL_SCOPES[denied] in scopes_of(step_up["form"]) and granted in scopes_of(step_up["form"])
    assert len(traffic.token_requests) == 2 and storage.tokens[1].scope == granted


def test_given_the_sdk_private_key_jwt_provider_when_using_tools_then_its_assertions_are_accepted(
        tokenmint, metadata, mcp_server, new_client, verify, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [{**public, "use": "sig", "alg": "RS256", "kid": "mcp-agent-1"}]}))
    client = new_client("mcp:whoami", "private_key_jwt", jwks_file)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    assertions = SignedJWTParameters(issuer=client["client_id"], subject=client["client_id"], signing_key=pem)
    storage, traffic = Storage(), Traffic(metadata["token_endpoint"])
    provider = PrivateKeyJWTOAuthProvider(mcp_server.url, storage, client["client_id"],
                                          assertions.create_assertion_provider(), issuer=tokenmint.issuer)

    outcome = anyio.run(run_session, mcp_server.url, provider, traffic,
                        lambda session: use_tools(session, "whoami", "echo"))

    # The MCP server saw the client tokenmint authenticated by its key.
    assert outcome["result"].content[0].text == client["client_id"] and not outcome["result"].is_error
    assert storage.tokens[0].scope == "mcp:whoami"
    assert verify(storage.tokens[0].access_token, mcp_server.url)["sub"] == client["client_id"]
    # What the SDK signs (the quirks tokenmint accepts): no kid, typ JWT, aud = issuer, 300 s.
    form = traffic.token_requests[0]["form"]
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    header = jwt.get_unverified_header(form["client_assertion"])
    claims = jwt.decode(form["client_assertion"], options={"verify_signature": False})
    assert "kid" not in header and header["typ"] == "JWT" and header["alg"] == "RS256"
    assert claims["aud"] == tokenmint.issuer and claims["exp"] - claims["iat"] == 300
    # Step-up signs a fresh assertion (a new jti): single-use assertions do not break it.
    step_up = jwt.decode(traffic.token_requests[1]["form"]["client_assertion"], options={"verify_signature": False})
    assert step_up["jti"] != claims["jti"] and "mcp:echo" in scopes_of(traffic.token_requests[1]["form"])
    assert storage.tokens[1].scope == "mcp:whoami" and traffic.challenges[-1][0] == 403


def test_given_a_wrong_secret_when_the_sdk_connects_then_it_fails_with_tokenmints_invalid_client(
        tokenmint, metadata, mcp_server, new_client):
    client = new_client("mcp:echo")
    storage, traffic = Storage(), Traffic(metadata["token_endpoint"])
    provider = ClientCredentialsOAuthProvider(mcp_server.url, storage, client["client_id"], "tmsec_not-the-secret",
                                              issuer=tokenmint.issuer)

    async def connect(session: Client) -> None:
        await session.list_tools()

    with pytest.raises(BaseException) as failed:
        anyio.run(run_session, mcp_server.url, provider, traffic, connect)

    errors = [e for e in leaf_errors(failed.value) if isinstance(e, OAuthTokenError)]
    assert errors and "401" in str(errors[0]) and '"invalid_client"' in str(errors[0])
    assert "tmsec_not-the-secret" not in str(errors[0])
    assert storage.tokens == [] and traffic.challenges[0][0] == 401
