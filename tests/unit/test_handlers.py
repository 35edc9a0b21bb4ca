"""The Lambda handlers' HTTP contract, on in-memory ports: status, headers and JSON of every answer."""

import base64
import json
from urllib.parse import quote

import pytest

from support.fakes import NOW, InMemoryKeyStore, InMemoryStore
from tokenmint import runtime
from tokenmint.config import Settings
from tokenmint.handlers import discovery, token
from tokenmint.ports import UnavailableError
from tokenmint.server import build_event, lambda_context

ISSUER = "https://auth.example.com"
API = "https://api.example.com/mcp"
SECRET = "tmsec_" + "h" * 43
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def store():
    store = InMemoryStore()
    store.add_resource(API, "tools:read tools:write")
    store.add_client("svc", SECRET, "tools:read")
    return store


@pytest.fixture(autouse=True)
def backend(store):
    backend = runtime.Backend(Settings(issuer=ISSUER), store, store, InMemoryKeyStore(), store, store, clock=lambda: NOW)
    runtime.install(backend)
    yield backend
    runtime.install(None)


def call(module, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> dict:
    event = build_event(method, path, {**(headers or {})}, body, domain="auth.example.com", source_ip="192.0.2.1")
    response = module.lambda_handler(event, lambda_context("test"))
    response["json"] = json.loads(response["body"]) if response.get("body") else None
    return response


def basic(client_id: str = "svc", secret: str = SECRET) -> dict:
    return {"authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def test_given_a_valid_request_when_posted_then_200_json_token_no_store():
    response = call(token, "POST", "/token", f"grant_type=client_credentials&resource={quote(API)}".encode(),
                    {**FORM, **basic()})
    assert response["statusCode"] == 200
    assert response["headers"]["Cache-Control"] == "no-store"
    assert response["headers"]["Content-Type"] == "application/json"
    assert set(response["json"]) == {"access_token", "token_type", "expires_in", "scope"}


@pytest.mark.parametrize("method, body, headers, status, error", [
    ("GET", b"", {}, 405, "invalid_request"),
    ("PUT", b"grant_type=client_credentials", FORM, 405, "invalid_request"),
    ("POST", b'{"grant_type":"client_credentials"}', {"content-type": "application/json"}, 400, "invalid_request"),
    ("POST", b"grant_type=client_credentials", {}, 400, "invalid_request"),
    ("POST", b"grant_type=client_credentials&x=" + b"a" * 40_000, FORM, 413, "invalid_request"),
    ("POST", b"grant_type=client_credentials&scope=a&scope=b", FORM, 400, "invalid_request"),
    ("POST", b"scope=tools:read", FORM, 400, "invalid_request"),
    ("POST", b"grant_type=authorization_code", FORM, 400, "unsupported_grant_type"),
    ("POST", b"grant_type=client_credentials&scope=a%5Cb", FORM, 400, "invalid_scope"),
    ("POST", b"grant_type=client_credentials&resource=https%3A%2F%2Fapi.example.com%2F%23x", FORM, 400,
     "invalid_target"),
    ("POST", b"grant_type=client_credentials&resource=mcp", FORM, 400, "invalid_target"),
    ("POST", b"grant_type=client_credentials", FORM, 401, "invalid_client"),
    ("POST", b"grant_type=client_credentials\xff", FORM, 400, "invalid_request"),
])
def test_given_bad_input_when_posted_then_rfc6749_error_no_store(store, backend, method, body, headers, status, error):
    if status != 401 and "content-type" in headers:
        headers = {**headers, **basic()}
    before = dict(store.clients)
    response = call(token, method, "/token", body, headers)
    assert response["statusCode"] == status
    assert response["json"]["error"] == error and response["json"]["error_description"]
    assert response["headers"]["Cache-Control"] == "no-store"
    assert store.clients == before and backend.keys.signatures == 0


def test_given_wrong_secret_when_posted_then_401_with_basic_challenge():
    response = call(token, "POST", "/token", b"grant_type=client_credentials", {**FORM, **basic(secret="nope")})
    assert response["statusCode"] == 401
    assert response["headers"]["WWW-Authenticate"].startswith("Basic ")
    assert "nope" not in response["body"]


def test_given_a_body_that_is_not_base64_when_flagged_base64_then_invalid_request():
    event = build_event("POST", "/token", {**FORM, **basic()}, b"x", domain="d", source_ip="192.0.2.1")
    event["body"] = "%%%not-base64%%%"
    response = token.lambda_handler(event, lambda_context("test"))
    assert response["statusCode"] == 400 and "base64" in response["body"]


def test_given_the_store_is_throttled_when_posted_then_503_retry_after(store, monkeypatch):
    def throttled(client_id):
        raise UnavailableError("DynamoDB get_item is unavailable")
    monkeypatch.setattr(store, "get_client", throttled)
    response = call(token, "POST", "/token", b"grant_type=client_credentials", {**FORM, **basic()})
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "1"
    assert response["json"]["error"] == "temporarily_unavailable"


def test_given_a_bug_when_posted_then_500_with_correlation_id_and_no_trace(store, monkeypatch):
    def broken(client_id):
        raise KeyError("boom")
    monkeypatch.setattr(store, "get_client", broken)
    response = call(token, "POST", "/token", b"grant_type=client_credentials", {**FORM, **basic()})
    assert response["statusCode"] == 500
    assert response["json"]["error"] == "server_error"
    assert "correlation id" in response["json"]["error_description"]
    assert "Traceback" not in response["body"] and "boom" not in response["body"]


def test_given_an_unknown_path_when_called_then_404_json():
    response = call(token, "POST", "/nope", b"", {})
    assert response["statusCode"] == 404 and response["json"]["error"] == "invalid_request"


@pytest.mark.parametrize("path", ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"])
def test_given_discovery_when_fetched_then_rfc8414_metadata_cacheable(path):
    response = call(discovery, "GET", path)
    assert response["statusCode"] == 200
    assert response["headers"]["Cache-Control"].startswith("public, max-age=")
    metadata = response["json"]
    assert metadata["issuer"] == ISSUER
    assert metadata["token_endpoint"] == ISSUER + "/token"
    assert metadata["jwks_uri"] == ISSUER + "/jwks.json"
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert metadata["scopes_supported"] == ["tools:read", "tools:write"]
    assert "none" not in metadata["token_endpoint_auth_signing_alg_values_supported"]
    assert {"token_endpoint_auth_methods_supported", "response_types_supported"} <= set(metadata)


def test_given_no_configured_issuer_when_discovered_then_issuer_is_the_api_domain(backend):
    backend.settings = Settings()
    assert call(discovery, "GET", "/.well-known/oauth-authorization-server")["json"]["issuer"] == \
        "https://auth.example.com"


def test_given_the_jwks_when_fetched_then_public_keys_only_and_cacheable(backend):
    response = call(discovery, "GET", "/jwks.json")
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/jwk-set+json"
    (key,) = response["json"]["keys"]
    assert key["kid"] == backend.keys.jwk["kid"] and key["use"] == "sig" and key["alg"] == "RS256"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_given_post_on_discovery_when_called_then_405():
    response = call(discovery, "POST", "/jwks.json", b"", {})
    assert response["statusCode"] == 405 and response["headers"]["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("drop", [("headers",), ("body",), ("requestContext", "http", "userAgent"),
                                  ("requestContext", "http", "sourceIp"), ("isBase64Encoded",)])
def test_given_an_event_missing_optional_fields_when_invoked_then_a_4xx_answer_not_a_crash(drop):
    event = build_event("POST", "/token", {**FORM, **basic("svc", "wrong")}, b"grant_type=client_credentials",
                        domain="auth.example.com", source_ip="192.0.2.1")
    parent = event
    for key in drop[:-1]:
        parent = parent[key]
    parent.pop(drop[-1], None)
    response = token.lambda_handler(event, lambda_context("test"))
    assert 400 <= response["statusCode"] < 500


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_given_the_authorization_endpoint_when_called_then_a_clear_unsupported_response_type(method):
    response = call(discovery, method, "/authorize?response_type=code&client_id=svc")
    assert response["statusCode"] == 400
    assert response["json"]["error"] == "unsupported_response_type"
    assert "client_credentials" in response["json"]["error_description"]
    assert "Location" not in response["headers"]  # never a redirect: no redirect URI is registered
