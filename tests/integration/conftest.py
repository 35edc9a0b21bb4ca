"""moto-backed AWS for the integration suite: the table comes from template.yaml itself."""

import boto3
import pytest
from moto import mock_aws

from support.template import kms_key_spec, table_create_kwargs
from tokenmint.adapters.aws import clients
from tokenmint.adapters.aws.dynamodb import DynamoDbStore
from tokenmint.adapters.embedded.sqlite import SqliteDatabase, SqliteStore

TABLE = "tokenmint-test"


@pytest.fixture
def aws(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        clients.reset()
        yield
    clients.reset()


@pytest.fixture
def table(aws):
    boto3.client("dynamodb").create_table(**table_create_kwargs(TABLE))
    return TABLE


@pytest.fixture
def kms_key(aws):
    """A factory: the ARN of a new KMS signing key of the stack's key spec for ``alg``."""
    def create(alg: str = "RS256") -> str:
        return boto3.client("kms").create_key(KeySpec=kms_key_spec(alg), KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    return create


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path):
    """Each backend's store, for the behaviour both must share."""
    if request.param == "sqlite":
        return SqliteStore(SqliteDatabase(tmp_path / "tokenmint.db"))
    table = request.getfixturevalue("table")
    return DynamoDbStore(clients.aws_client("dynamodb"), table)
