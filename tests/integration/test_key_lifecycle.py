"""Signing-key lifecycle on each backend (SQLite + key files; DynamoDB + KMS under moto), on a
simulated clock: rotation while tokens are issued and verified, failures injected at every step,
emergency rollover."""

import base64
import itertools

import boto3
import pytest

from support.fakes import InMemoryStore
from tokenmint.adapters.aws.clients import aws_client
from tokenmint.adapters.aws.dynamodb import DynamoDbStore
from tokenmint.adapters.aws.kms import KmsKeyMaterial
from tokenmint.adapters.embedded.local_keys import LocalKeyMaterial, SqliteKeyRegistry
from tokenmint.adapters.embedded.sqlite import SqliteDatabase
from tokenmint.keys import ACTIVE, JWKS_MAX_AGE, NEXT, PUBLISHED, RETIRED, RETIRING, KeyRing, ManagedKeyStore
from tokenmint.oauth.client_credentials import ClientCredentialsGrant
from tokenmint.oauth.form import parse_form
from tokenmint.oauth.revocation import TokenStatusEndpoints
from tokenmint.verifier import RemoteJwks, TokenRejected, TokenVerifier

ISSUER = "https://as.example.com"
API = "https://api.example.com/mcp"
SECRET = "tmsec_" + "k" * 43
HOUR = 3600


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["embedded", "aws"])
def backend(request, tmp_path):
    """(registry, material) of a backend; the clients and resources live in memory."""
    if request.param == "embedded":
        db = SqliteDatabase(tmp_path / "db")
        return SqliteKeyRegistry(db), LocalKeyMaterial(tmp_path / "keys")
    table = request.getfixturevalue("table")
    return (DynamoDbStore(aws_client("dynamodb", "us-east-1"), table),
            KmsKeyMaterial(aws_client("kms", "us-east-1"), stack="test", alias_prefix="alias/test-key-"))


class World:
    def __init__(self, registry, material) -> None:
        self.clock = Clock()
        self.ring = KeyRing(registry, material, "ES256", clock=self.clock, rotation_interval=6 * HOUR)
        self.keys = ManagedKeyStore(registry, material, clock=self.clock)  # as a function caches keys
        self.store = InMemoryStore()
        self.store.add_resource(API, "read", lifetime=600)
        self.store.add_client("agent", SECRET, "read")
        self.store.add_client("rs", SECRET, "", introspect=True)

    def issue(self) -> str:
        grant = ClientCredentialsGrant(self.store, self.store, self.keys, self.clock)
        basic = "Basic " + base64.b64encode(f"agent:{SECRET}".encode()).decode()
        form = parse_form(b"grant_type=client_credentials", "application/x-www-form-urlencoded")
        return grant.create_token_response(form, basic, ISSUER).body()["access_token"]

    def published(self) -> dict:
        """What GET /jwks.json answers (read fresh by the discovery function)."""
        return {"keys": ManagedKeyStore(self.ring.registry, self.ring.material, cache_seconds=0).public_jwks()}

    def caching_verifier(self) -> TokenVerifier:
        """A verifier that caches the JWKS for its max-age and never refetches early, even for an
        unknown kid: if it still verifies everything, pre-publication alone kept it working."""
        world = self

        class CachingJwks(RemoteJwks):
            def _download(self) -> dict:
                return world.published()

        jwks = CachingJwks("https://as.example.com/jwks.json", ttl=JWKS_MAX_AGE,
                           min_refresh_interval=float("inf"), clock=self.clock)
        return TokenVerifier(issuer=ISSUER, audience=API, keys=jwks, leeway=0, clock=self.clock)

    def states(self) -> dict[str, list]:
        grouped: dict[str, list] = {}
        for record in self.ring.registry.list_keys():
            grouped.setdefault(record.state, []).append(record)
        return grouped


def test_a_full_rotation_cycle_under_continuous_traffic_has_no_failed_verification(backend):
    world = World(*backend)
    world.ring.rotate()  # the first active key
    verifier = world.caching_verifier()
    live: list[tuple[float, str]] = []  # tokens not yet expired, re-verified on every tick
    verifications = failures = 0
    events: list[str] = []
    for tick in range(int(20 * HOUR / 30)):  # 20 simulated hours, a request every 30 s
        world.clock.now += 30
        if tick % 120 == 0:  # the schedule runs hourly
            events += world.ring.rotate()
        live.append((world.clock.now + 600, world.issue()))
        live = [(exp, token) for exp, token in live if exp > world.clock.now]
        for _, token in live[-5:] + live[:1]:  # the newest tokens and the oldest still valid
            verifications += 1
            try:
                verifier.verify(token)
            except TokenRejected:
                failures += 1
    assert failures == 0 and verifications > 10_000
    assert sum("promoted" in e for e in events) >= 2 and sum("retired" in e for e in events) >= 2
    assert sum("scheduled deletion" in e for e in events) >= 2
    published = {jwk["kid"] for jwk in world.published()["keys"]}
    assert {r.kid for r in world.states()[RETIRED]}.isdisjoint(published)
    assert len(world.states()[ACTIVE]) == 1


def test_a_next_key_is_published_for_longer_than_the_jwks_cache_before_it_signs(backend):
    world = World(*backend)
    world.ring.rotate()
    signing = world.keys.signing_key().kid
    world.clock.now += 6 * HOUR
    world.ring.rotate()
    (upcoming,) = world.states()[NEXT]
    assert upcoming.kid in {jwk["kid"] for jwk in world.published()["keys"]}
    world.clock.now += 3 * JWKS_MAX_AGE - 1
    world.ring.rotate()
    assert world.states()[NEXT] and world.keys.signing_key().kid == signing  # not yet
    world.clock.now += 1
    world.ring.rotate()
    world.keys.refresh()
    assert world.keys.signing_key().kid == upcoming.kid


class Faulty:
    """Wraps a registry or material and fails the n-th call to any of its methods."""

    def __init__(self, inner, calls, fail_at) -> None:
        self._inner, self._calls, self._fail_at = inner, calls, fail_at

    def __getattr__(self, name):
        method = getattr(self._inner, name)

        def call(*args, **kwargs):
            if next(self._calls) == self._fail_at:
                raise ConnectionError(f"injected failure in {name}")
            return method(*args, **kwargs)
        return call


def count_calls(world_factory) -> int:
    calls = itertools.count(1)
    world = world_factory(calls, fail_at=-1)
    drive(world)
    return next(calls) - 1


def drive(world) -> None:
    """A whole lifecycle: first key, a forced rotation, promotion, retirement and deletion."""
    world.ring.rotate()
    world.ring.rotate(force=True)
    world.clock.now += 3 * JWKS_MAX_AGE
    world.ring.rotate()
    world.clock.now += world.ring.retire_after
    world.ring.rotate()


def assert_consistent(world) -> None:
    states = world.states()
    assert len(states.get(ACTIVE, [])) == 1 and len(states.get(NEXT, [])) <= 1
    published = {jwk["kid"] for jwk in world.published()["keys"]}
    assert states[ACTIVE][0].kid in published
    world.keys.refresh()
    token = world.issue()  # the active key's material is usable
    assert world.caching_verifier().verify(token)
    for record in world.ring.registry.list_keys():
        assert (record.state in PUBLISHED) == (record.kid in published)


def test_a_rotation_that_fails_at_any_step_recovers_on_the_next_run(backend):
    registry, material = backend

    def world_factory(calls, fail_at):
        return World(Faulty(registry, calls, fail_at), Faulty(material, calls, fail_at))

    total = count_calls(world_factory)
    assert total > 10
    for fail_at in range(1, total + 1):
        for record in registry.list_keys():  # start each injection from an empty registry
            _forget(registry, record)
        world = world_factory(itertools.count(1), fail_at)
        for step in range(4):
            try:
                drive(world) if step == 0 else world.ring.rotate()
                break
            except ConnectionError:
                continue
        world.ring.rotate()  # the next scheduled run
        world.clock.now += 3 * JWKS_MAX_AGE + world.ring.retire_after
        world.ring.rotate()
        world.ring.rotate()
        assert_consistent(world)


def _forget(registry, record) -> None:
    if isinstance(registry, SqliteKeyRegistry):
        registry._db.execute("DELETE FROM key_records WHERE key_id = ?", (record.key_id,))
    else:
        registry._call("delete_item", Key=registry._key("KEY", record.key_id))


def test_an_emergency_rollover_makes_the_old_keys_tokens_inactive_everywhere(backend):
    world = World(*backend)
    world.ring.rotate()
    old_token = world.issue()
    old = world.states()[ACTIVE][0]
    endpoints = TokenStatusEndpoints(world.store, world.store, ManagedKeyStore(
        world.ring.registry, world.ring.material, cache_seconds=0), world.clock)
    introspect = lambda token: endpoints.introspect(  # noqa: E731
        parse_form(f"token={token}".encode(), "application/x-www-form-urlencoded"),
        "Basic " + base64.b64encode(f"rs:{SECRET}".encode()).decode(), ISSUER).body
    assert introspect(old_token)["active"] is True

    new = world.ring.rollover(compromised=True)
    world.keys.refresh()
    new_token = world.issue()
    assert introspect(old_token) == {"active": False}
    assert introspect(new_token)["active"] is True
    fresh = world.caching_verifier()
    with pytest.raises(TokenRejected):
        fresh.verify(old_token)
    assert fresh.verify(new_token)
    assert old.kid not in {jwk["kid"] for jwk in world.published()["keys"]} and new.kid != old.kid
    if isinstance(world.ring.material, KmsKeyMaterial):
        state = boto3.client("kms").describe_key(KeyId=old.key_ref)["KeyMetadata"]["KeyState"]
        assert state == "Disabled"


def test_a_planned_rollover_keeps_the_old_key_published_until_its_tokens_expire(backend):
    world = World(*backend)
    world.ring.rotate()
    old_token = world.issue()
    world.ring.rollover()
    world.keys.refresh()
    assert {r.state for r in world.ring.registry.list_keys()} == {ACTIVE, RETIRING}
    assert world.caching_verifier().verify(old_token)
    world.clock.now += world.ring.retire_after
    assert any("retired" in action for action in world.ring.rotate())


def test_a_next_key_created_late_after_a_failure_is_still_prepublished_in_full(backend):
    registry, material = backend
    calls = itertools.count(1)
    world = World(registry, Faulty(material, calls, fail_at=-1))
    world.ring.rotate()
    # the forced rotation writes its intent, then key creation fails
    world.ring.material = Faulty(material, itertools.count(1), fail_at=1)
    with pytest.raises(ConnectionError):
        world.ring.rotate(force=True)
    world.clock.now += 5 * HOUR  # the next run comes much later
    world.ring.material = material
    actions = world.ring.rotate()
    assert any("next" in a for a in actions) and not any("promoted" in a for a in actions)
    world.clock.now += 3 * JWKS_MAX_AGE
    assert any("promoted" in a for a in world.ring.rotate())


def test_two_overlapping_runs_create_one_next_key(backend):
    world = World(*backend)
    world.ring.rotate()
    other = KeyRing(world.ring.registry, world.ring.material, "ES256", clock=world.clock)
    original = world.ring.registry.list_keys

    def stale_list():  # the second run read the registry before the first one wrote its next key
        return [r for r in original() if r.state != "pending" and r.state != NEXT]
    first = world.ring.rotate(force=True)
    other.registry = type("Stale", (), {"list_keys": staticmethod(stale_list),
                                        "create_key_record": world.ring.registry.create_key_record,
                                        "update_key_records": world.ring.registry.update_key_records})()
    second = other.rotate(force=True)
    assert any("next" in a for a in first) and second == ["another run is creating the next key"]
    assert len(world.states()[NEXT]) == 1


def test_two_first_runs_on_an_empty_registry_record_one_active_key(backend, request):
    registry, material = backend
    clock = Clock()
    bootstrap = None
    if isinstance(material, KmsKeyMaterial):  # on AWS the first run adopts the deployed key
        bootstrap = request.getfixturevalue("kms_key")("ES256")
    first = KeyRing(registry, material, "ES256", clock=clock, bootstrap_key_ref=bootstrap)
    second = KeyRing(type("Empty", (), {"list_keys": staticmethod(lambda: []),  # read before the first wrote
                                        "create_key_record": registry.create_key_record,
                                        "update_key_records": registry.update_key_records})(),
                     material, "ES256", clock=clock, bootstrap_key_ref=bootstrap)
    first.rotate()
    assert "another run" in second.rotate()[-1]
    assert [r.state for r in registry.list_keys()] == [ACTIVE]


def test_a_rollover_before_the_first_rotation_keeps_the_deployed_key_published(table, kms_key):
    registry = DynamoDbStore(aws_client("dynamodb", "us-east-1"), table)
    material = KmsKeyMaterial(aws_client("kms", "us-east-1"), stack="test", alias_prefix="alias/test-key-")
    deployed = kms_key("ES256")
    ring = KeyRing(registry, material, "ES256", bootstrap_key_ref=deployed)
    deployed_kid = material.public_jwk(deployed, "ES256")["kid"]
    new = ring.rollover()
    published = {jwk["kid"] for jwk in ManagedKeyStore(registry, material, cache_seconds=0).public_jwks()}
    assert published == {deployed_kid, new.kid}
    assert {r.kid: r.state for r in registry.list_keys()} == {deployed_kid: RETIRING, new.kid: ACTIVE}


def test_a_retried_creation_adopts_the_key_an_interrupted_attempt_made_and_no_other(aws):
    # Given two keys an interrupted creation of key_abc made (CreateKey's answer lost twice), and a
    # key of another stack with the same key id
    kms = boto3.client("kms")

    def orphan(stack: str) -> str:
        return kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY",
                              Description=f"tokenmint signing key key_abc (ES256) of stack {stack}",
                              Tags=[{"TagKey": "tokenmint:stack", "TagValue": stack}])["KeyMetadata"]["Arn"]
    first, second, foreign = orphan("test"), orphan("test"), orphan("other")
    material = KmsKeyMaterial(aws_client("kms", "us-east-1"), stack="test", alias_prefix="alias/test-key-")

    # When the creation is retried
    key_ref, jwk = material.create("key_abc", "ES256", retry=True)

    # Then it keeps the first key, under its alias, and deletes the second; the other stack's is untouched
    assert key_ref == first
    assert kms.describe_key(KeyId="alias/test-key-key_abc")["KeyMetadata"]["Arn"] == first
    states = {arn: kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] for arn in (first, second, foreign)}
    assert states == {first: "Enabled", second: "PendingDeletion", foreign: "Enabled"}
    assert len(kms.list_keys()["Keys"]) == 3  # no new key
    # And a first attempt does not search: it makes the key
    material.create("key_new", "ES256")
    assert len(kms.list_keys()["Keys"]) == 4


def test_a_retried_creation_searches_a_bounded_number_of_keys_then_makes_the_key(aws, monkeypatch):
    # Given more keys in the region than a search may describe
    from tokenmint.adapters.aws import kms as kms_module

    monkeypatch.setattr(kms_module, "MAX_SEARCHED_KEYS", 2)
    kms = boto3.client("kms")
    for _ in range(3):
        kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY", Description="someone else's")
    material = KmsKeyMaterial(aws_client("kms", "us-east-1"), stack="test", alias_prefix="alias/test-key-")
    calls = []
    aws_client("kms", "us-east-1").meta.events.register("before-parameter-build.kms.DescribeKey",
                                                        lambda params, **_: calls.append(params["KeyId"]))

    # When a creation is retried
    material.create("key_abc", "ES256", retry=True)

    # Then it described two of them, then made the key
    searched = [key for key in calls if not key.startswith(("alias/", "arn:"))]
    assert len(searched) == 2
    assert len(kms.list_keys()["Keys"]) == 4
