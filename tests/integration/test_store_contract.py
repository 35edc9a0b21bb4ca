"""One behavioural suite for every ClientStore/ResourceStore: SQLite (embedded) and DynamoDB (moto)."""

import threading

import pytest

from tokenmint.adapters.cache import CachedResourceStore
from tokenmint.adapters.embedded.sqlite import SqliteDatabase, SqliteStore
from tokenmint.adapters.aws.clients import aws_client
from tokenmint.oauth.models import (
    MAX_AUTH_BLOCKS,
    Client,
    ClientSecret,
    InitialAccessToken,
    RegistrationPolicy,
    Resource,
)
from tokenmint.ports import ConflictError, InitialAccessTokenSpentError


@pytest.fixture
def racing_store(tmp_path):
    """Stores for thread races. Only SQLite: its locking is real here, while moto's in-memory
    DynamoDB is not thread-safe, and real DynamoDB serialises conditional writes to an item as a
    service guarantee. DynamoDB's conditions themselves are covered by the sequential conflict
    tests (stale version, spent token), which run on both backends."""
    return SqliteStore(SqliteDatabase(tmp_path / "tokenmint.db"))


def race(work, n: int) -> None:
    """Run ``work(0..n-1)`` on n threads at once and wait (bounded) for all of them."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)


def a_client(client_id: str = "tmc_1", **fields) -> Client:
    defaults = {"name": "billing job", "secrets": (ClientSecret("sha256:abc", 1_700_000_000, None),
                                                   ClientSecret("sha256:def", 1_700_000_000, 1_800_000_000))}
    return Client(client_id=client_id, auth_method="client_secret_basic", scopes=("read", "write"),
                  created_at=1_700_000_000, **{**defaults, **fields})


def test_given_a_created_client_when_read_then_every_field_round_trips(store):
    client = a_client(introspect=True)
    store.create_client(client)
    assert store.get_client("tmc_1") == client
    assert store.get_client("tmc_unknown") is None


def test_given_an_existing_id_when_created_again_then_conflict_and_original_kept(store):
    store.create_client(a_client())
    with pytest.raises(ConflictError):
        store.create_client(a_client(name="impostor"))
    assert store.get_client("tmc_1").name == "billing job"


def test_given_an_update_from_a_stale_version_when_written_then_conflict_and_no_lost_write(store):
    store.create_client(a_client())
    first = store.get_client("tmc_1").with_changes(disabled=True)
    second = store.get_client("tmc_1").with_changes(name="renamed")
    store.update_client(first)
    with pytest.raises(ConflictError):
        store.update_client(second)
    stored = store.get_client("tmc_1")
    assert stored.disabled and stored.name == "billing job" and stored.version == 2


def test_given_a_missing_client_when_updated_then_conflict(store):
    with pytest.raises(ConflictError):
        store.update_client(a_client().with_changes(name="x"))


def test_given_concurrent_updates_when_racing_then_exactly_one_wins(racing_store):
    store = racing_store
    store.create_client(a_client())
    base = store.get_client("tmc_1")
    outcomes = []

    def update(i: int) -> None:
        try:
            store.update_client(base.with_changes(name=f"writer {i}"))
            outcomes.append("won")
        except ConflictError:
            outcomes.append("lost")

    race(update, 6)
    assert sorted(outcomes) == ["lost"] * 5 + ["won"]


def test_given_clients_when_listed_then_all_of_them(store):
    for i in range(3):
        store.create_client(a_client(f"tmc_{i}"))
    assert sorted(c.client_id for c in store.list_clients()) == ["tmc_0", "tmc_1", "tmc_2"]


def test_given_resources_when_created_then_found_by_normal_form_and_listed(store):
    resource = Resource("https://API.example.com:443/mcp", ("tools:read",), token_lifetime=120, name="mcp")
    store.create_resource(resource)
    store.create_resource(Resource("urn:example:billing", ("read",)))
    assert store.get_resource("https://api.example.com/mcp") == resource
    assert store.get_resource("https://api.example.com/mcp").identifier == "https://API.example.com:443/mcp"
    assert {r.key for r in store.list_resources()} == {"https://api.example.com/mcp", "urn:example:billing"}
    with pytest.raises(ConflictError):
        store.create_resource(Resource("https://api.example.com/mcp", ("other",)))


def test_given_a_cached_registry_when_a_resource_is_added_then_visible_after_the_reload_interval(store):
    now = [0.0]
    cached = CachedResourceStore(store, lambda: now[0], ttl=30, min_reload_interval=1)
    store.create_resource(Resource("https://a.example.com/", ("read",)))
    assert cached.get_resource("https://a.example.com/") is not None
    store.create_resource(Resource("https://b.example.com/", ("read",)))
    assert cached.get_resource("https://b.example.com/") is None  # just reloaded: misses are rate-limited
    now[0] = 1.5
    assert cached.get_resource("https://b.example.com/") is not None


# -- client lifecycle (RFC 7591/7592) ---------------------------------------------------------------
def a_token(token_hash: str = "sha256:iat", **fields) -> InitialAccessToken:
    return InitialAccessToken(token_id="iat_1", hash=token_hash, created_at=1_700_000_000,
                              policy=RegistrationPolicy(scopes=("read",), max_secret_lifetime=3600), **fields)


def test_given_an_initial_access_token_when_stored_then_found_by_hash_with_its_policy(store):
    store.create_initial_access_token(a_token(max_uses=3, expires_at=1_900_000_000, description="ci"))
    token = store.get_initial_access_token("sha256:iat")
    assert token == a_token(max_uses=3, expires_at=1_900_000_000, description="ci")
    assert store.get_initial_access_token("sha256:other") is None
    assert [t.token_id for t in store.list_initial_access_tokens()] == ["iat_1"]


def test_given_a_token_with_uses_left_when_registering_then_client_created_and_one_use_spent(store):
    store.create_initial_access_token(a_token(max_uses=2))
    store.register_client(a_client("tmc_a"), "sha256:iat", now=1_700_000_100)
    assert store.get_client("tmc_a") is not None
    assert store.get_initial_access_token("sha256:iat").uses == 1


@pytest.mark.parametrize("fields, token_hash", [({"max_uses": 1, "uses": 1}, "sha256:iat"),
                                                ({"expires_at": 1_700_000_050}, "sha256:iat"),
                                                ({}, "sha256:unknown")])
def test_given_a_spent_expired_or_unknown_token_when_registering_then_nothing_is_written(store, fields, token_hash):
    store.create_initial_access_token(a_token(**fields))
    with pytest.raises(InitialAccessTokenSpentError):
        store.register_client(a_client("tmc_a"), token_hash, now=1_700_000_100)
    assert store.get_client("tmc_a") is None
    assert store.get_initial_access_token("sha256:iat").uses == fields.get("uses", 0)


def test_given_a_client_id_collision_when_registering_then_conflict_and_no_use_spent(store):
    store.create_initial_access_token(a_token(max_uses=5))
    store.create_client(a_client("tmc_a"))
    with pytest.raises(ConflictError):
        store.register_client(a_client("tmc_a", name="other"), "sha256:iat", now=1_700_000_100)
    assert store.get_initial_access_token("sha256:iat").uses == 0


def test_given_parallel_registrations_with_a_two_use_token_then_exactly_two_succeed(racing_store):
    store = racing_store
    store.create_initial_access_token(a_token(max_uses=2))
    outcomes = []

    def register(i: int) -> None:
        try:
            store.register_client(a_client(f"tmc_{i}"), "sha256:iat", now=1_700_000_100)
            outcomes.append("created")
        except InitialAccessTokenSpentError:
            outcomes.append("spent")

    race(register, 6)
    assert sorted(outcomes) == ["created"] * 2 + ["spent"] * 4
    assert len(store.list_clients()) == 2 and store.get_initial_access_token("sha256:iat").uses == 2


def test_given_the_serve_token_when_put_again_then_the_old_value_stops_working(store):
    store.put_initial_access_token(a_token("sha256:first"))
    store.put_initial_access_token(a_token("sha256:second"))
    assert store.get_initial_access_token("sha256:first") is None
    assert store.get_initial_access_token("sha256:second") is not None


def test_given_a_client_when_deleted_then_gone_and_its_tokens_marked_invalid(store):
    store.create_client(a_client())
    store.delete_client("tmc_1", version=1, not_before=1_700_000_500, mark_expires_at=4_000_000_000)
    assert store.get_client("tmc_1") is None
    assert store.deleted_client_not_before("tmc_1") == 1_700_000_500
    assert store.deleted_client_not_before("tmc_other") is None


def test_given_a_stale_version_when_deleting_then_conflict_and_nothing_changes(store):
    store.create_client(a_client())
    store.update_client(store.get_client("tmc_1").with_changes(name="moved on"))
    with pytest.raises(ConflictError):
        store.delete_client("tmc_1", version=1, not_before=1, mark_expires_at=4_000_000_000)
    assert store.get_client("tmc_1").name == "moved on"
    assert store.deleted_client_not_before("tmc_1") is None


def test_given_an_expired_deletion_mark_when_read_then_none(store):
    store.create_client(a_client())
    store.delete_client("tmc_1", version=1, not_before=1, mark_expires_at=1_000)
    assert store.deleted_client_not_before("tmc_1") is None


def test_given_uses_when_recorded_then_at_most_once_per_resolution_and_the_version_is_untouched(store):
    store.create_client(a_client())
    store.record_client_use("tmc_1", now=1_700_000_000, resolution=300)
    store.record_client_use("tmc_1", now=1_700_000_100, resolution=300)  # within resolution: ignored
    client = store.get_client("tmc_1")
    assert client.last_used_at == 1_700_000_000 and client.version == 1
    store.record_client_use("tmc_1", now=1_700_000_400, resolution=300)
    assert store.get_client("tmc_1").last_used_at == 1_700_000_400
    store.record_client_use("tmc_missing", now=1_700_000_400, resolution=300)  # no error, no item
    assert store.get_client("tmc_missing") is None


def test_given_registration_metadata_when_stored_then_it_round_trips(store):
    client = a_client(metadata={"contacts": ["ops@example.com"], "jwks": {"keys": [{"kty": "EC", "crv": "P-256",
                                                                                      "x": "a", "y": "b"}]},
                                "software_id": "agent"},
                      resources=("https://api.example.com/",), registration_access_token_hash="sha256:rat",
                      policy=RegistrationPolicy(scopes=("read",), max_secret_lifetime=60))
    store.create_client(client)
    assert store.get_client("tmc_1") == client


def test_given_a_revoked_token_when_checked_then_revoked_until_it_would_have_expired(store):
    import time

    future = int(time.time()) + 600
    store.revoke_token("jti-1", "tmc_1", expires_at=future)
    store.revoke_token("jti-old", "tmc_1", expires_at=int(time.time()) - 1)
    assert store.is_token_revoked("jti-1")
    assert not store.is_token_revoked("jti-old")  # expired: the entry is as good as gone
    assert not store.is_token_revoked("jti-unknown")


def test_given_a_client_assertion_jti_when_used_twice_then_only_the_first_use_counts(store):
    import time

    later = int(time.time()) + 300
    assert store.use_once("tmc_1#jti-1", later) is True
    assert store.use_once("tmc_1#jti-1", later) is False
    assert store.use_once("tmc_2#jti-1", later) is True  # per client
    assert store.use_once("tmc_1#old", int(time.time()) - 1) is True
    assert store.use_once("tmc_1#old", later) is True  # an expired record no longer blocks


# -- failed-authentication throttling (ports.ThrottleStore) -------------------------------------------
def test_given_a_counter_when_added_to_then_it_counts_from_one_per_key(store):
    counts = [store.add_to_counter("client#60#198.51.100.7#tmc_1", now=100, expires_at=120) for _ in range(3)]
    assert counts == [1, 2, 3]
    assert store.add_to_counter("client#60#198.51.100.8#tmc_1", now=100, expires_at=120) == 1  # another source
    assert store.add_to_counter("client#120#198.51.100.7#tmc_1", now=120, expires_at=180) == 1  # the next window


def test_given_a_counter_when_read_then_it_is_its_count_unchanged_and_0_once_expired_or_absent(store):
    for _ in range(2):
        store.add_to_counter("source#60#198.51.100.7", now=100, expires_at=120)
    assert [store.read_counter("source#60#198.51.100.7", now=100) for _ in range(2)] == [2, 2]
    assert store.read_counter("source#60#198.51.100.8", now=100) == 0
    assert store.read_counter("source#60#198.51.100.7", now=120) == 0  # its window is over


def test_given_concurrent_failures_when_counted_then_each_sees_its_own_count(racing_store):
    seen = []
    race(lambda i: seen.append(racing_store.add_to_counter("source#0#198.51.100.7", now=10, expires_at=60)), 8)
    assert sorted(seen) == list(range(1, 9))  # none lost, none counted twice


def test_given_a_block_when_recorded_then_the_client_read_carries_it_and_the_version_is_untouched(store):
    store.create_client(a_client())
    store.block_source("tmc_1", "198.51.100.7", 1_700_000_060, now=1_700_000_000)
    store.block_source("tmc_1", "2001:db8:1:2::/64", 1_700_000_060, now=1_700_000_000)
    client = store.get_client("tmc_1")
    assert client.auth_blocks == {"198.51.100.7": 1_700_000_060, "2001:db8:1:2::/64": 1_700_000_060}
    assert client.version == 1
    # an admin update from a read made before the block still succeeds (the version did not move)
    store.update_client(client.with_changes(name="renamed"))
    assert store.get_client("tmc_1").name == "renamed"


def test_given_an_unknown_client_when_a_block_is_recorded_then_nothing_is_created(store):
    store.block_source("tmc_nobody", "198.51.100.7", 1_700_000_060, now=1_700_000_000)
    assert store.get_client("tmc_nobody") is None
    assert [c.client_id for c in store.list_clients()] == []


def test_given_more_attacking_sources_than_a_record_keeps_then_the_blocks_stay_bounded(store):
    store.create_client(a_client())
    for n in range(MAX_AUTH_BLOCKS + 5):
        store.block_source("tmc_1", f"192.0.2.{n}", 1_700_000_060, now=1_700_000_000)
    blocks = store.get_client("tmc_1").auth_blocks
    assert 1 <= len(blocks) <= MAX_AUTH_BLOCKS
    assert blocks[f"192.0.2.{MAX_AUTH_BLOCKS + 4}"] == 1_700_000_060  # the latest block is always kept


def test_given_concurrent_blocks_of_different_sources_then_none_is_lost(racing_store):
    racing_store.create_client(a_client())
    race(lambda i: racing_store.block_source("tmc_1", f"198.51.100.{i}", 1_700_000_060, now=1_700_000_000), 6)
    assert set(racing_store.get_client("tmc_1").auth_blocks) == {f"198.51.100.{i}" for i in range(6)}


def test_given_a_dynamodb_client_stored_before_blocks_existed_when_blocked_then_the_map_is_created(table):
    import boto3

    from tokenmint.adapters.aws.dynamodb import DynamoDbStore

    store = DynamoDbStore(aws_client("dynamodb"), table)
    store.create_client(a_client())
    boto3.client("dynamodb").update_item(TableName=table, Key={"pk": {"S": "CLIENT#tmc_1"}, "sk": {"S": "CLIENT"}},
                                         UpdateExpression="REMOVE auth_blocks")
    assert store.get_client("tmc_1").auth_blocks == {}
    store.block_source("tmc_1", "198.51.100.7", 1_700_000_060, now=1_700_000_000)
    store.block_source("tmc_1", "198.51.100.8", 1_700_000_060, now=1_700_000_000)
    assert store.get_client("tmc_1").auth_blocks == {"198.51.100.7": 1_700_000_060, "198.51.100.8": 1_700_000_060}
