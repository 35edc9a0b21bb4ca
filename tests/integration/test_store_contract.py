"""One behavioural suite for every ClientStore/ResourceStore: SQLite (embedded) and DynamoDB (moto)."""

import threading

import pytest

from tokenmint.adapters.aws.clients import aws_client
from tokenmint.adapters.aws.dynamodb import DynamoDbStore
from tokenmint.adapters.cache import CachedResourceStore
from tokenmint.adapters.embedded.sqlite import SqliteDatabase, SqliteStore
from tokenmint.oauth.models import Client, ClientSecret, Resource
from tokenmint.ports import ConflictError


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return SqliteStore(SqliteDatabase(tmp_path / "tokenmint.db"))
    table = request.getfixturevalue("table")
    return DynamoDbStore(aws_client("dynamodb"), table)


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


def test_given_concurrent_updates_when_racing_then_exactly_one_wins(store):
    store.create_client(a_client())
    base = store.get_client("tmc_1")
    outcomes = []

    def update(i: int) -> None:
        try:
            store.update_client(base.with_changes(name=f"writer {i}"))
            outcomes.append("won")
        except ConflictError:
            outcomes.append("lost")

    threads = [threading.Thread(target=update, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
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
