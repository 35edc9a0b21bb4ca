"""The embedded server over HTTP with clients nobody here wrote (authlib, requests, the CLI).

Tokens are verified with joserfc against the published JWKS, never with tokenmint's code.
"""

import http.client
import json
from urllib.parse import urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from support.server import read_banner, start_server, stop

API = "https://api.example.com/e2e"


@pytest.fixture(scope="module")
def resource(server):
    server.cli("resource", "create", API, "--scope", "tools:read tools:write tools:admin", "--token-lifetime", "120")
    return API


def new_client(server, scope="tools:read tools:write", method="client_secret_basic") -> dict:
    return json.loads(server.cli("client", "create", "--scope", scope, "--auth-method", method, "--json").stdout)


def verify(server, token: str, alg: str = "RS256") -> dict:
    """Check the token as a resource server would: signature from the JWKS, RFC 9068 header, iss, exp."""
    jwks = requests.get(server.metadata["jwks_uri"], timeout=5).json()
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=[alg])
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": server.issuer}, exp={"essential": True},
                          aud={"essential": True}, jti={"essential": True}).validate(decoded.claims)
    assert decoded.header["typ"] == "at+jwt" and decoded.header["alg"] == alg
    assert decoded.header["kid"] in {key["kid"] for key in jwks["keys"]}
    return decoded.claims


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_given_authlib_when_fetching_a_token_with_each_secret_method_then_a_valid_audience_bound_jwt(
        server, resource, method):
    client = new_client(server, method=method)
    session = OAuth2Session(client["client_id"], client["client_secret"], token_endpoint_auth_method=method,
                            scope="tools:read")
    token = session.fetch_token(server.metadata["token_endpoint"], grant_type="client_credentials",
                                resource=resource)
    assert token["token_type"] == "Bearer" and token["scope"] == "tools:read" and token["expires_in"] == 120
    assert "refresh_token" not in token
    claims = verify(server, token["access_token"])
    assert claims["aud"] == resource and claims["sub"] == claims["client_id"] == client["client_id"]
    assert claims["iss"] == server.issuer and claims["exp"] - claims["iat"] == 120 and claims["jti"]


def test_given_cli_changes_while_serving_when_requesting_then_they_apply_to_the_next_request(server, resource):
    client = new_client(server, scope="reports:read")
    auth = (client["client_id"], client["client_secret"])
    form = {"grant_type": "client_credentials", "resource": "https://reports.example.com/"}
    assert requests.post(server.metadata["token_endpoint"], data=form, auth=auth, timeout=5).json()["error"] == \
        "invalid_target"
    server.cli("resource", "create", "https://reports.example.com/", "--scope", "reports:read")
    response = requests.post(server.metadata["token_endpoint"], data=form, auth=auth, timeout=5)
    assert response.status_code == 200 and "reports:read" in server.metadata["scopes_supported"]
    server.cli("client", "disable", client["client_id"])
    denied = requests.post(server.metadata["token_endpoint"], data=form, auth=auth, timeout=5)
    assert denied.status_code == 401 and denied.json()["error"] == "invalid_client"


def test_given_the_token_command_when_run_then_it_prints_a_token(server, resource):
    client = new_client(server)
    result = server.cli("token", "--issuer", server.issuer, "--client-id", client["client_id"],
                        "--resource", resource, "--scope", "tools:write", "--raw",
                        env={"TOKENMINT_CLIENT_SECRET": client["client_secret"]})
    claims = verify(server, result.stdout.strip())
    assert claims["scope"] == "tools:write"
    failed = server.cli("token", "--issuer", server.issuer, "--client-id", client["client_id"],
                        "--client-secret", "wrong", check=False)
    assert failed.returncode == 1 and json.loads(failed.stderr)["error"] == "invalid_client"


def test_given_admin_listings_when_printed_then_they_never_show_a_secret_or_its_hash(server, resource):
    client = new_client(server)
    shown = server.cli("client", "show", client["client_id"]).stdout
    listed = server.cli("client", "list", "--json").stdout
    for output in (shown, listed):
        assert client["client_secret"] not in output and "sha256:" not in output
    assert json.loads(shown)["scope"] == "tools:read tools:write"


def raw_request(server, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    parts = urlsplit(server.issuer)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("method, path, body, headers, status, error", [
    ("GET", "/token", b"", {}, 405, "invalid_request"),
    ("DELETE", "/token", b"", {}, 405, "invalid_request"),
    ("POST", "/token", b"grant_type=client_credentials", {"Content-Type": "text/plain"}, 400, "invalid_request"),
    ("POST", "/token", b"grant_type=client_credentials", {}, 400, "invalid_request"),
    ("POST", "/token", b"a" * 70_000, FORM, 413, "invalid_request"),
    ("POST", "/token", b"grant_type=client_credentials&grant_type=x", FORM, 400, "invalid_request"),
    ("POST", "/token", b"grant_type=implicit", FORM, 400, "unsupported_grant_type"),
    ("POST", "/token", b"grant_type=client_credentials", {**FORM, "Authorization": "Basic %%%"}, 401,
     "invalid_client"),
    ("POST", "/token", b"grant_type=client_credentials&scope=%22", FORM, 400, "invalid_scope"),
    ("POST", "/token", b"grant_type=client_credentials&resource=https://a.example/%23f", FORM, 400,
     "invalid_target"),
    ("POST", "/token", b"\xff\xfe", FORM, 400, "invalid_request"),
    ("GET", "/nowhere", b"", {}, 404, "invalid_request"),
    ("POST", "/jwks.json", b"", {}, 405, "invalid_request"),
])
def test_given_bad_http_input_when_sent_then_an_rfc_error_and_never_5xx(server, method, path, body, headers,
                                                                       status, error):
    got_status, got_headers, payload = raw_request(server, method, path, body, headers)
    assert got_status == status
    assert json.loads(payload)["error"] == error
    assert got_headers["Cache-Control"] == "no-store"


def test_given_a_chunked_body_when_sent_then_411_and_the_server_keeps_serving(server):
    parts = urlsplit(server.issuer)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.putrequest("POST", "/token")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.putheader("Content-Type", "application/x-www-form-urlencoded")
    connection.endheaders()
    connection.send(b"5\r\nhello\r\n0\r\n\r\n")
    assert connection.getresponse().status == 411
    connection.close()
    assert requests.get(server.issuer + "/jwks.json", timeout=5).status_code == 200


@pytest.mark.parametrize("alg", ["ES256", "PS256", "EdDSA"])
def test_given_another_signing_algorithm_when_serving_then_tokens_verify_with_it(tmp_path, alg):
    process, server = start_server(tmp_path / alg, "--alg", alg)
    try:
        read_banner(process, server, "/token")
        client = new_client(server, scope="demo:read")
        response = requests.post(server.metadata["token_endpoint"], timeout=5,
                                 auth=(client["client_id"], client["client_secret"]),
                                 data={"grant_type": "client_credentials"})
        assert verify(server, response.json()["access_token"], alg)["scope"] == "demo:read"
    finally:
        stop(process)


def raw_bytes(server, payload: bytes) -> bytes:
    """Send ``payload`` as is and read what comes back until the server closes (bounded)."""
    import socket

    parts = urlsplit(server.issuer)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("framing", [
    b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
    b"Content-Length: 5\r\nContent-Length: 30\r\n",
    b"Content-Length: -1\r\n",
    b"Content-Length: 0x10\r\n",
])
def test_given_ambiguous_framing_when_sent_then_one_json_error_and_the_connection_closes(server, framing):
    body = b"5\r\ngrant_type=client_credentials\r\n0\r\n\r\n"
    reply = raw_bytes(server, b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      + framing + b"\r\n" + body)
    assert reply.count(b"HTTP/1.1 ") == 1  # nothing of the body was read as a second request
    status = int(reply.split(b" ")[1])
    assert status in (400, 411) and b'"error": "invalid_request"' in reply


@pytest.mark.parametrize("payload, status", [
    (b"FOO /token HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /jwks.json HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(120)) + b"\r\n", 431),
])
def test_given_requests_the_http_layer_refuses_when_sent_then_json_errors_too(server, payload, status):
    reply = raw_bytes(server, payload)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert int(head.split(b" ")[1]) == status
    assert json.loads(body)["error"] == "invalid_request"


def test_given_head_on_discovery_when_sent_then_200_without_a_body(server):
    response = requests.head(server.issuer + "/jwks.json", timeout=5)
    assert response.status_code == 200 and response.content == b""


def test_given_a_burst_of_concurrent_clients_when_fetching_tokens_then_each_gets_its_own_token(server, resource):
    """20 connections at once, four clients interleaved, discovery requests in between (another
    function): every request succeeds, and each token names the client that asked for it (no
    request ever sees another request's headers)."""
    import base64
    from concurrent.futures import ThreadPoolExecutor

    clients = [new_client(server) for _ in range(4)]

    token_endpoint = server.metadata["token_endpoint"]

    def fetch(i: int) -> tuple[int, str, str]:
        client = clients[i % len(clients)]
        with requests.Session() as session:
            if i % 3 == 0:  # another function's request, concurrently
                assert session.get(server.issuer + "/jwks.json", timeout=10).status_code == 200
            response = session.post(token_endpoint, timeout=10,
                                    auth=(client["client_id"], client["client_secret"]),
                                    data={"grant_type": "client_credentials", "resource": resource})
        if response.status_code != 200:
            return response.status_code, client["client_id"], response.text
        payload = response.json()["access_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return 200, client["client_id"], claims["client_id"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(fetch, range(200)))
    assert all(status == 200 and asked == got for status, asked, got in results), \
        [r for r in results if r[0] != 200 or r[1] != r[2]][:3]


@pytest.mark.parametrize("target", [b"//[", b"//example.com/token", b"/token?%zz", b"/..//jwks.json", b"*"])
def test_given_odd_request_targets_when_sent_then_json_answers_and_the_server_lives(server, target):
    reply = raw_bytes(server, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert 400 <= int(head.split(b" ")[1]) < 500 and json.loads(body)["error"]
    assert requests.get(server.issuer + "/jwks.json", timeout=5).status_code == 200
