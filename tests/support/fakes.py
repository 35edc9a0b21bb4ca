"""In-memory ports for unit tests: the protocol code runs without SQLite, DynamoDB or KMS."""

from __future__ import annotations

from dataclasses import replace

from tokenmint.adapters.embedded.local_keys import LocalSigningKey, generate_private_key
from tokenmint.oauth.credentials import hash_secret
from tokenmint.oauth.jwk import public_jwk
from tokenmint.oauth.models import MAX_AUTH_BLOCKS, Client, ClientSecret, InitialAccessToken, Resource
from tokenmint.ports import ConflictError, InitialAccessTokenSpentError

NOW = 1_800_000_000


class InMemoryStore:
    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        self.resources: dict[str, Resource] = {}
        self.reads = 0
        self.uses: list[tuple[str, int]] = []
        self.tokens: dict[str, InitialAccessToken] = {}
        self.deleted: dict[str, int] = {}
        self.revoked: dict[str, int] = {}
        self.counters: dict[str, tuple[int, int]] = {}  # throttle counter key → (count, expires_at)
        self.writes = 0  # throttle writes (counters and blocks)
        self.used: dict[str, int] = {}  # replay keys: assertion and DPoP proof jtis

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

    def delete_client(self, client_id: str, *, version: int, not_before: int, mark_expires_at: int) -> None:
        client = self.clients.get(client_id)
        if client is None or client.version != version:
            raise ConflictError(client_id)
        del self.clients[client_id]
        self.deleted[client_id] = not_before

    def deleted_client_not_before(self, client_id: str) -> int | None:
        return self.deleted.get(client_id)

    def revoke_token(self, jti: str, client_id: str, expires_at: int) -> None:
        self.revoked[jti] = expires_at

    def is_token_revoked(self, jti: str) -> bool:
        return jti in self.revoked

    def use_once(self, key: str, expires_at: int, *, partition: str | None = None) -> bool:
        if key in self.used:
            return False
        self.used[key] = expires_at
        return True

    def create_initial_access_token(self, token: InitialAccessToken) -> None:
        self.tokens[token.hash] = token

    put_initial_access_token = create_initial_access_token

    def get_initial_access_token(self, token_hash: str) -> InitialAccessToken | None:
        return self.tokens.get(token_hash)

    def list_initial_access_tokens(self) -> list[InitialAccessToken]:
        return list(self.tokens.values())

    def register_client(self, client: Client, token_hash: str, now: int) -> None:
        token = self.tokens.get(token_hash)
        if token is None or not token.usable_at(now):
            raise InitialAccessTokenSpentError(token_hash)
        self.create_client(client)
        self.tokens[token_hash] = replace(token, uses=token.uses + 1)

    def record_client_use(self, client_id: str, now: int, resolution: int) -> None:
        self.uses.append((client_id, now))
        client = self.clients.get(client_id)
        if client is not None:
            self.clients[client_id] = replace(client, last_used_at=now)

    def add_to_counter(self, key: str, *, now: int, expires_at: int) -> int:
        self.writes += 1
        count, expiry = self.counters.get(key, (0, expires_at))
        if expiry <= now:  # expired: starts again
            count = 0
        self.counters[key] = (count + 1, expires_at)
        return count + 1

    def read_counter(self, key: str, *, now: int) -> int:
        self.reads += 1
        count, expiry = self.counters.get(key, (0, now))
        return count if expiry > now else 0

    def block_source(self, client_id: str, source: str, until: int, *, now: int) -> None:
        self.writes += 1
        client = self.clients.get(client_id)
        if client is not None:
            blocks = {s: u for s, u in client.auth_blocks.items() if u > now and s != source}
            blocks = {} if len(blocks) >= MAX_AUTH_BLOCKS else blocks
            self.clients[client_id] = replace(client, auth_blocks={**blocks, source: until})

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
