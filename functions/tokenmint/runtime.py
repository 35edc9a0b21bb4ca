"""The process's backend: opened once, lazily, from settings (Lambda) or installed by the embedded server."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .config import Settings
from .ports import (
    ClientStore,
    Clock,
    KeyStore,
    RegistrationStore,
    ReplayCache,
    ResourceStore,
    RevocationStore,
    ThrottleStore,
)

if TYPE_CHECKING:

    class ClientTable(ClientStore, ThrottleStore, ReplayCache, Protocol):
        """The client records and what is kept beside them: the spent ``jti``s of client assertions
        and DPoP proofs, and the throttle's counters and blocks (written onto the client record)."""


@dataclass
class Backend:
    settings: Settings
    clients: ClientTable
    resources: ResourceStore
    keys: KeyStore
    registrations: RegistrationStore
    revocations: RevocationStore
    clock: Clock = time.time
    key_ring: Any = None  # keys.KeyRing: the lifecycle operations (rotation, rollover)
    assertions: Any = None  # oauth.client_assertion.ClientAssertionVerifier (private_key_jwt)
    throttle: Any = None  # oauth.throttle.AuthenticationThrottle (failed authentications, registrations)


def open_backend(settings: Settings) -> Backend:
    backend = _open(settings)
    from .oauth.client_assertion import ClientAssertionVerifier, HttpsJwksFetcher
    from .outbound import FetchPolicy, fetch_json

    # A client's jwks_uri is the client's choice: public https hosts only, except under --dev.
    policy = (FetchPolicy.development if settings.allow_private_jwks_uri else FetchPolicy.public)(
        settings.fetch_deadline)
    backend.assertions = ClientAssertionVerifier(
        replay=backend.clients, jwks_fetcher=HttpsJwksFetcher(lambda url: fetch_json(url, policy)),
        max_lifetime=settings.max_assertion_lifetime)
    from .oauth.throttle import AuthenticationThrottle, ThrottlePolicy

    # The counters live beside the clients: a block is written onto the client record it guards.
    backend.throttle = AuthenticationThrottle(backend.clients, ThrottlePolicy(
        window=settings.auth_failure_window, failures_per_client_source=settings.auth_failures_per_client_source,
        failures_per_source=settings.auth_failures_per_source,
        registrations_per_source=settings.registrations_per_source))
    return backend


def _open(settings: Settings) -> Backend:
    from .keys import KeyRing, ManagedKeyStore

    interval = settings.key_rotation_days * 86_400
    if settings.backend == "aws":
        from .adapters.aws.clients import aws_client
        from .adapters.aws.dynamodb import DynamoDbStore
        from .adapters.aws.kms import KmsKeyMaterial, KmsSigningKey
        from .adapters.cache import CachedResourceStore

        assert settings.table_name and settings.signing_key_id  # Settings requires both with the aws backend
        kms = aws_client("kms", settings.region)
        table = DynamoDbStore(aws_client("dynamodb", settings.region), settings.table_name)
        kms_keys = KmsKeyMaterial(kms, stack=settings.stack_name, alias_prefix=f"alias/{settings.stack_name}-key-",
                                  multi_region=bool(settings.key_replica_regions),
                                  replica_regions=settings.key_replica_regions)
        bootstrap = KmsSigningKey(kms, settings.signing_key_id, settings.signing_alg)
        keys = ManagedKeyStore(table, kms_keys, bootstrap=bootstrap)
        ring = KeyRing(table, kms_keys, settings.signing_alg, rotation_interval=interval,
                       bootstrap_key_ref=settings.signing_key_id)
        resources = CachedResourceStore(table, time.monotonic, ttl=settings.resource_cache_seconds)
        return Backend(settings, table, resources, keys, table, table, key_ring=ring)

    from .adapters.embedded.local_keys import LocalKeyMaterial, SqliteKeyRegistry
    from .adapters.embedded.sqlite import SqliteDatabase, SqliteStore

    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = SqliteDatabase(settings.data_dir / "tokenmint.db")
    store = SqliteStore(db)
    registry, material = SqliteKeyRegistry(db), LocalKeyMaterial(settings.data_dir / "keys")
    keys = ManagedKeyStore(registry, material, cache_seconds=0)  # CLI key changes apply at once
    ring = KeyRing(registry, material, settings.signing_alg, rotation_interval=interval)
    return Backend(settings, store, store, keys, store, store, key_ring=ring)


_backend: Backend | None = None


def backend() -> Backend:
    global _backend
    if _backend is None:
        _backend = open_backend(Settings.from_env())
    return _backend


def install(value: Backend | None) -> None:
    """Use ``value`` for this process (the embedded server, tests); None: open from env again."""
    global _backend
    _backend = value
