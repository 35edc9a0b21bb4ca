"""Clients and resources in one DynamoDB table (single-table design; keys in template.yaml).

| item     | pk                 | sk       | gsi1pk / gsi1sk       |
|----------|--------------------|----------|-----------------------|
| client   | CLIENT#<client_id> | CLIENT   | CLIENT / <client_id>  |
| resource | RESOURCE           | <key>    |                       |

Clients live in their own partitions (each token reads one); the few resources share one
partition so that a single Query loads the whole registry into the token function's cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...oauth.models import Client, Resource
from ...ports import ConflictError, UnavailableError
from .clients import is_unavailable

CLIENT_SK = "CLIENT"
RESOURCE_PK = "RESOURCE"
GSI1 = "gsi1"


def _serializer() -> Any:
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

    return TypeSerializer(), TypeDeserializer()


_SERIALIZE, _DESERIALIZE = _serializer()


def to_item(record: dict[str, Any], **keys: str) -> dict[str, Any]:
    return {name: _SERIALIZE.serialize(value) for name, value in {**record, **keys}.items()}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _DESERIALIZE.deserialize(value) for name, value in item.items()}


class DynamoDbStore:
    """ClientStore and ResourceStore on one table. Reads that decide access are strongly consistent."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._ddb = dynamodb
        self._table = table_name

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._ddb, operation)(TableName=self._table, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise ConflictError(f"{operation}: condition failed") from exc
            if is_unavailable(exc):
                raise UnavailableError(f"DynamoDB {operation} is unavailable") from exc
            raise
        except BotoCoreError as exc:
            if is_unavailable(exc):
                raise UnavailableError(f"DynamoDB {operation} is unavailable") from exc
            raise

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            page = self._call("query", **kwargs)
            for item in page.get("Items", ()):
                yield from_item(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- clients --------------------------------------------------------------------------------
    def get_client(self, client_id: str) -> Client | None:
        key = {"pk": {"S": f"CLIENT#{client_id}"}, "sk": {"S": CLIENT_SK}}
        item = self._call("get_item", Key=key, ConsistentRead=True).get("Item")
        return Client.from_record(from_item(item)) if item else None

    def _client_item(self, client: Client) -> dict[str, Any]:
        return to_item(client.to_record(), pk=f"CLIENT#{client.client_id}", sk=CLIENT_SK,
                       gsi1pk=CLIENT_SK, gsi1sk=client.client_id)

    def create_client(self, client: Client) -> None:
        self._call("put_item", Item=self._client_item(client), ConditionExpression="attribute_not_exists(pk)")

    def update_client(self, client: Client) -> None:
        self._call("put_item", Item=self._client_item(client),
                   ConditionExpression="attribute_exists(pk) AND #version = :expected",
                   ExpressionAttributeNames={"#version": "version"},
                   ExpressionAttributeValues={":expected": {"N": str(client.version - 1)}})

    def list_clients(self) -> list[Client]:
        items = self._query(IndexName=GSI1, KeyConditionExpression="gsi1pk = :pk",
                            ExpressionAttributeValues={":pk": {"S": CLIENT_SK}})
        return [Client.from_record(item) for item in items]

    # -- resources ------------------------------------------------------------------------------
    def get_resource(self, key: str) -> Resource | None:
        item = self._call("get_item", Key={"pk": {"S": RESOURCE_PK}, "sk": {"S": key}}).get("Item")
        return Resource.from_record(from_item(item)) if item else None

    def list_resources(self) -> list[Resource]:
        items = self._query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": RESOURCE_PK}})
        return [Resource.from_record(item) for item in items]

    def create_resource(self, resource: Resource) -> None:
        self._call("put_item", Item=to_item(resource.to_record(), pk=RESOURCE_PK, sk=resource.key),
                   ConditionExpression="attribute_not_exists(pk)")
