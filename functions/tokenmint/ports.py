"""The ports between protocol code and storage/crypto: what oauth/ needs, what adapters/ provide."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .oauth.models import Client, Resource

Clock = Callable[[], float]
"""Seconds since the epoch (``time.time`` in production, a fixed value in tests)."""


class ConflictError(Exception):
    """A write lost a race (the stored version moved on, or the record already exists)."""


class UnavailableError(Exception):
    """A store or the signer is throttled or unreachable: the request may succeed if retried."""


class ClientStore(Protocol):
    def get_client(self, client_id: str) -> Client | None: ...

    def create_client(self, client: Client) -> None:
        """Store a new client; :class:`ConflictError` if the id is taken."""

    def update_client(self, client: Client) -> None:
        """Replace the stored client whose version is ``client.version - 1``, else ConflictError."""

    def list_clients(self) -> list[Client]: ...


class ResourceStore(Protocol):
    def get_resource(self, key: str) -> Resource | None:
        """The resource whose normalised identifier is ``key``."""

    def list_resources(self) -> list[Resource]: ...

    def create_resource(self, resource: Resource) -> None:
        """Store a new resource; :class:`ConflictError` if one with the same key exists."""


class SigningKey(Protocol):
    """A private key that signs JWS (RFC 7515) input; the key material may never leave its store."""

    @property
    def kid(self) -> str: ...

    @property
    def alg(self) -> str: ...

    def sign(self, signing_input: bytes) -> bytes:
        """The JWS signature of ``signing_input`` (already in JOSE form, e.g. r||s for ES256)."""


class KeyStore(Protocol):
    def signing_key(self) -> SigningKey: ...

    def public_jwks(self) -> list[dict[str, str]]:
        """Every public key a verifier may currently meet, as JWKs with ``kid``."""
