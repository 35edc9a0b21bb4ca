"""The deployed functions' behaviour: lambda_handler driven by the events in events/ under moto.

Every event file has an expected outcome here, so a new event cannot go untested.
"""

import json
from collections import Counter
from pathlib import Path

import boto3
import jwt
import pytest
from joserfc.jwk import RSAKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from tokenmint import runtime
from tokenmint.adapters.aws.clients import aws_client
from tokenmint.oauth.credentials import hash_secret
from tokenmint.oauth.models import Client, ClientSecret, Resource
from tokenmint.server import lambda_context

EVENTS = Path(__file__).resolve().parents[2] / "events"
API = "https://api.example.com/mcp"
DOMAIN_ISSUER = "https://abc123.execute-api.us-east-1.amazonaws.com"

EXPECTED = {
    "token_basic.json": (200, None),
    "token_post.json": (200, None),
    "token_wrong_secret.json": (401, "invalid_client"),
    "token_unknown_client.json": (401, "invalid_client"),
    "token_no_auth.json": (401, "invalid_client"),
    "token_bad_basic_header.json": (401, "invalid_client"),
    "token_unsupported_grant_type.json": (400, "unsupported_grant_type"),
    "token_missing_grant_type.json": (400, "invalid_request"),
    "token_wrong_content_type.json": (400, "invalid_request"),
    "token_repeated_parameter.json": (400, "invalid_request"),
    "token_invalid_scope.json": (400, "invalid_scope"),
    "token_invalid_target_fragment.json": (400, "invalid_target"),
    "token_unknown_resource.json": (400, "invalid_target"),
    "token_wrong_method.json": (405, "invalid_request"),
    "discovery_metadata.json": (200, None),
    "discovery_openid_configuration.json": (200, None),
    "discovery_jwks.json": (200, None),
}


def seed(table: str) -> None:
    from tokenmint.adapters.aws.dynamodb import DynamoDbStore

    store = DynamoDbStore(boto3.client("dynamodb"), table)
    store.create_resource(Resource(API, ("tools:read", "tools:write"), token_lifetime=300))
    for client_id, secret, method in (
            ("tmc_example", "tmsec_example0000000000000000000000000000000000", "client_secret_basic"),
            ("tmc_example_post", "tmsec_examplepost00000000000000000000000000000000", "client_secret_post")):
        store.create_client(Client(client_id, method, ("tools:read", "tools:write"), created_at=1_700_000_000,
                                   secrets=(ClientSecret(hash_secret(secret), 1_700_000_000),)))


@pytest.fixture
def deployed(table, kms_key, monkeypatch):
    """The environment template.yaml gives the functions, on a seeded table."""
    def deploy(alg: str = "RS256") -> str:
        key_arn = kms_key(alg)
        for name, value in {"TOKENMINT_BACKEND": "aws", "TOKENMINT_TABLE": table,
                            "TOKENMINT_SIGNING_KEY_ID": key_arn, "TOKENMINT_SIGNING_ALG": alg}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("TOKENMINT_ISSUER", raising=False)
        runtime.install(None)
        return key_arn
    seed(table)
    yield deploy
    runtime.install(None)


def invoke(name: str) -> dict:
    from tokenmint.handlers import discovery, token

    event = json.loads((EVENTS / name).read_text())
    module = token if name.startswith("token_") else discovery
    response = module.lambda_handler(event, lambda_context(module.__name__))
    response["json"] = json.loads(response["body"])
    return response


def kms_public_key(key_arn: str):
    return load_der_public_key(boto3.client("kms").get_public_key(KeyId=key_arn)["PublicKey"])


def test_every_event_has_an_expected_outcome():
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_given_an_event_when_invoked_then_the_expected_answer(deployed, name):
    deployed()
    status, error = EXPECTED[name]
    response = invoke(name)
    assert response["statusCode"] == status, response["body"]
    if error:
        assert response["json"]["error"] == error
        assert response["headers"]["Cache-Control"] == "no-store"
        assert "tmsec_" not in response["body"]
    if status == 401:
        assert response["headers"]["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_given_a_kms_key_when_a_token_is_issued_then_it_verifies_with_the_kms_public_key(deployed, alg):
    key_arn = deployed(alg)
    body = invoke("token_basic.json")["json"]
    claims = jwt.decode(body["access_token"], kms_public_key(key_arn), algorithms=[alg], audience=API,
                        issuer=DOMAIN_ISSUER)
    assert claims["client_id"] == claims["sub"] == "tmc_example"
    assert claims["scope"] == body["scope"] == "tools:read"
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"


def test_given_the_jwks_when_fetched_then_it_holds_the_kms_public_key_under_its_rfc7638_thumbprint(deployed):
    key_arn = deployed("RS256")
    (published,) = invoke("discovery_jwks.json")["json"]["keys"]
    pem = kms_public_key(key_arn).public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    independent = RSAKey.import_key(pem)
    assert published["kid"] == independent.thumbprint()
    assert published["n"] == independent.as_dict()["n"]
    token = invoke("token_basic.json")["json"]["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == published["kid"]
    verified = jwt.decode(token, jwt.PyJWK(published).key, algorithms=["RS256"], audience=API)
    assert verified["iss"] == DOMAIN_ISSUER


def test_given_a_warm_function_when_tokens_are_issued_then_one_kms_sign_and_one_dynamodb_read_each(deployed):
    deployed("RS256")
    calls: Counter = Counter()
    for service in ("kms", "dynamodb"):
        aws_client(service, "us-east-1").meta.events.register(
            "before-call", lambda model, **_: calls.update([model.name]))
    assert invoke("token_basic.json")["statusCode"] == 200  # cold: also GetPublicKey and the registry Query
    assert calls == Counter({"Sign": 1, "GetItem": 1, "GetPublicKey": 1, "Query": 1})
    calls.clear()
    for _ in range(5):
        assert invoke("token_basic.json")["statusCode"] == 200
    assert calls == Counter({"Sign": 5, "GetItem": 5})


def test_given_a_rejected_request_when_invoked_then_no_kms_call(deployed):
    deployed("RS256")
    calls: Counter = Counter()
    aws_client("kms", "us-east-1").meta.events.register("before-call", lambda model, **_: calls.update([model.name]))
    for name in ("token_wrong_secret.json", "token_unknown_client.json", "token_invalid_scope.json"):
        invoke(name)
    assert calls["Sign"] == 0


def test_given_a_disabled_client_when_invoked_then_invalid_client_at_once(deployed, table):
    deployed("RS256")
    assert invoke("token_basic.json")["statusCode"] == 200
    from tokenmint import admin
    from tokenmint.adapters.aws.dynamodb import DynamoDbStore

    admin.set_client_disabled(DynamoDbStore(boto3.client("dynamodb"), table), "tmc_example", True)
    response = invoke("token_basic.json")
    assert response["statusCode"] == 401 and "disabled" in response["json"]["error_description"]


def test_given_kms_throttling_when_a_token_is_requested_then_503_retry_after(deployed):
    from botocore.exceptions import ClientError

    deployed("RS256")
    invoke("token_basic.json")  # warm: the public key is cached
    kms = aws_client("kms", "us-east-1")

    def throttle(**_):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "Sign")
    kms.meta.events.register_first("before-call.kms.Sign", throttle)
    response = invoke("token_basic.json")
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "1"
    assert response["json"]["error"] == "temporarily_unavailable"
