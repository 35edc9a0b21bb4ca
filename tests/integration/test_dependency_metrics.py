"""The token function under moto: its KMS and DynamoDB calls become DependencyLatency (and, when
throttled, DependencyThrottled) metrics, measured by botocore hooks on the real clients."""

import json
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from tokenmint import observability, runtime
from tokenmint.adapters.aws.clients import aws_client
from tokenmint.adapters.aws.dynamodb import DynamoDbStore
from tokenmint.adapters.aws.kms import STACK_TAG
from tokenmint.handlers import token
from tokenmint.oauth.credentials import hash_secret
from tokenmint.oauth.models import Client, ClientSecret, Resource
from tokenmint.server import lambda_context

EVENT = json.loads((Path(__file__).resolve().parents[2] / "events" / "token_basic.json").read_text())
SECRET = "tmsec_example0000000000000000000000000000000000"  # the event's
STACK = "tokenmint-test"


@pytest.fixture
def deployed(table, kms_key, monkeypatch):
    key_arn = kms_key("RS256")
    boto3.client("kms").tag_resource(KeyId=key_arn, Tags=[{"TagKey": STACK_TAG, "TagValue": STACK}])
    store = DynamoDbStore(boto3.client("dynamodb"), table)
    store.create_resource(Resource("https://api.example.com/mcp", ("tools:read",), token_lifetime=300))
    store.create_client(Client("tmc_example", "client_secret_basic", ("tools:read",), created_at=1_700_000_000,
                               secrets=(ClientSecret(hash_secret(SECRET), 1_700_000_000),)))
    for name, value in {"TOKENMINT_BACKEND": "aws", "TOKENMINT_TABLE": table, "TOKENMINT_SIGNING_KEY_ID": key_arn,
                        "TOKENMINT_SIGNING_ALG": "RS256", "TOKENMINT_STACK": STACK}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TOKENMINT_ISSUER", raising=False)
    monkeypatch.setattr(observability._emf, "service", STACK)
    observability.publish(True)
    runtime.install(None)
    yield
    runtime.install(None)


def dependency_metrics(stdout: str) -> dict[tuple[str, str, str], list[float]]:
    """(metric, Dependency, Operation) → values, from the EMF documents printed."""
    found: dict[tuple[str, str, str], list[float]] = {}
    for line in stdout.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        for definition in directive["Metrics"]:
            name = definition["Name"]
            if name.startswith("Dependency"):
                assert definition["Unit"] == ("Milliseconds" if name == "DependencyLatency" else "Count")
                assert document["service"] == STACK
                values = document[name] if isinstance(document[name], list) else [document[name]]
                found.setdefault((name, document["Dependency"], document["Operation"]), []).extend(values)
    return found


def test_given_a_warm_function_when_a_token_is_issued_then_the_kms_sign_and_dynamodb_getitem_latencies(
        deployed, capsys):
    assert token.lambda_handler(EVENT, lambda_context("TokenFunction"))["statusCode"] == 200
    cold = dependency_metrics(capsys.readouterr().out)
    # the first token also loads the registry and keys, and stamps the client's use: each call measured
    assert set(cold) == {("DependencyLatency", "KMS", "Sign"), ("DependencyLatency", "KMS", "GetPublicKey"),
                         ("DependencyLatency", "DynamoDB", "GetItem"), ("DependencyLatency", "DynamoDB", "Query"),
                         ("DependencyLatency", "DynamoDB", "UpdateItem")}
    assert len(cold[("DependencyLatency", "DynamoDB", "Query")]) == 2

    response = token.lambda_handler(EVENT, lambda_context("TokenFunction"))

    assert response["statusCode"] == 200
    warm = dependency_metrics(capsys.readouterr().out)
    assert set(warm) == {("DependencyLatency", "KMS", "Sign"), ("DependencyLatency", "DynamoDB", "GetItem")}
    for (_, dependency, operation), (milliseconds,) in warm.items():
        assert 0 < milliseconds < 5_000, (dependency, operation, milliseconds)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_):
        yield self.body


def test_given_kms_throttles_one_attempt_then_the_retry_succeeds_and_the_throttle_is_counted(deployed, capsys):
    assert token.lambda_handler(EVENT, lambda_context("TokenFunction"))["statusCode"] == 200  # warm
    capsys.readouterr()
    throttled = []

    def throttle_once(request, **_):  # KMS's own answer to a request over its rate quota
        if not throttled:
            throttled.append(request.url)
            body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
            return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body))
        return None
    aws_client("kms", "us-east-1").meta.events.register_first("before-send.kms.Sign", throttle_once)

    response = token.lambda_handler(EVENT, lambda_context("TokenFunction"))

    assert response["statusCode"] == 200 and throttled  # botocore retried, and KMS then signed
    found = dependency_metrics(capsys.readouterr().out)
    assert found[("DependencyThrottled", "KMS", "Sign")] == [1.0]
    assert len(found[("DependencyLatency", "KMS", "Sign")]) == 1  # one call, two attempts
    assert ("DependencyThrottled", "DynamoDB", "GetItem") not in found
