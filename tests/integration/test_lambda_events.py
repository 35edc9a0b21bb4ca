"""The deployed functions' behaviour: lambda_handler driven by the events in events/ under moto.

Every event file has an expected outcome here, so a new event cannot go untested.
"""

import base64
import copy
import json
import re
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import boto3
import jwt
import pytest
from joserfc.jwk import RSAKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from support.dpop import DpopKey
from support.template import deployed_template, load_template
from tokenmint import admin, runtime
from tokenmint.adapters.aws.clients import aws_client
from tokenmint.adapters.aws.kms import STACK_TAG
from tokenmint.keys import ACTIVE, NEXT, PREPUBLISH, RETIRE_AFTER, RETIRED, RETIRING
from tokenmint.oauth.credentials import hash_secret
from tokenmint.oauth.models import Client, ClientSecret, RegistrationPolicy, Resource
from tokenmint.oauth.registration import new_initial_access_token
from tokenmint.server import lambda_context

EVENTS = Path(__file__).resolve().parents[2] / "events"
API = "https://api.example.com/mcp"
DOMAIN_ISSUER = "https://abc123.execute-api.us-east-1.amazonaws.com"
# The bearer tokens of the registration events (RFC 7591 initial, RFC 7592 registration access token).
INITIAL_ACCESS_TOKEN = "tmiat_example00000000000000000000000000000000000000"
REGISTRATION_ACCESS_TOKEN = "tmrat_example0000000000000000000000000000000000000"
REGISTERED_CLIENT = "tmc_registered"
POLICY = RegistrationPolicy(scopes=("tools:read", "tools:write"))
# Introspection (RFC 7662): a client allowed to call the introspection endpoint.
INTROSPECTOR = ("tmc_introspector", "tmsec_introspector00000000000000000000000000000000")
# The sample tools API, its resource identifier (TOKENMINT_TOOLS_RESOURCE, TOKENMINT_AUTHORIZER_AUDIENCE)
# and a client of it that may have both its scopes.
TOOLS_RESOURCE = DOMAIN_ISSUER + "/tools"
TOOLS_CLIENT = ("tmc_tools", "tmsec_tools000000000000000000000000000000000000000")
# The source address of token_throttled.json, blocked for tmc_example by seed().
THROTTLED_SOURCE = "198.51.100.66"
# The stack name (TOKENMINT_STACK): the tag value of the keys it owns, and its alias prefix.
STACK = "tokenmint-test"

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
    "token_dpop_stale_proof.json": (400, "invalid_dpop_proof"),  # RFC 9449: a proof from 2023
    # RFC 8705 §2.2 over the custom domain with mutual TLS: the certificate API Gateway verified
    "token_mtls_self_signed.json": (200, None),
    # the right secret, from a source blocked for tmc_example after too many failures (seed)
    "token_throttled.json": (429, "temporarily_unavailable"),
    "discovery_metadata.json": (200, None),
    "discovery_openid_configuration.json": (200, None),
    "discovery_jwks.json": (200, None),
    "discovery_authorize.json": (400, "unsupported_response_type"),
    "discovery_openapi.json": (200, None),
    "registration_create.json": (201, None),
    "registration_missing_token.json": (401, "invalid_token"),
    "registration_wrong_token.json": (401, "invalid_token"),
    "registration_malformed_json.json": (400, "invalid_client_metadata"),
    "registration_wrong_content_type.json": (400, "invalid_client_metadata"),
    "registration_redirect_uris.json": (400, "invalid_client_metadata"),
    "registration_scope_outside_policy.json": (400, "invalid_client_metadata"),
    "registration_wrong_method.json": (405, "invalid_request"),
    "registration_read.json": (200, None),
    "registration_read_wrong_token.json": (401, "invalid_token"),
    "registration_update.json": (200, None),
    "registration_update_server_fields.json": (400, "invalid_client_metadata"),
    "registration_delete.json": (204, None),
    # RFC 7009 §2.2: a token that is not valid (or not the caller's) is answered 200 all the same.
    "revocation_basic.json": (200, None),
    "revocation_unauthenticated.json": (401, "invalid_client"),
    "revocation_missing_token.json": (400, "invalid_request"),
    "introspection_garbage_token.json": (200, None),
    "introspection_no_permission.json": (403, "unauthorized_client"),
    "introspection_unauthenticated.json": (401, "invalid_client"),
    "tools_no_token.json": (401, "invalid_token"),
    "tools_metadata.json": (200, None),
    "tools_unknown_tool.json": (401, "invalid_token"),  # the token is checked before the tool
    "tools_authorized_echo.json": (200, None),
    "tools_authorized_time.json": (200, None),
    # The Lambda authorizer answers API Gateway (simple responses), not the client.
    "authorizer_no_token.json": {"isAuthorized": False},
    "authorizer_garbage_token.json": {"isAuthorized": False},
    "authorizer_unconfigured_route.json": {"isAuthorized": False},
    # The key rotation answers EventBridge (or an operator) with what it did, one pattern per action.
    # On a fresh stack, the first run adopts the deployed key; a forced one also starts a rotation.
    "key_rotation_scheduled.json": {"actions": [r"adopted the deployed key \S+ \(active\)"]},
    "key_rotation_forced.json": {"actions": [r"adopted the deployed key \S+ \(active\)",
                                             r"created \S+ \(next: published, not signing yet\)"]},
}


def store_of(table: str):
    from tokenmint.adapters.aws.dynamodb import DynamoDbStore

    return DynamoDbStore(boto3.client("dynamodb"), table)


def seed(table: str) -> None:
    store = store_of(table)
    store.create_resource(Resource(API, ("tools:read", "tools:write"), token_lifetime=300))
    for client_id, secret, method in (
            ("tmc_example", "tmsec_example0000000000000000000000000000000000", "client_secret_basic"),
            ("tmc_example_post", "tmsec_examplepost00000000000000000000000000000000", "client_secret_post")):
        store.create_client(Client(client_id, method, ("tools:read", "tools:write"), created_at=1_700_000_000,
                                   secrets=(ClientSecret(hash_secret(secret), 1_700_000_000),)))
    # Registration: an initial access token for the registration_* events on /register, and a
    # registered client (with its registration access token) for those on /register/{client_id}.
    token, _ = new_initial_access_token(now=1_700_000_000, policy=POLICY, value=INITIAL_ACCESS_TOKEN,
                                        token_id="iat_example")
    store.create_initial_access_token(token)
    store.create_client(Client(REGISTERED_CLIENT, "client_secret_basic", ("tools:read",), created_at=1_700_000_000,
                               secrets=(ClientSecret(hash_secret("tmsec_registered00000000000000000000000000000000"),
                                                     1_700_000_000),),
                               name="billing agent", metadata={"contacts": ["ops@example.com"]},
                               registration_access_token_hash=hash_secret(REGISTRATION_ACCESS_TOKEN), policy=POLICY))
    # Introspection: a client with the permission (any resource's tokens).
    store.create_client(Client(INTROSPECTOR[0], "client_secret_basic", (), created_at=1_700_000_000,
                               secrets=(ClientSecret(hash_secret(INTROSPECTOR[1]), 1_700_000_000),), introspect=True))
    # RFC 8705 §2.2: a self-signed mTLS client whose certificate is the one in its event.
    certificate = load("token_mtls_self_signed.json")["requestContext"]["authentication"]["clientCert"]
    store.create_client(Client("tmc_mtls", "self_signed_tls_client_auth", ("tools:read",), created_at=1_700_000_000,
                               metadata={"jwks": {"keys": [admin.certificate_jwk(certificate["clientCertPem"])]}}))
    # The sample tools API as a registered resource, and a client of it.
    store.create_resource(Resource(TOOLS_RESOURCE, ("tools:echo", "tools:time"), token_lifetime=300))
    store.create_client(Client(TOOLS_CLIENT[0], "client_secret_basic", ("tools:echo", "tools:time"),
                               created_at=1_700_000_000,
                               secrets=(ClientSecret(hash_secret(TOOLS_CLIENT[1]), 1_700_000_000),)))
    # The source of token_throttled.json failed too often as tmc_example: blocked (oauth/throttle.py).
    store.block_source("tmc_example", THROTTLED_SOURCE, 4_000_000_000, now=1_700_000_000)


def function_environment(function: str) -> dict[str, str]:
    """The variables template.yaml gives ``function`` of its own (literal values only)."""
    variables = load_template()["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
    return {name: value for name, value in variables.items() if isinstance(value, str)}


@pytest.fixture
def deployed(table, kms_key, monkeypatch):
    """The environment template.yaml gives the functions, on a seeded table, with the deployed key
    tagged as the template tags it."""
    def deploy(alg: str = "RS256") -> str:
        key_arn = kms_key(alg)
        boto3.client("kms").tag_resource(KeyId=key_arn, Tags=[{"TagKey": STACK_TAG, "TagValue": STACK}])
        monkeypatch.delenv("TOKENMINT_KEY_REPLICA_REGIONS", raising=False)  # KeyReplicaRegions: none
        for name, value in {"TOKENMINT_BACKEND": "aws", "TOKENMINT_TABLE": table,
                            "TOKENMINT_SIGNING_KEY_ID": key_arn, "TOKENMINT_SIGNING_ALG": alg,
                            "TOKENMINT_STACK": STACK, "TOKENMINT_KEY_ROTATION_DAYS": "30",
                            # ToolsResource and CheckRevocation; the authorizer's route map as the template has it
                            "TOKENMINT_TOOLS_RESOURCE": TOOLS_RESOURCE, "TOKENMINT_AUTHORIZER_AUDIENCE": TOOLS_RESOURCE,
                            "TOKENMINT_CHECK_REVOCATION": "true",
                            **function_environment("AuthorizerFunction")}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("TOKENMINT_ISSUER", raising=False)
        runtime.install(None)
        return key_arn
    seed(table)
    pkjwt_client(table)
    yield deploy
    runtime.install(None)


def load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def invoke(name: str, event: dict | None = None) -> dict:
    """events/<name> (or ``event``) through the lambda_handler its name's prefix says; an HTTP
    response gets its body parsed as ``json``, an authorizer's or the key rotation's answer is
    returned as it is."""
    from tokenmint.handlers import (
        authorizer,
        discovery,
        introspection,
        key_rotation,
        registration,
        revocation,
        token,
        tools,
    )

    event = load(name) if event is None else event
    modules = {"token": token, "discovery": discovery, "registration": registration, "revocation": revocation,
               "introspection": introspection, "tools": tools, "authorizer": authorizer,
               "key_rotation": key_rotation}
    prefix = "key_rotation" if name.startswith("key_rotation_") else name.partition("_")[0]
    module = modules[prefix]
    response = module.lambda_handler(event, lambda_context(module.__name__))
    if module in (authorizer, key_rotation):
        return copy.deepcopy(response)
    body = response.get("body") or ""  # 204: no body at all
    response["json"] = json.loads(body) if body else None
    return response


def with_form(name: str, authorization: str | None = None, **fields: str) -> dict:
    """events/<name> with ``fields`` as its form body (encoded as the event encodes its body)."""
    event = load(name)
    body = urlencode(fields)
    event["body"] = base64.b64encode(body.encode()).decode() if event["isBase64Encoded"] else body
    event["headers"]["content-length"] = str(len(body.encode()))
    if authorization is not None:
        event["headers"]["authorization"] = authorization
    return event


PKJWT_KEY = None


def pkjwt_client(table: str) -> None:
    """A private_key_jwt client allowed to introspect, with an EC key made for the test run."""
    global PKJWT_KEY
    from cryptography.hazmat.primitives.asymmetric import ec

    from tokenmint.oauth.jwk import public_jwk

    PKJWT_KEY = ec.generate_private_key(ec.SECP256R1())
    store_of(table).create_client(Client("tmc_pkjwt", "private_key_jwt", (), created_at=1_700_000_000, introspect=True,
                                         metadata={"jwks": {"keys": [public_jwk(PKJWT_KEY.public_key(), "ES256")]}}))


def pkjwt_assertion() -> str:
    import time
    import uuid

    now = int(time.time())
    return jwt.encode({"iss": "tmc_pkjwt", "sub": "tmc_pkjwt", "aud": DOMAIN_ISSUER, "iat": now, "exp": now + 300,
                       "jti": str(uuid.uuid4())}, PKJWT_KEY, algorithm="ES256")


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def bearer(name: str, access_token: str) -> dict:
    """events/<name> (a tools or authorizer event) presenting ``access_token``."""
    event = load(name)
    event["headers"]["authorization"] = "Bearer " + access_token
    if "identitySource" in event:  # the authorizer's identity sources: the header, then the route key
        event["identitySource"] = ["Bearer " + access_token, event["routeKey"]]
    return event


def kms_public_key(key_arn: str):
    return load_der_public_key(boto3.client("kms").get_public_key(KeyId=key_arn)["PublicKey"])


def test_every_event_has_an_expected_outcome():
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_given_an_event_when_invoked_then_the_expected_answer(deployed, name):
    deployed()
    if name.startswith("authorizer_"):
        assert invoke(name) == EXPECTED[name]
        return
    if name.startswith("key_rotation_"):
        answer = invoke(name)
        assert set(answer) == {"actions"}
        assert len(answer["actions"]) == len(EXPECTED[name]["actions"]), answer
        for action, pattern in zip(answer["actions"], EXPECTED[name]["actions"]):
            assert re.fullmatch(pattern, action), (action, pattern)
        return
    status, error = EXPECTED[name]
    response = invoke(name)
    assert response["statusCode"] == status, response["body"]
    if error:
        assert response["json"]["error"] == error
        assert not any(prefix in response["body"] for prefix in ("tmsec_", "tmiat_", "tmrat_"))
        if not name.startswith("tools_"):  # the sample API's "no such tool" is not an OAuth answer
            assert response["headers"]["Cache-Control"] == "no-store"
    if status == 401:
        # the OAuth endpoints authenticate clients (Basic); registration and the tools API take
        # bearer tokens (RFC 6750), and the tools API names its metadata (RFC 9728 §5.1)
        scheme = "Bearer" if name.startswith(("registration_", "tools_")) else "Basic"
        assert response["headers"]["WWW-Authenticate"].startswith(scheme)
        if name.startswith("tools_"):
            assert "resource_metadata=" in response["headers"]["WWW-Authenticate"]
            assert response["headers"]["Cache-Control"] == "no-store"
    if name.startswith(("registration_", "revocation_", "introspection_")):
        assert response["headers"]["Cache-Control"] == "no-store"
    if status == 204:
        assert response["json"] is None


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
    # cold: also the resource registry and key records (two Queries, each cached per process), the
    # deployed key's public half (GetPublicKey: no rotation has recorded keys yet) and the client's
    # first usage stamp (UpdateItem)
    assert invoke("token_basic.json")["statusCode"] == 200
    assert calls == Counter({"Sign": 1, "GetItem": 1, "GetPublicKey": 1, "Query": 2, "UpdateItem": 1})
    calls.clear()
    for _ in range(5):
        assert invoke("token_basic.json")["statusCode"] == 200
    # the usage stamp is at most one write per client per 5 minutes
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


# -- registration (RFC 7591 / RFC 7592) ----------------------------------------------------------
def test_given_an_initial_access_token_when_a_client_registers_then_it_gets_credentials_and_the_token_is_spent(
        deployed, table):
    deployed()
    store = store_of(table)
    token_hash = hash_secret(INITIAL_ACCESS_TOKEN)
    assert store.get_initial_access_token(token_hash).uses == 0

    response = invoke("registration_create.json")

    assert response["statusCode"] == 201, response["body"]
    body = response["json"]
    client_id = body["client_id"]
    assert client_id.startswith("tmc_") and client_id != REGISTERED_CLIENT
    assert body["client_secret"].startswith("tmsec_")
    assert body["registration_access_token"].startswith("tmrat_")
    assert body["registration_client_uri"] == f"{DOMAIN_ISSUER}/register/{client_id}"
    assert body["registration_client_uri"].endswith(f"/register/{client_id}")
    assert body["scope"] == "tools:read" and body["client_name"] == "billing agent"
    assert body["contacts"] == ["ops@example.com"]
    assert store.get_initial_access_token(token_hash).uses == 1
    stored = store.get_client(client_id)
    assert stored.scopes == ("tools:read",) and stored.policy == POLICY
    assert stored.registration_access_token_hash == hash_secret(body["registration_access_token"])
    assert hash_secret(body["client_secret"]) in {secret.hash for secret in stored.secrets}


def test_given_a_rejected_registration_when_invoked_then_the_initial_access_token_is_not_spent(deployed, table):
    deployed()
    for name in ("registration_redirect_uris.json", "registration_scope_outside_policy.json",
                 "registration_malformed_json.json", "registration_wrong_token.json"):
        assert invoke(name)["statusCode"] in (400, 401)
    assert store_of(table).get_initial_access_token(hash_secret(INITIAL_ACCESS_TOKEN)).uses == 0


def test_given_a_registration_access_token_when_the_client_is_deleted_then_it_is_gone_and_marked(deployed, table):
    deployed()
    store = store_of(table)
    assert store.get_client(REGISTERED_CLIENT) is not None
    assert store.deleted_client_not_before(REGISTERED_CLIENT) is None

    response = invoke("registration_delete.json")

    assert response["statusCode"] == 204 and response["json"] is None
    assert store.get_client(REGISTERED_CLIENT) is None
    not_before = store.deleted_client_not_before(REGISTERED_CLIENT)
    assert not_before is not None and not_before > 1_700_000_000
    # and its registration access token no longer opens anything
    assert invoke("registration_read.json")["statusCode"] == 401


def test_given_an_update_when_invoked_then_the_registration_access_token_rotates(deployed, table):
    deployed()
    response = invoke("registration_update.json")
    assert response["statusCode"] == 200, response["body"]
    body = response["json"]
    assert body["client_id"] == REGISTERED_CLIENT and body["client_name"] == "renamed"
    assert body["registration_access_token"] != REGISTRATION_ACCESS_TOKEN
    stored = store_of(table).get_client(REGISTERED_CLIENT)
    assert stored.name == "renamed" and stored.version == 2
    assert stored.registration_access_token_hash == hash_secret(body["registration_access_token"])
    # the old registration access token is spent
    assert invoke("registration_read.json")["statusCode"] == 401


def test_given_a_read_when_invoked_then_client_information_without_secrets(deployed):
    deployed()
    response = invoke("registration_read.json")
    assert response["statusCode"] == 200
    body = response["json"]
    assert body["client_id"] == REGISTERED_CLIENT
    assert body["registration_client_uri"] == f"{DOMAIN_ISSUER}/register/{REGISTERED_CLIENT}"
    assert "client_secret" not in body and "registration_access_token" not in body
    assert "tmsec_" not in response["body"] and "tmrat_" not in response["body"]


def test_given_registration_requests_when_invoked_then_only_the_calls_its_role_allows(deployed, table):
    # The RegistrationFunction's role (template.yaml) allows GetItem, PutItem, UpdateItem and
    # DeleteItem on the table; IAM authorises TransactWriteItems item by item (Update, Put, Delete;
    # no ConditionCheck, so no ConditionCheckItem). Never Query, never KMS. (Which items each may
    # touch: test_iam_leading_keys.py.)
    deployed()
    calls: Counter = Counter()
    transact_items: Counter = Counter()

    def record_transaction(params, **_):
        transact_items.update(kind for item in params["TransactItems"] for kind in item)
    for service in ("kms", "dynamodb"):
        aws_client(service, "us-east-1").meta.events.register(
            "before-call", lambda model, **_: calls.update([model.name]))
    aws_client("dynamodb", "us-east-1").meta.events.register(
        "before-parameter-build.dynamodb.TransactWriteItems", record_transaction)

    # Every request first reads its source's failure counter (GetItem), before any bearer token.
    # GetItem ×2 + UpdateItem (the source's registration counter) + Transact(Update, Put)
    assert invoke("registration_create.json")["statusCode"] == 201
    assert invoke("registration_read.json")["statusCode"] == 200  # GetItem ×2
    assert invoke("registration_update.json")["statusCode"] == 200  # GetItem ×2 + PutItem; rotates the token
    store = store_of(table)  # (a client of its own: not recorded) give the event's token back
    client = store.get_client(REGISTERED_CLIENT)
    store.update_client(client.with_changes(registration_access_token_hash=hash_secret(REGISTRATION_ACCESS_TOKEN)))
    assert invoke("registration_delete.json")["statusCode"] == 204  # GetItem ×2 + Transact(Delete, Put)

    assert calls == Counter({"GetItem": 8, "TransactWriteItems": 2, "PutItem": 1, "UpdateItem": 1})
    assert transact_items == Counter({"Update": 1, "Put": 2, "Delete": 1})


# -- revocation (RFC 7009), introspection (RFC 7662) ----------------------------------------------
def test_given_the_events_when_invoked_then_their_answers_say_what_the_rfcs_say(deployed):
    deployed()
    assert invoke("revocation_basic.json")["body"] == ""  # §2.2: 200, no content
    assert invoke("introspection_garbage_token.json")["json"] == {"active": False}
    metadata = invoke("tools_metadata.json")["json"]
    assert metadata["resource"] == TOOLS_RESOURCE
    assert metadata["authorization_servers"] == [DOMAIN_ISSUER]
    assert metadata["scopes_supported"] == ["tools:echo", "tools:time"]
    challenge = invoke("tools_no_token.json")["headers"]["WWW-Authenticate"]
    assert f'resource_metadata="{DOMAIN_ISSUER}/.well-known/oauth-protected-resource/tools"' in challenge
    echo = invoke("tools_authorized_echo.json")["json"]
    assert echo == {"tool": "echo", "client_id": "tmc_example", "echo": "hello, tools"}


def revocation_item(table: str, jti: str) -> dict | None:
    key = {"pk": {"S": f"JTI#{jti}"}, "sk": {"S": "REVOKED"}}
    return boto3.client("dynamodb").get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")


def test_given_an_issued_token_when_its_client_revokes_it_then_introspection_says_inactive(deployed, table):
    deployed()
    access_token = invoke("token_basic.json")["json"]["access_token"]
    claims = jwt.decode(access_token, options={"verify_signature": False})

    # When the introspector introspects it, then it is active, with its claims
    response = invoke("introspection_garbage_token.json",
                      with_form("introspection_garbage_token.json", token=access_token, token_type_hint="access_token"))
    assert response["statusCode"] == 200, response["body"]
    body = response["json"]
    assert body["active"] is True and body["token_type"] == "Bearer"
    assert body["client_id"] == "tmc_example" and body["scope"] == "tools:read" and body["aud"] == API
    assert (body["exp"], body["jti"], body["iss"]) == (claims["exp"], claims["jti"], DOMAIN_ISSUER)
    assert response["headers"]["Cache-Control"] == "no-store"

    # When its client revokes it
    assert revocation_item(table, claims["jti"]) is None
    response = invoke("revocation_basic.json",
                      with_form("revocation_basic.json", token=access_token, token_type_hint="access_token"))
    assert response["statusCode"] == 200 and response["body"] == ""

    # Then it is inactive, and its revocation entry expires with it
    response = invoke("introspection_garbage_token.json",
                      with_form("introspection_garbage_token.json", token=access_token))
    assert response["json"] == {"active": False}
    item = revocation_item(table, claims["jti"])
    assert item is not None and int(item["ttl"]["N"]) == claims["exp"] + 60  # exp + the verifiers' skew
    assert item["client_id"] == {"S": "tmc_example"}


def test_given_another_clients_token_when_revoked_then_200_and_it_stays_active(deployed, table):
    deployed()
    access_token = invoke("token_basic.json")["json"]["access_token"]
    jti = jwt.decode(access_token, options={"verify_signature": False})["jti"]

    # The introspector is authenticated, but the token is tmc_example's (RFC 7009 §2.1)
    response = invoke("revocation_basic.json",
                      with_form("revocation_basic.json", basic(*INTROSPECTOR), token=access_token))

    assert response["statusCode"] == 200
    assert revocation_item(table, jti) is None
    introspected = invoke("introspection_garbage_token.json",
                          with_form("introspection_garbage_token.json", token=access_token))["json"]
    assert introspected["active"] is True


# -- the sample tools API and the Lambda authorizer -------------------------------------------------
DPOP_KEY = DpopKey("ES256")


def dpop_tools_token(scope: str) -> str:
    """A tools token bound to DPOP_KEY (RFC 9449), as the token function issues it."""
    event = with_form("token_basic.json", basic(*TOOLS_CLIENT), grant_type="client_credentials",
                      resource=TOOLS_RESOURCE, scope=scope)
    event["headers"]["dpop"] = DPOP_KEY.proof("POST", DOMAIN_ISSUER + "/token")
    response = invoke("token_basic.json", event)
    assert response["statusCode"] == 200 and response["json"]["token_type"] == "DPoP", response["body"]
    return response["json"]["access_token"]


def with_dpop(name: str, access_token: str) -> dict:
    """events/<name> (a tools or authorizer event) presenting a DPoP-bound token with a fresh proof."""
    event = load(name)
    event["headers"]["authorization"] = "DPoP " + access_token
    if "identitySource" in event:
        event["identitySource"] = ["DPoP " + access_token, event["routeKey"]]
    url = "https://" + event["requestContext"]["domainName"] + event["rawPath"]
    event["headers"]["dpop"] = DPOP_KEY.proof(event["requestContext"]["http"]["method"], url,
                                              access_token=access_token)
    return event


def tools_token(scope: str) -> str:
    event = with_form("token_basic.json", basic(*TOOLS_CLIENT), grant_type="client_credentials",
                      resource=TOOLS_RESOURCE, scope=scope)
    response = invoke("token_basic.json", event)
    assert response["statusCode"] == 200, response["body"]
    return response["json"]["access_token"]


def authorize(access_token: str, route: str = "ANY /authorized/tools/echo") -> dict:
    event = bearer("authorizer_garbage_token.json", access_token)
    path = route.split(" ", 1)[1]
    event["routeKey"] = event["requestContext"]["routeKey"] = route
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["routeArn"] = event["routeArn"].rsplit("/$default/", 1)[0] + "/$default/POST" + path
    event["identitySource"][1] = route
    return invoke("authorizer_garbage_token.json", event)


def test_given_a_tools_token_when_the_authorizer_checks_it_then_only_routes_of_its_scopes(deployed, table):
    deployed()
    access_token = tools_token("tools:echo")

    # The echo route needs tools:echo: allowed, with the client in the context
    answer = authorize(access_token, "ANY /authorized/tools/echo")
    assert answer["isAuthorized"] is True
    assert answer["context"]["client_id"] == answer["context"]["sub"] == TOOLS_CLIENT[0]
    assert answer["context"]["scope"] == "tools:echo"
    assert answer["context"]["jti"] == jwt.decode(access_token, options={"verify_signature": False})["jti"]
    # The time route needs tools:time, which the token lacks
    assert authorize(access_token, "ANY /authorized/tools/time") == {"isAuthorized": False}
    # A token for another resource (audience) is refused even with a matching route
    assert authorize(invoke("token_basic.json")["json"]["access_token"]) == {"isAuthorized": False}

    # When the client's tokens are revoked, then the same token is refused
    admin.revoke_client_tokens(store_of(table), TOOLS_CLIENT[0], now=int(time.time()))
    assert authorize(access_token, "ANY /authorized/tools/echo") == {"isAuthorized": False}


def test_given_a_tools_token_when_the_tools_api_verifies_it_then_scope_and_revocation_count(deployed, table):
    deployed()
    access_token = tools_token("tools:echo")

    response = invoke("tools_no_token.json", bearer("tools_no_token.json", access_token))
    assert response["statusCode"] == 200, response["body"]
    assert response["json"] == {"tool": "echo", "client_id": TOOLS_CLIENT[0], "echo": "hello, tools"}

    # /tools/time needs tools:time: 403 insufficient_scope naming it (RFC 6750 §3.1)
    event = bearer("tools_no_token.json", access_token)
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/tools/time"
    event["pathParameters"] = {"tool": "time"}
    response = invoke("tools_no_token.json", event)
    assert response["statusCode"] == 403
    assert 'error="insufficient_scope"' in response["headers"]["WWW-Authenticate"]
    assert 'scope="tools:time"' in response["headers"]["WWW-Authenticate"]

    # A revoked token: 401 invalid_token
    jti = jwt.decode(access_token, options={"verify_signature": False})["jti"]
    store_of(table).revoke_token(jti, TOOLS_CLIENT[0], int(time.time()) + 300)
    response = invoke("tools_no_token.json", bearer("tools_no_token.json", access_token))
    assert response["statusCode"] == 401 and response["json"]["error"] == "invalid_token"


def template_allowed_actions(function: str, **parameters: str) -> set[str]:
    """The AWS API operations the function's role allows (template.yaml deployed with ``parameters``;
    default: single-region), as botocore names them."""
    actions = set()
    for policy in deployed_template(load_template(), **parameters)["Resources"][function]["Properties"]["Policies"]:
        for statement in policy["Statement"]:
            listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            actions.update(action.split(":", 1)[1] for action in listed)
    return actions


def test_given_the_new_functions_when_invoked_cold_then_only_the_calls_their_roles_allow(deployed):
    # RevocationFunction: GetItem + PutItem (revoking its own token); the others only read (GetItem:
    # the calling client, the token's revocation entry and client). All: Query (the key records)
    # and, since no rotation has recorded keys yet, GetPublicKey (the deployed key), once.
    # Revocation and introspection: UpdateItem only for a caller that fails to authenticate.
    deployed()
    access_token = tools_token("tools:echo tools:time")
    requests = {
        "RevocationFunction": [("revocation_basic.json",
                                with_form("revocation_basic.json", token=access_token))],  # not its token: 200
        "IntrospectionFunction": [("introspection_garbage_token.json",
                                   with_form("introspection_garbage_token.json", token=access_token))],
        "ToolsFunction": [("tools_no_token.json", bearer("tools_no_token.json", access_token))],
        "AuthorizerFunction": [("authorizer_garbage_token.json",
                                bearer("authorizer_garbage_token.json", access_token))],
    }
    own_token = invoke("token_basic.json")["json"]["access_token"]
    requests["RevocationFunction"].append(("revocation_basic.json",
                                           with_form("revocation_basic.json", token=own_token)))
    # a private_key_jwt caller: its assertion's jti is recorded once (the PutItem grant)
    assertion_event = with_form("introspection_garbage_token.json", token=access_token,
                                client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                                client_assertion=pkjwt_assertion())
    del assertion_event["headers"]["authorization"]
    requests["IntrospectionFunction"].append(("introspection_garbage_token.json", assertion_event))
    # a DPoP-bound token with its proof: the proof's jti is recorded once (the PutItem grant)
    for function, name in (("ToolsFunction", "tools_no_token.json"),
                           ("AuthorizerFunction", "authorizer_garbage_token.json")):
        requests[function].append((name, with_dpop(name, dpop_tools_token("tools:echo tools:time"))))
    # a caller with a wrong secret: 401, and its failure is counted (the UpdateItem grant)
    wrong_secret = basic(INTROSPECTOR[0], "tmsec_wrong" + "0" * 40)
    failing = []
    for function, name in (("RevocationFunction", "revocation_basic.json"),
                           ("IntrospectionFunction", "introspection_garbage_token.json")):
        failing.append(with_form(name, wrong_secret, token=access_token))
        requests[function].append((name, failing[-1]))
    calls: Counter = Counter()
    for service in ("kms", "dynamodb"):
        aws_client(service, "us-east-1").meta.events.register(
            "before-call", lambda model, **_: calls.update([model.name]))
    for function, invocations in requests.items():
        runtime.install(None)  # a cold start: the public key is fetched again
        calls.clear()
        for name, event in invocations:
            response = invoke(name, event)
            expected = 401 if any(event is f for f in failing) else 200
            assert response.get("statusCode", 200) == expected, (function, response)
            assert response.get("isAuthorized", True), (function, response)
        # every call is one its role allows, and every grant is used (none to spare)
        assert set(calls) == template_allowed_actions(function), function
        assert calls["GetPublicKey"] == 1, function  # once per process


# -- the key rotation (KeyRotationFunction: the scheduled and the forced event) ---------------------
def kms_keys(region: str = "us-east-1") -> set[str]:
    return {key["KeyArn"] for key in boto3.client("kms", region_name=region).list_keys()["Keys"]}


def key_records(table: str) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for record in store_of(table).list_keys():
        grouped.setdefault(record.state, []).append(record)
    return grouped


def test_given_a_fresh_stack_when_the_schedule_first_runs_then_it_adopts_the_deployed_key(deployed, table):
    key_arn = deployed()
    before = kms_keys()

    answer = invoke("key_rotation_scheduled.json")

    # One active record, of the deployed key, under its RFC 7638 thumbprint; no new KMS key
    (record,) = store_of(table).list_keys()
    assert (record.state, record.key_ref, record.alg) == (ACTIVE, key_arn, "RS256")
    pem = kms_public_key(key_arn).public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert record.kid == RSAKey.import_key(pem).thumbprint() == record.public_jwk["kid"]
    assert answer == {"actions": [f"adopted the deployed key {record.kid} (active)"]}
    assert kms_keys() == before


def test_given_an_adopted_key_when_the_schedule_runs_again_then_nothing_changes(deployed, table):
    deployed()
    invoke("key_rotation_scheduled.json")
    records = [record.to_record() for record in store_of(table).list_keys()]
    keys = kms_keys()

    for cold in (False, True):  # the same process again, and a new one
        if cold:
            runtime.install(None)
        assert invoke("key_rotation_scheduled.json") == {"actions": []}
        assert [record.to_record() for record in store_of(table).list_keys()] == records
        assert kms_keys() == keys


def test_given_the_forced_event_then_a_next_key_is_created_in_kms_tagged_with_the_stack_under_its_alias(
        deployed, table):
    key_arn = deployed()
    invoke("key_rotation_scheduled.json")
    before = kms_keys()

    answer = invoke("key_rotation_forced.json")

    # The deployed key still signs; a next key is published, not signing yet
    records = key_records(table)
    assert set(records) == {ACTIVE, NEXT}
    ((active,), (upcoming,)) = records[ACTIVE], records[NEXT]
    assert active.key_ref == key_arn
    assert answer == {"actions": [f"created {upcoming.kid} (next: published, not signing yet)"]}
    # It is a new KMS signing key of the stack's key spec, single-Region (no replica regions) ...
    kms = boto3.client("kms")
    assert kms_keys() - before == {upcoming.key_ref}
    metadata = kms.describe_key(KeyId=upcoming.key_ref)["KeyMetadata"]
    assert (metadata["KeyUsage"], metadata["KeySpec"], metadata.get("MultiRegion", False)) == (
        "SIGN_VERIFY", "RSA_2048", False)
    # ... tagged with the stack (what the functions' IAM policies require) and nothing else ...
    assert kms.list_resource_tags(KeyId=metadata["KeyId"])["Tags"] == [{"TagKey": STACK_TAG, "TagValue": STACK}]
    # ... and reachable by its alias alias/<stack>-key-<key id>, which a retried creation looks up
    alias = f"alias/{STACK}-key-{upcoming.key_id}"
    targets = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert targets[alias] == metadata["KeyId"]
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"] == upcoming.key_ref
    # Its record holds its public key, under its thumbprint
    pem = kms_public_key(upcoming.key_ref).public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert upcoming.kid == RSAKey.import_key(pem).thumbprint() != active.kid


def test_given_a_forced_rotation_when_jwks_and_token_are_requested_then_both_keys_are_published_and_the_active_one_signs(
        deployed, table):
    deployed()
    invoke("key_rotation_forced.json")  # adopts the deployed key, and creates the next one
    runtime.install(None)  # the discovery and token functions run in processes of their own
    records = key_records(table)
    ((active,), (upcoming,)) = records[ACTIVE], records[NEXT]

    # The JWKS publishes both keys, before the next one signs anything
    published = invoke("discovery_jwks.json")["json"]["keys"]
    assert sorted(jwk["kid"] for jwk in published) == sorted([active.kid, upcoming.kid])
    # A token is still signed with the active key, and verifies with its published JWK
    access_token = invoke("token_basic.json")["json"]["access_token"]
    assert jwt.get_unverified_header(access_token)["kid"] == active.kid
    (jwk,) = [jwk for jwk in published if jwk["kid"] == active.kid]
    assert jwt.decode(access_token, jwt.PyJWK(jwk).key, algorithms=["RS256"], audience=API)["iss"] == DOMAIN_ISSUER


def record_calls() -> Counter:
    calls: Counter = Counter()
    for service in ("kms", "dynamodb"):
        aws_client(service, "us-east-1").meta.events.register(
            "before-call", lambda model, **_: calls.update([model.name]))
    return calls


def run_a_full_rotation(table: str) -> list[str]:
    """Through the handler, on a simulated clock: adopt, force a rotation, promote the next key
    once it has been published long enough, retire the old one once its tokens have expired."""
    now = [time.time()]
    runtime.backend().key_ring.clock = lambda: now[0]
    actions = invoke("key_rotation_scheduled.json")["actions"] + invoke("key_rotation_forced.json")["actions"]
    now[0] += PREPUBLISH
    actions += invoke("key_rotation_scheduled.json")["actions"]
    assert set(key_records(table)) == {ACTIVE, RETIRING}
    now[0] += RETIRE_AFTER
    actions += invoke("key_rotation_scheduled.json")["actions"]
    return actions


def test_given_a_full_rotation_through_the_handler_then_only_the_calls_the_rotation_role_allows(deployed, table):
    key_arn = deployed()
    calls = record_calls()

    actions = run_a_full_rotation(table)

    # The new key signs; the deployed one is retired, disabled and due for deletion
    records = key_records(table)
    ((active,), (retired,)) = records[ACTIVE], records[RETIRED]
    assert retired.key_ref == key_arn and retired.deletion_scheduled and active.key_ref != key_arn
    assert boto3.client("kms").describe_key(KeyId=key_arn)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert [action.split(" ", 1)[0] for action in actions] == ["adopted", "created", "promoted", "retired",
                                                              "scheduled"]
    # Every call is one the role allows, and every grant is used: TagResource has no call of its own
    # (it authorises CreateKey's Tags); TransactWriteItems is authorised item by item (Puts: PutItem);
    # ListKeys only serves a retried creation (test_key_lifecycle.py, test_fault_injection.py)
    allowed = template_allowed_actions("KeyRotationFunction")
    assert set(calls) - {"TransactWriteItems"} == allowed - {"TagResource", "ListKeys"}


def test_given_replica_regions_when_a_key_is_created_then_it_is_multi_region_and_replicated(
        deployed, table, monkeypatch):
    deployed()
    monkeypatch.setenv("TOKENMINT_KEY_REPLICA_REGIONS", "us-west-2")  # KeyReplicaRegions: us-west-2
    runtime.install(None)
    calls = record_calls()

    def key_id_for_moto(params, **_):  # KMS takes a key ARN or id; moto's ReplicateKey only an id
        params["KeyId"] = params["KeyId"].rsplit("/", 1)[-1]
    aws_client("kms", "us-east-1").meta.events.register("before-parameter-build.kms.ReplicateKey", key_id_for_moto)

    invoke("key_rotation_forced.json")

    # The next key is a multi-Region key with a replica in us-west-2: same key id, so the same kid
    (upcoming,) = key_records(table)[NEXT]
    metadata = boto3.client("kms").describe_key(KeyId=upcoming.key_ref)["KeyMetadata"]
    assert metadata["MultiRegion"] is True and metadata["KeyId"].startswith("mrk-")
    replica = boto3.client("kms", region_name="us-west-2").describe_key(KeyId=metadata["KeyId"])["KeyMetadata"]
    assert replica["Arn"] == upcoming.key_ref.replace("us-east-1", "us-west-2")
    # with the calls the multi-region role allows
    assert calls["ReplicateKey"] == 1
    assert set(calls) - {"TransactWriteItems"} <= template_allowed_actions(
        "KeyRotationFunction", KeyReplicaRegions="us-west-2")


def test_given_authorizer_caching_when_a_dpop_bound_token_comes_then_denied_but_bearer_tokens_pass(
        deployed, monkeypatch):
    # API Gateway would reuse a cached Allow for the same Authorization header without a new proof.
    deployed()
    bound, plain = dpop_tools_token("tools:echo"), tools_token("tools:echo")
    monkeypatch.setenv("TOKENMINT_AUTHORIZER_CACHE_SECONDS", "60")
    runtime.install(None)
    name = "authorizer_garbage_token.json"
    assert invoke(name, with_dpop(name, bound)) == {"isAuthorized": False}
    assert invoke(name, bearer(name, plain))["isAuthorized"] is True
    monkeypatch.setenv("TOKENMINT_AUTHORIZER_CACHE_SECONDS", "0")
    runtime.install(None)
    assert invoke(name, with_dpop(name, bound))["isAuthorized"] is True
