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
PRIVATE_KEY_JWT = "private_key_jwt"
SECRET_AUTH_METHODS = (CLIENT_SECRET_BASIC, CLIENT_SECRET_POST)
TLS_CLIENT_AUTH = "tls_client_auth"  # RFC 8705 §2.1: a CA-issued certificate with the registered subject
SELF_SIGNED_TLS_CLIENT_AUTH = "self_signed_tls_client_auth"  # §2.2: a certificate the client registered
MTLS_AUTH_METHODS = (TLS_CLIENT_AUTH, SELF_SIGNED_TLS_CLIENT_AUTH)
SUPPORTED_AUTH_METHODS = (*SECRET_AUTH_METHODS, PRIVATE_KEY_JWT, *MTLS_AUTH_METHODS)

# A client's record keeps at most this many blocked sources (oauth/throttle.py).
MAX_AUTH_BLOCKS = 32

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


def _optional_tuple(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class RegistrationPolicy:
    """What a registration may obtain (RFC 7591 §3: the initial access token's authority).

    None in a field means "not limited". The policy is copied onto each client it registers, so
    later updates (RFC 7592) stay within it.
    """

    scopes: tuple[str, ...] | None = None
    resources: tuple[str, ...] | None = None  # normalised resource identifiers
    auth_methods: tuple[str, ...] | None = None
    max_secret_lifetime: int | None = None  # seconds
    # Clients it registers may call the introspection endpoint (for these resources; None: all).
    introspect: bool = False
    introspect_resources: tuple[str, ...] | None = None

    def to_record(self) -> dict[str, Any]:
        return {"scopes": _list_or_none(self.scopes), "resources": _list_or_none(self.resources),
                "auth_methods": _list_or_none(self.auth_methods), "max_secret_lifetime": self.max_secret_lifetime,
                "introspect": self.introspect, "introspect_resources": _list_or_none(self.introspect_resources)}

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> RegistrationPolicy:
        record = record or {}
        return cls(scopes=_optional_tuple(record.get("scopes")), resources=_optional_tuple(record.get("resources")),
                   auth_methods=_optional_tuple(record.get("auth_methods")),
                   max_secret_lifetime=_optional_int(record.get("max_secret_lifetime")),
                   introspect=bool(record.get("introspect", False)),
                   introspect_resources=_optional_tuple(record.get("introspect_resources")))


def _list_or_none(value: tuple[str, ...] | None) -> list[str] | None:
    return None if value is None else list(value)


@dataclass(frozen=True)
class InitialAccessToken:
    """An admin-minted bearer token that authorises registrations (RFC 7591 §3), stored hashed."""

    token_id: str  # public handle for listing and audit; the token itself is never stored
    hash: str
    created_at: int
    policy: RegistrationPolicy = RegistrationPolicy()
    expires_at: int | None = None
    max_uses: int | None = None
    uses: int = 0
    description: str | None = None

    def usable_at(self, now: int) -> bool:
        return (self.expires_at is None or now < self.expires_at) and (
            self.max_uses is None or self.uses < self.max_uses)

    def to_record(self) -> dict[str, Any]:
        return {"token_id": self.token_id, "hash": self.hash, "created_at": self.created_at,
                "policy": self.policy.to_record(), "expires_at": self.expires_at, "max_uses": self.max_uses,
                "uses": self.uses, "description": self.description}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> InitialAccessToken:
        return cls(token_id=str(record["token_id"]), hash=str(record["hash"]), created_at=int(record["created_at"]),
                   policy=RegistrationPolicy.from_record(record.get("policy")),
                   expires_at=_optional_int(record.get("expires_at")), max_uses=_optional_int(record.get("max_uses")),
                   uses=int(record.get("uses", 0)), description=record.get("description"))


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
    # Normalised identifiers of the resources this client may get tokens for; None: any resource
    # that defines one of its scopes.
    resources: tuple[str, ...] | None = None
    # RFC 7591 metadata kept as registered (contacts, software_id, software_version, jwks, jwks_uri).
    metadata: dict[str, Any] = field(default_factory=dict)
    # RFC 7592: the hash of the current registration access token; None for admin-created clients.
    registration_access_token_hash: str | None = None
    policy: RegistrationPolicy | None = None
    last_used_at: int | None = None
    # Tokens of this client issued before this time are inactive (revoke-tokens, disable).
    tokens_not_before: int | None = None
    # Resources whose tokens this client may introspect; None: all (when ``introspect``).
    introspect_resources: tuple[str, ...] | None = None
    # Sources (oauth/throttle.source_key) that failed too often to authenticate as this client →
    # until when they are refused. Written only by failures, read with the client (no extra read).
    auth_blocks: dict[str, int] = field(default_factory=dict)

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
            "resources": _list_or_none(self.resources),
            "metadata": self.metadata,
            "registration_access_token_hash": self.registration_access_token_hash,
            "policy": None if self.policy is None else self.policy.to_record(),
            "last_used_at": self.last_used_at,
            "tokens_not_before": self.tokens_not_before,
            "introspect_resources": _list_or_none(self.introspect_resources),
            "auth_blocks": dict(self.auth_blocks),
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
            resources=_optional_tuple(record.get("resources")),
            metadata=_plain(record.get("metadata") or {}),
            registration_access_token_hash=record.get("registration_access_token_hash"),
            policy=None if record.get("policy") is None else RegistrationPolicy.from_record(record["policy"]),
            last_used_at=_optional_int(record.get("last_used_at")),
            tokens_not_before=_optional_int(record.get("tokens_not_before")),
            introspect_resources=_optional_tuple(record.get("introspect_resources")),
            auth_blocks={str(source): int(until) for source, until in (record.get("auth_blocks") or {}).items()},
        )

    def with_changes(self, **changes: Any) -> Client:
        """A copy with ``changes`` and the next version (stores use it for optimistic locking)."""
        return replace(self, version=self.version + 1, **changes)

    def secret_expires_at(self) -> int:
        """RFC 7591 ``client_secret_expires_at`` of the newest secret: 0 when it does not expire."""
        newest = max(self.secrets, key=lambda s: s.created_at, default=None)
        return 0 if newest is None or newest.expires_at is None else newest.expires_at

    def may_use(self, resource_key: str) -> bool:
        return self.resources is None or resource_key in self.resources

    def may_introspect(self, resource_key: str) -> bool:
        return self.introspect and (self.introspect_resources is None or resource_key in self.introspect_resources)


def _plain(value: Any) -> Any:
    """JSON-shaped data from a store (DynamoDB returns Decimal for numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if type(value).__name__ == "Decimal":
        return int(value) if value == int(value) else float(value)
    return value


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
