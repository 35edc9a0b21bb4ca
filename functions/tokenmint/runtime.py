"""The process's backend: opened once, lazily, from settings (Lambda) or installed by the embedded server."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .config import Settings
from .ports import ClientStore, Clock, KeyStore, RegistrationStore, ResourceStore, RevocationStore


@dataclass
class Backend:
    settings: Settings
    clients: ClientStore
    resources: ResourceStore
    keys: KeyStore
    registrations: RegistrationStore
    revocations: RevocationStore
    clock: Clock = time.time


def open_backend(settings: Settings) -> Backend:
    if settings.backend == "aws":
        from .adapters.aws.clients import aws_client
        from .adapters.aws.dynamodb import DynamoDbStore
        from .adapters.aws.kms import KmsKeyStore
        from .adapters.cache import CachedResourceStore

        store = DynamoDbStore(aws_client("dynamodb", settings.region), settings.table_name)
        keys = KmsKeyStore(aws_client("kms", settings.region), settings.signing_key_id, settings.signing_alg)
        resources = CachedResourceStore(store, time.monotonic, ttl=settings.resource_cache_seconds)
        return Backend(settings, store, resources, keys, store, store)

    from .adapters.embedded.local_keys import LocalKeyStore
    from .adapters.embedded.sqlite import SqliteDatabase, SqliteStore

    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = SqliteDatabase(settings.data_dir / "tokenmint.db")
    store = SqliteStore(db)
    return Backend(settings, store, store, LocalKeyStore(db, settings.data_dir / "keys"), store, store)


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
