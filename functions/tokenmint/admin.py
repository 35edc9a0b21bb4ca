"""Administrative operations on clients and resources, shared by the CLI (and later registration)."""

from __future__ import annotations

from .oauth.credentials import generate_client_id, generate_client_secret, hash_secret
from .oauth.errors import OAuthError
from .oauth.models import (
    MAX_TOKEN_LIFETIME,
    MIN_TOKEN_LIFETIME,
    SECRET_AUTH_METHODS,
    SUPPORTED_AUTH_METHODS,
    Client,
    ClientSecret,
    Resource,
)
from .oauth.resource import normalize_resource_identifier
from .oauth.scope import validate_scope_tokens
from .ports import ClientStore, ConflictError, ResourceStore


class AdminError(ValueError):
    """A request an administrator can correct; the message says how."""


def _scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    try:
        return validate_scope_tokens(scopes)
    except OAuthError as exc:
        raise AdminError(exc.description) from None


def create_resource(store: ResourceStore, identifier: str, scopes: list[str], *, now: int,
                    token_lifetime: int | None = None, name: str | None = None) -> Resource:
    try:
        key = normalize_resource_identifier(identifier)
    except OAuthError as exc:
        raise AdminError(f"{identifier!r}: {exc.description}") from None
    if not scopes:
        raise AdminError("a resource defines at least one scope")
    lifetime = token_lifetime if token_lifetime is not None else Resource.token_lifetime
    if not MIN_TOKEN_LIFETIME <= lifetime <= MAX_TOKEN_LIFETIME:
        raise AdminError(f"token lifetime must be {MIN_TOKEN_LIFETIME}..{MAX_TOKEN_LIFETIME} seconds")
    resource = Resource(identifier=identifier, scopes=_scopes(scopes), token_lifetime=lifetime,
                        created_at=now, name=name, key=key)
    try:
        store.create_resource(resource)
    except ConflictError:
        raise AdminError(f"a resource equal to {identifier!r} already exists") from None
    return resource


def create_client(store: ClientStore, *, scopes: list[str], now: int, auth_method: str = SECRET_AUTH_METHODS[0],
                  name: str | None = None, introspect: bool = False) -> tuple[Client, str | None]:
    """A new client and, for secret methods, its secret: returned once, stored only as a hash."""
    if auth_method not in SUPPORTED_AUTH_METHODS:
        raise AdminError(f"auth method must be one of {', '.join(SUPPORTED_AUTH_METHODS)}")
    secret = generate_client_secret() if auth_method in SECRET_AUTH_METHODS else None
    client = Client(
        client_id=generate_client_id(), auth_method=auth_method, scopes=_scopes(scopes), created_at=now,
        secrets=(ClientSecret(hash_secret(secret), created_at=now),) if secret else (),
        name=name, introspect=introspect)
    store.create_client(client)
    return client, secret


def get_client(store: ClientStore, client_id: str) -> Client:
    client = store.get_client(client_id)
    if client is None:
        raise AdminError(f"no client {client_id!r}")
    return client


def set_client_disabled(store: ClientStore, client_id: str, disabled: bool) -> Client:
    """Disabling takes effect on the next token request: every request reads the client record."""
    client = get_client(store, client_id)
    if client.disabled == disabled:
        return client
    updated = client.with_changes(disabled=disabled)
    try:
        store.update_client(updated)
    except ConflictError:
        raise AdminError(f"client {client_id!r} changed concurrently; try again") from None
    return updated
