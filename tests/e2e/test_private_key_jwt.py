"""private_key_jwt over HTTP with clients nobody here wrote: authlib's PrivateKeyJWT, and a plain
client that registers its JWKS through RFC 7591 and signs its own assertions with PyJWT."""

import json
import time
import uuid

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tokenmint.oauth.jwk import public_jwk

API = "https://api.example.com/pkjwt"


@pytest.fixture(scope="module")
def world(server):
    server.cli("resource", "create", API, "--scope", "jobs:run")
    return server


def pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_authlib_private_key_jwt_gets_a_token(world, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [public_jwk(key.public_key(), "RS256")]}))
    client = json.loads(world.cli("client", "create", "--auth-method", "private_key_jwt", "--scope", "jobs:run",
                                  "--jwks-file", str(jwks_file), "--json").stdout)
    assert "client_secret" not in client
    endpoint = world.metadata["token_endpoint"]
    assert "private_key_jwt" in world.metadata["token_endpoint_auth_methods_supported"]
    # authlib signs one-hour assertions by default: above the 10-minute cap, refused with a clear reason
    default = OAuth2Session(client["client_id"], pem(key), token_endpoint_auth_method=PrivateKeyJWT(endpoint))
    with pytest.raises(Exception, match="at most 600 seconds"):
        default.fetch_token(endpoint, grant_type="client_credentials", resource=API)
    short = PrivateKeyJWT(endpoint, claims={"exp": int(time.time()) + 300})
    session = OAuth2Session(client["client_id"], pem(key), token_endpoint_auth_method=short)
    token = session.fetch_token(endpoint, grant_type="client_credentials", resource=API)
    assert token["scope"] == "jobs:run"


def test_a_registered_jwks_client_signs_its_own_assertions_and_replays_fail(world):
    key = ec.generate_private_key(ec.SECP256R1())
    initial = json.loads(world.cli("iat", "create", "--scope", "jobs:run", "--json").stdout)["initial_access_token"]
    registered = requests.post(world.metadata["registration_endpoint"], timeout=10,
                               headers={"Authorization": f"Bearer {initial}"},
                               json={"token_endpoint_auth_method": "private_key_jwt", "scope": "jobs:run",
                                     "jwks": {"keys": [public_jwk(key.public_key(), "ES256")]}})
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]
    assert "client_secret" not in registered.json()

    def assertion(**claims) -> str:  # as the MCP SDK signs: no kid, aud = issuer, 300 s
        now = int(time.time())
        return jwt.encode({"iss": client_id, "sub": client_id, "aud": world.issuer, "iat": now, "exp": now + 300,
                           "jti": str(uuid.uuid4()), **claims}, key, algorithm="ES256")

    def post(value: str) -> requests.Response:
        return requests.post(world.metadata["token_endpoint"], timeout=10, data={
            "grant_type": "client_credentials", "resource": API,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": value})

    value = assertion()
    assert post(value).status_code == 200
    replayed = post(value)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_client"
    assert replayed.headers["WWW-Authenticate"].startswith("Basic")
    for bad in (assertion(exp=int(time.time()) + 3600), assertion(aud="https://elsewhere.example.com"),
                jwt.encode({"iss": client_id, "sub": client_id}, None, algorithm="none")):
        assert post(bad).status_code == 401
