"""The domain records every backend stores: clients (RFC 6749 §2) and protected resources (RFC 8707).

Records are plain frozen dataclasses with a JSON-shaped ``to_record``/``from_record`` pair, so the
SQLite and DynamoDB adapters store exactly the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .resource import normalize_resource_identifier

CLIENT_SECRET_BASIC = "client_secret_basic"
CLIENT_SECRET_POST = "client_secret_post"
SECRET_AUTH_METHODS = (CLIENT_SECRET_BASIC, CLIENT_SECRET_POST)
SUPPORTED_AUTH_METHODS = SECRET_AUTH_METHODS

DEFAULT_TOKEN_LIFETIME = 600
MIN_TOKEN_LIFETIME = 60
MAX_TOKEN_LIFETIME = 3600


@dataclass(frozen=True)
class ClientSecret:
    """A stored secret: only its hash, and when it stops working (None: until rotated away)."""

    hash: str
    created_at: int
    expires_at: int | None = None

    def is_valid_at(self, now: int) -> bool:
        return self.expires_at is None or now < self.expires_at

    def to_record(self) -> dict[str, Any]:
        return {"hash": self.hash, "created_at": self.created_at, "expires_at": self.expires_at}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ClientSecret:
        expires_at = record.get("expires_at")
        return cls(hash=str(record["hash"]), created_at=int(record["created_at"]),
                   expires_at=None if expires_at is None else int(expires_at))


@dataclass(frozen=True)
class Client:
    client_id: str
    auth_method: str
    scopes: tuple[str, ...]
    created_at: int
    secrets: tuple[ClientSecret, ...] = ()
    name: str | None = None
    disabled: bool = False
    introspect: bool = False
    version: int = 1

    def to_record(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "auth_method": self.auth_method,
            "scopes": list(self.scopes),
            "created_at": self.created_at,
            "secrets": [s.to_record() for s in self.secrets],
            "name": self.name,
            "disabled": self.disabled,
            "introspect": self.introspect,
            "version": self.version,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Client:
        return cls(
            client_id=str(record["client_id"]),
            auth_method=str(record["auth_method"]),
            scopes=tuple(str(s) for s in record.get("scopes") or ()),
            created_at=int(record["created_at"]),
            secrets=tuple(ClientSecret.from_record(s) for s in record.get("secrets") or ()),
            name=record.get("name"),
            disabled=bool(record.get("disabled", False)),
            introspect=bool(record.get("introspect", False)),
            version=int(record.get("version", 1)),
        )

    def with_changes(self, **changes: Any) -> Client:
        """A copy with ``changes`` and the next version (stores use it for optimistic locking)."""
        return replace(self, version=self.version + 1, **changes)


@dataclass(frozen=True)
class Resource:
    """A protected resource (an API or MCP server): the audience of the tokens issued for it."""

    identifier: str
    scopes: tuple[str, ...]
    token_lifetime: int = DEFAULT_TOKEN_LIFETIME
    created_at: int = 0
    name: str | None = None
    key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", normalize_resource_identifier(self.identifier))

    def to_record(self) -> dict[str, Any]:
        return {
            "identifier": self.identifier,
            "key": self.key,
            "scopes": list(self.scopes),
            "token_lifetime": self.token_lifetime,
            "created_at": self.created_at,
            "name": self.name,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Resource:
        return cls(
            identifier=str(record["identifier"]),
            scopes=tuple(str(s) for s in record.get("scopes") or ()),
            token_lifetime=int(record.get("token_lifetime", DEFAULT_TOKEN_LIFETIME)),
            created_at=int(record.get("created_at", 0)),
            name=record.get("name"),
            key=str(record.get("key") or ""),
        )
