"""The ports between protocol code and storage/crypto: what oauth/ needs, what adapters/ provide."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .oauth.models import Client, InitialAccessToken, Resource

Clock = Callable[[], float]
"""Seconds since the epoch (``time.time`` in production, a fixed value in tests)."""


class ConflictError(Exception):
    """A write lost a race (the stored version moved on, or the record already exists)."""


class InitialAccessTokenSpentError(ConflictError):
    """The initial access token expired, was used up or removed before the registration committed."""


class UnavailableError(Exception):
    """A store or the signer is throttled or unreachable: the request may succeed if retried."""


class ClientStore(Protocol):
    def get_client(self, client_id: str) -> Client | None: ...

    def create_client(self, client: Client) -> None:
        """Store a new client; :class:`ConflictError` if the id is taken."""

    def update_client(self, client: Client) -> None:
        """Replace the stored client whose version is ``client.version - 1``, else ConflictError."""

    def list_clients(self) -> list[Client]: ...

    def delete_client(self, client_id: str, *, version: int, not_before: int, mark_expires_at: int) -> None:
        """Remove the client at ``version`` and, in the same write, record that its tokens issued
        before ``not_before`` are invalid (kept until ``mark_expires_at``); else ConflictError."""

    def deleted_client_not_before(self, client_id: str) -> int | None:
        """The deletion mark of a removed client: tokens it got before this time are invalid."""

    def record_client_use(self, client_id: str, now: int, resolution: int) -> None:
        """Set ``last_used_at`` to ``now`` unless it is already within ``resolution`` seconds.

        Never changes the version: usage must not make concurrent updates fail.
        """


class RegistrationStore(Protocol):
    """Initial access tokens (RFC 7591 §3) and the atomic registration they authorise."""

    def create_initial_access_token(self, token: InitialAccessToken) -> None: ...

    def put_initial_access_token(self, token: InitialAccessToken) -> None:
        """Create or replace the token with this ``token_id`` (the one ``tokenmint serve`` prints)."""

    def get_initial_access_token(self, token_hash: str) -> InitialAccessToken | None: ...

    def list_initial_access_tokens(self) -> list[InitialAccessToken]: ...

    def register_client(self, client: Client, token_hash: str, now: int) -> None:
        """Create ``client`` and spend one use of the initial access token, both or neither.

        :class:`InitialAccessTokenSpentError` if the token is no longer usable at ``now``.
        """


class RevocationStore(Protocol):
    """Revoked access tokens (RFC 7009), by ``jti``, kept until the token would have expired."""

    def revoke_token(self, jti: str, client_id: str, expires_at: int) -> None: ...

    def is_token_revoked(self, jti: str) -> bool: ...


class ReplayCache(Protocol):
    """Single-use values (a client assertion's or a DPoP proof's ``jti``), remembered until they expire."""

    def use_once(self, key: str, expires_at: int, *, partition: str | None = None) -> bool:
        """Record ``key`` until ``expires_at``; False if it was already recorded (atomically).
        ``partition``: the client the record is charged to, so a cache of bounded size can bound each
        client (verifier.MemoryReplayCache); the stores' tables are not bounded and ignore it."""


class ThrottleStore(Protocol):
    """Counters of failed authentications and registrations, and the blocks they lead to
    (oauth/throttle.py): in the store, so that every process counts the same."""

    def add_to_counter(self, key: str, *, now: int, expires_at: int) -> int:
        """Add one to the counter ``key`` (0 when new) and return its new value, atomically (of n
        concurrent calls, each sees a different value). The counter may vanish after ``expires_at``."""

    def read_counter(self, key: str, *, now: int) -> int:
        """The counter ``key``'s value (0 when it does not exist or has expired), without changing it."""

    def block_source(self, client_id: str, source: str, until: int, *, now: int) -> None:
        """Record on the client's own record that ``source`` may not authenticate as it before
        ``until`` (``Client.auth_blocks``); nothing when there is no such client. Never changes the
        version (a block must not make a concurrent update fail). At most ``MAX_AUTH_BLOCKS``
        sources are kept: to make room, a full map may be emptied first (a dropped block comes back
        with its source's next failure, which is past the limit)."""


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
