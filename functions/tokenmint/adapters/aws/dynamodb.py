"""Clients and resources in one DynamoDB table (single-table design; keys in template.yaml).

| item                  | pk                 | sk       | gsi1pk / gsi1sk       | ttl            |
|-----------------------|--------------------|----------|-----------------------|----------------|
| client                | CLIENT#<client_id> | CLIENT   | CLIENT / <client_id>  |                |
| deleted-client mark   | CLIENT#<client_id> | DELETED  |                       | mark expiry    |
| resource              | RESOURCE           | <key>    |                       |                |
| initial access token  | IAT#<hash>         | IAT      | IAT / <token_id>      | expiry + 1 day |
| revoked access token  | JTI#<jti>          | REVOKED  |                       | token's exp    |
| signing key record    | KEY                | <key_id> |                       |                |
| used client assertion | ASSERTION#<c>#<jti>| USED     |                       | assertion exp  |
| throttle counter      | THROTTLE#<key>     | COUNT    |                       | window end     |

Clients live in their own partitions (each token reads one); the few resources share one
partition so that a single Query loads the whole registry into the token function's cache.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...keys import KeyRecord
from ...oauth.models import MAX_AUTH_BLOCKS, Client, InitialAccessToken, Resource
from ...ports import ConflictError, InitialAccessTokenSpentError, UnavailableError
from .attribute_values import deserialize, serialize
from .clients import is_unavailable

CLIENT_SK = "CLIENT"
DELETED_SK = "DELETED"
RESOURCE_PK = "RESOURCE"
IAT_SK = "IAT"
REVOKED_SK = "REVOKED"
KEY_PK = "KEY"
GSI1 = "gsi1"
NULL = {":null": {"S": "NULL"}}  # for attribute_type(x, :null)


def to_item(record: dict[str, Any], **keys: str) -> dict[str, Any]:
    return {name: serialize(value) for name, value in {**record, **keys}.items()}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: deserialize(value) for name, value in item.items()}


class TransactionConditionFailed(ConflictError):
    """A transaction's condition failed; ``index`` says which of its items."""

    def __init__(self, index: int) -> None:
        super().__init__(f"transaction condition {index} failed")
        self.index = index


class DynamoDbStore:
    """ClientStore and ResourceStore on one table. Reads that decide access are strongly consistent."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._ddb = dynamodb
        self._table = table_name

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            if operation == "transact_write_items":
                return self._ddb.transact_write_items(**kwargs)
            return getattr(self._ddb, operation)(TableName=self._table, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                raise ConflictError(f"{operation}: condition failed") from exc
            if code == "TransactionCanceledException":
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", ())]
                if "ConditionalCheckFailed" in reasons:
                    raise TransactionConditionFailed(reasons.index("ConditionalCheckFailed")) from exc
                raise UnavailableError(f"DynamoDB transaction cancelled: {reasons}") from exc
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

    def _key(self, pk: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": pk}, "sk": {"S": sk}}

    def delete_client(self, client_id: str, *, version: int, not_before: int, mark_expires_at: int) -> None:
        mark = to_item({"client_id": client_id, "not_before": not_before}, pk=f"CLIENT#{client_id}", sk=DELETED_SK)
        mark["ttl"] = {"N": str(mark_expires_at)}
        try:
            self._call("transact_write_items", TransactItems=[
                {"Delete": {"TableName": self._table, "Key": self._key(f"CLIENT#{client_id}", CLIENT_SK),
                            "ConditionExpression": "#version = :version",
                            "ExpressionAttributeNames": {"#version": "version"},
                            "ExpressionAttributeValues": {":version": {"N": str(version)}}}},
                {"Put": {"TableName": self._table, "Item": mark}},
            ])
        except TransactionConditionFailed as exc:
            raise ConflictError(f"client {client_id} was changed concurrently or does not exist") from exc

    def deleted_client_not_before(self, client_id: str) -> int | None:
        item = self._call("get_item", Key=self._key(f"CLIENT#{client_id}", DELETED_SK), ConsistentRead=True).get("Item")
        # TTL deletes lazily (within days): an expired mark is treated as gone.
        if not item or int(item["ttl"]["N"]) <= time.time():
            return None
        return int(item["not_before"]["N"])

    def record_client_use(self, client_id: str, now: int, resolution: int) -> None:
        try:
            self._call("update_item", Key=self._key(f"CLIENT#{client_id}", CLIENT_SK),
                       UpdateExpression="SET last_used_at = :now",
                       ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(last_used_at) OR "
                                           "attribute_type(last_used_at, :null) OR last_used_at <= :threshold)",
                       ExpressionAttributeValues={":now": {"N": str(now)}, ":threshold": {"N": str(now - resolution)},
                                                  **NULL})
        except ConflictError:
            pass  # another request recorded a use just now

    # -- revocation -----------------------------------------------------------------------------
    def revoke_token(self, jti: str, client_id: str, expires_at: int) -> None:
        item = to_item({"client_id": client_id}, pk=f"JTI#{jti}", sk=REVOKED_SK)
        item["ttl"] = {"N": str(expires_at)}
        self._call("put_item", Item=item)

    def is_token_revoked(self, jti: str) -> bool:
        item = self._call("get_item", Key=self._key(f"JTI#{jti}", REVOKED_SK), ConsistentRead=True).get("Item")
        return bool(item) and int(item["ttl"]["N"]) > time.time()  # TTL deletes lazily

    # -- initial access tokens ------------------------------------------------------------------
    def _token_item(self, token: InitialAccessToken) -> dict[str, Any]:
        item = to_item(token.to_record(), pk=f"IAT#{token.hash}", sk=IAT_SK, gsi1pk=IAT_SK, gsi1sk=token.token_id)
        if token.expires_at is not None:
            item["ttl"] = {"N": str(token.expires_at + 86_400)}
        return item

    def create_initial_access_token(self, token: InitialAccessToken) -> None:
        self._call("put_item", Item=self._token_item(token), ConditionExpression="attribute_not_exists(pk)")

    def put_initial_access_token(self, token: InitialAccessToken) -> None:
        previous = [t for t in self.list_initial_access_tokens()
                    if t.token_id == token.token_id and t.hash != token.hash]
        items: list[dict[str, Any]] = [{"Put": {"TableName": self._table, "Item": self._token_item(token)}}]
        items += [{"Delete": {"TableName": self._table, "Key": self._key(f"IAT#{t.hash}", IAT_SK)}} for t in previous]
        self._call("transact_write_items", TransactItems=items)

    def get_initial_access_token(self, token_hash: str) -> InitialAccessToken | None:
        item = self._call("get_item", Key=self._key(f"IAT#{token_hash}", IAT_SK), ConsistentRead=True).get("Item")
        return InitialAccessToken.from_record(from_item(item)) if item else None

    def list_initial_access_tokens(self) -> list[InitialAccessToken]:
        items = self._query(IndexName=GSI1, KeyConditionExpression="gsi1pk = :pk",
                            ExpressionAttributeValues={":pk": {"S": IAT_SK}})
        return [InitialAccessToken.from_record(item) for item in items]

    def register_client(self, client: Client, token_hash: str, now: int) -> None:
        spend = {"Update": {
            "TableName": self._table, "Key": self._key(f"IAT#{token_hash}", IAT_SK),
            "UpdateExpression": "SET #uses = #uses + :one",
            "ConditionExpression": "attribute_exists(pk) AND (attribute_type(max_uses, :null) OR #uses < max_uses) "
                                   "AND (attribute_type(expires_at, :null) OR expires_at > :now)",
            "ExpressionAttributeNames": {"#uses": "uses"},
            "ExpressionAttributeValues": {":one": {"N": "1"}, ":now": {"N": str(now)}, **NULL}}}
        create = {"Put": {"TableName": self._table, "Item": self._client_item(client),
                          "ConditionExpression": "attribute_not_exists(pk)"}}
        try:
            self._call("transact_write_items", TransactItems=[spend, create])
        except TransactionConditionFailed as exc:
            if exc.index == 0:
                raise InitialAccessTokenSpentError("the initial access token is no longer usable") from exc
            raise

    # -- single-use jtis: client assertions and DPoP proofs (ports.ReplayCache) ------------------
    def use_once(self, key: str, expires_at: int, *, partition: str | None = None) -> bool:
        """One conditional put: of two concurrent uses of a jti exactly one succeeds."""
        item = {"pk": {"S": f"ASSERTION#{key}"}, "sk": {"S": "USED"}, "ttl": {"N": str(expires_at)}}
        try:
            self._call("put_item", Item=item,
                       ConditionExpression="attribute_not_exists(pk) OR #ttl <= :now",
                       ExpressionAttributeNames={"#ttl": "ttl"},
                       ExpressionAttributeValues={":now": {"N": str(int(time.time()))}})
        except ConflictError:
            return False
        return True

    # -- failed-authentication throttling (ports.ThrottleStore) ----------------------------------
    def add_to_counter(self, key: str, *, now: int, expires_at: int) -> int:
        """One atomic ADD; the key carries the window, so an item TTL has not removed yet never
        counts for the next window."""
        answer = self._call("update_item", Key=self._key(f"THROTTLE#{key}", "COUNT"),
                            UpdateExpression="ADD #count :one SET #ttl = :ttl",
                            ExpressionAttributeNames={"#count": "count", "#ttl": "ttl"},
                            ExpressionAttributeValues={":one": {"N": "1"}, ":ttl": {"N": str(expires_at)}},
                            ReturnValues="UPDATED_NEW")
        return int(answer["Attributes"]["count"]["N"])

    def read_counter(self, key: str, *, now: int) -> int:
        item = self._call("get_item", Key=self._key(f"THROTTLE#{key}", "COUNT"), ConsistentRead=True,
                          ProjectionExpression="#count, #ttl",
                          ExpressionAttributeNames={"#count": "count", "#ttl": "ttl"}).get("Item")
        if not item or int(item["ttl"]["N"]) <= now:  # TTL deletes late: an expired counter counts 0
            return 0
        return int(item["count"]["N"])

    def block_source(self, client_id: str, source: str, until: int, *, now: int) -> None:
        key = self._key(f"CLIENT#{client_id}", CLIENT_SK)
        names = {"#blocks": "auth_blocks", "#source": source}
        try:  # one entry of the map: concurrent blocks of other sources are kept
            self._call("update_item", Key=key, UpdateExpression="SET #blocks.#source = :until",
                       ConditionExpression="attribute_exists(pk) AND attribute_type(#blocks, :map) AND "
                                           "(size(#blocks) < :max OR attribute_exists(#blocks.#source))",
                       ExpressionAttributeNames=names,
                       ExpressionAttributeValues={":until": {"N": str(until)}, ":map": {"S": "M"},
                                                  ":max": {"N": str(MAX_AUTH_BLOCKS)}})
            return
        except ConflictError:
            pass  # no such client, a record without the map, or a full map
        try:  # a new map holding this block (a full one's other blocks come back with their next failure)
            self._call("update_item", Key=key, UpdateExpression="SET #blocks = :blocks",
                       ConditionExpression="attribute_exists(pk)", ExpressionAttributeNames={"#blocks": "auth_blocks"},
                       ExpressionAttributeValues={":blocks": {"M": {source: {"N": str(until)}}}})
        except ConflictError:
            pass  # no such client: nothing to block

    # -- signing key records (keys.KeyRegistry) -------------------------------------------------
    def list_keys(self) -> list[KeyRecord]:
        items = self._query(KeyConditionExpression="pk = :pk", ConsistentRead=True,
                            ExpressionAttributeValues={":pk": {"S": KEY_PK}})
        return sorted((KeyRecord.from_record(item) for item in items), key=lambda r: (r.created_at, r.key_id))

    def create_key_record(self, record: KeyRecord) -> None:
        self._call("put_item", Item=to_item(record.to_record(), pk=KEY_PK, sk=record.key_id),
                   ConditionExpression="attribute_not_exists(pk)")

    def update_key_records(self, records: list[KeyRecord]) -> None:
        items = [{"Put": {"TableName": self._table, "Item": to_item(r.to_record(), pk=KEY_PK, sk=r.key_id),
                          "ConditionExpression": "#version = :expected",
                          "ExpressionAttributeNames": {"#version": "version"},
                          "ExpressionAttributeValues": {":expected": {"N": str(r.version - 1)}}}} for r in records]
        try:
            self._call("transact_write_items", TransactItems=items)
        except TransactionConditionFailed as exc:
            raise ConflictError("a key record changed concurrently") from exc

    # -- resources ------------------------------------------------------------------------------
    def get_resource(self, key: str) -> Resource | None:
        item = self._call("get_item", Key={"pk": {"S": RESOURCE_PK}, "sk": {"S": key}}).get("Item")
        return Resource.from_record(from_item(item)) if item else None

    def list_resources(self) -> list[Resource]:
        items = self._query(KeyConditionExpression="pk = :pk", ConsistentRead=True,
                            ExpressionAttributeValues={":pk": {"S": RESOURCE_PK}})
        return [Resource.from_record(item) for item in items]

    def create_resource(self, resource: Resource) -> None:
        self._call("put_item", Item=to_item(resource.to_record(), pk=RESOURCE_PK, sk=resource.key),
                   ConditionExpression="attribute_not_exists(pk)")
