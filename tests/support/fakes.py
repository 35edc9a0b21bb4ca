"""In-memory ports for unit tests: the protocol code runs without SQLite, DynamoDB or KMS."""

from __future__ import annotations

from tokenmint.adapters.embedded.local_keys import LocalSigningKey, generate_private_key
from tokenmint.oauth.credentials import hash_secret
from tokenmint.oauth.jwk import public_jwk
from tokenmint.oauth.models import Client, ClientSecret, Resource
from tokenmint.ports import ConflictError

NOW = 1_800_000_000


class InMemoryStore:
    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        self.resources: dict[str, Resource] = {}
        self.reads = 0

    def get_client(self, client_id: str) -> Client | None:
        self.reads += 1
        return self.clients.get(client_id)

    def create_client(self, client: Client) -> None:
        if client.client_id in self.clients:
            raise ConflictError(client.client_id)
        self.clients[client.client_id] = client

    def update_client(self, client: Client) -> None:
        current = self.clients.get(client.client_id)
        if current is None or current.version != client.version - 1:
            raise ConflictError(client.client_id)
        self.clients[client.client_id] = client

    def list_clients(self) -> list[Client]:
        return list(self.clients.values())

    def get_resource(self, key: str) -> Resource | None:
        self.reads += 1
        return self.resources.get(key)

    def list_resources(self) -> list[Resource]:
        self.reads += 1
        return list(self.resources.values())

    def create_resource(self, resource: Resource) -> None:
        if resource.key in self.resources:
            raise ConflictError(resource.key)
        self.resources[resource.key] = resource

    # -- test helpers --
    def add_client(self, client_id: str, secret: str, scopes: str, *, method: str = "client_secret_basic",
                   **kwargs: object) -> Client:
        client = Client(client_id=client_id, auth_method=method, scopes=tuple(scopes.split()), created_at=NOW,
                        secrets=(ClientSecret(hash_secret(secret), created_at=NOW),), **kwargs)
        self.create_client(client)
        return client

    def add_resource(self, identifier: str, scopes: str, lifetime: int = 600) -> Resource:
        resource = Resource(identifier=identifier, scopes=tuple(scopes.split()), token_lifetime=lifetime)
        self.create_resource(resource)
        return resource


class InMemoryKeyStore:
    def __init__(self, alg: str = "RS256") -> None:
        private_key = generate_private_key(alg)
        self.jwk = public_jwk(private_key.public_key(), alg)
        self.public_key = private_key.public_key()
        self.key = LocalSigningKey(self.jwk["kid"], alg, private_key)
        self.signatures = 0

    def signing_key(self) -> LocalSigningKey:
        self.signatures += 1
        return self.key

    def public_jwks(self) -> list[dict[str, str]]:
        return [self.jwk]
