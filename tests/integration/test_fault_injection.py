"""Every AWS call of every flow, failed in turn (moto): throttled, unreachable, timed out.

For each flow the AWS calls it makes are first recorded (botocore's before-call event on the
functions' own clients); then the flow runs again from the same stored state once per call k and
kind of fault, with the k-th call failing as the SDK reports a call that failed after its retries
(throttled or unreachable: AWS did nothing; timed out: AWS applied it, the answer was lost).
A request must then be answered 503 ``temporarily_unavailable`` with ``Retry-After`` (never a 500,
never a token or credential whose record was not written), and the table must hold either exactly
what it held before or what the successful flow leaves (no partial write). The scheduled key
rotation must fail cleanly (an exception for Lambda to report) and the next run must recover.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from integration.test_lambda_events import (  # the deployed functions' world: seeded table, events
    API,
    DOMAIN_ISSUER,
    INTROSPECTOR,
    basic,
    bearer,
    deployed,  # noqa: F401 (a fixture)
    invoke,
    key_records,
    store_of,
    template_allowed_actions,
    tools_token,
    with_form,
)
from tokenmint import runtime
from tokenmint.adapters.aws.clients import aws_client
from tokenmint.adapters.aws.kms import STACK_TAG
from tokenmint.keys import ACTIVE, PREPUBLISH, RETIRE_AFTER, RETIRED
from tokenmint.ports import UnavailableError

SERVICES = ("dynamodb", "kms")


@dataclass(frozen=True)
class Fault:
    """How a call fails, as the SDK reports it once its own retries are spent: refused before AWS
    did anything, or (a timeout) after AWS applied the call but before its answer arrived."""

    error: Callable[[str], Exception]
    after_the_call: bool = False


FAULTS = {
    "throttled": Fault(lambda operation: ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, operation)),
    "unreachable": Fault(lambda operation: EndpointConnectionError(
        endpoint_url=f"https://{operation.lower()}.us-east-1.amazonaws.com/")),
    "timed out": Fault(lambda operation: ReadTimeoutError(
        endpoint_url=f"https://{operation.lower()}.us-east-1.amazonaws.com/"), after_the_call=True),
}
NO_FAULT = FAULTS["throttled"]


@dataclass
class Injector:
    """Counts the AWS calls made through the functions' clients and fails the ``fail_at``-th."""

    calls: list[str] = field(default_factory=list)
    fail_at: int = 0  # 0: none
    fault: Fault = NO_FAULT

    def before(self, model: Any, params: dict, context: dict, **_: Any) -> None:
        call = f"{model.service_model.service_name}:{model.name}"
        if call.startswith("dynamodb:"):  # which kind of record an item call is about: CLIENT, THROTTLE, …
            request = json.loads(params.get("body") or b"{}")
            key = request.get("Key") or request.get("Item") or {}
            if "pk" in key:
                call += " " + key["pk"]["S"].partition("#")[0]
        self.calls.append(call)
        if len(self.calls) == self.fail_at:
            if not self.fault.after_the_call:
                raise self.fault.error(model.name)
            context["fault_injection"] = self.fault

    def after(self, model: Any, context: dict, **_: Any) -> None:
        fault = context.pop("fault_injection", None)
        if fault is not None:
            raise fault.error(model.name)

    def reset(self, fail_at: int = 0, fault: Fault = NO_FAULT) -> None:
        self.calls, self.fail_at, self.fault = [], fail_at, fault


@functools.cache
def raw_dynamodb() -> Any:
    """A client of the test's own, around the injector (cleared with each test's moto)."""
    return boto3.client("dynamodb")


def scan(table: str) -> list[dict]:
    """The whole table, in key order."""
    items, kwargs = [], {"TableName": table, "ConsistentRead": True}
    client = raw_dynamodb()
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return sorted(items, key=lambda item: (item["pk"]["S"], item["sk"]["S"]))
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def restore(table: str, items: list[dict], current: list[dict]) -> None:
    """Put the table back from ``current`` to ``items``, writing only what differs."""
    client = raw_dynamodb()
    wanted = {(item["pk"]["S"], item["sk"]["S"]): item for item in items}
    for item in current:
        key = (item["pk"]["S"], item["sk"]["S"])
        if wanted.get(key) == item:
            del wanted[key]
        elif key not in wanted:
            client.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
    for item in wanted.values():
        client.put_item(TableName=table, Item=item)


# Records whose write is deliberately independent of the request's outcome, and so may be left
# by a failed request: rate-limit counters (RFC 6749 §10.10 defence: counted first, best effort) and
# a private_key_jwt assertion's jti (spent before the token is signed, so a replay can never win;
# after a failure the client signs a new assertion, as RFC 7523 clients do for every request).
# last_used_at (the usage stamp) is best effort too: a failed stamp never fails a token, and so is
# the registration endpoints' read of their source's failure counter (an unreadable counter lets the
# request be checked as usual: it is counted, and refused at the limit, by the write).
SIDE_RECORDS = ("THROTTLE#", "ASSERTION#")
BEST_EFFORT_CALLS = ("dynamodb:UpdateItem THROTTLE", "dynamodb:UpdateItem CLIENT", "dynamodb:GetItem THROTTLE")
# Values each run draws anew (ids, hashes, times): a change is compared by its shape.
VOLATILE = re.compile(r"(tmc_|sha256:)[A-Za-z0-9_\-]+|\b1[6-9]\d{8}\b")


def shape(item: dict) -> str:
    item = {name: value for name, value in item.items() if name != "last_used_at"}
    return VOLATILE.sub(lambda m: m.group(1) or "<time>", json.dumps(item, sort_keys=True))


def change(before: list[dict], after: list[dict]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a run changed (records removed or changed before, records added or changed after), side
    records and usage stamps left out, as shapes."""
    def shapes(items: list[dict]) -> set[str]:
        return {shape(item) for item in items if not item["pk"]["S"].startswith(SIDE_RECORDS)}
    old, new = shapes(before), shapes(after)
    return tuple(sorted(old - new)), tuple(sorted(new - old))


# -- the flows: one request each (as a cold function: every cache empty) ----------------------------
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class World:
    """The seeded stack, plus what the flows present: a token of each kind and a private_key_jwt key."""

    table: str
    # (repr=False: a failure report must not show a token)
    access_token: str = field(default="", repr=False)  # tmc_example's, for revocation and introspection
    tools_token: str = field(default="", repr=False)  # for the authorizer and the tools API
    key: Any = field(default=None, repr=False)

    def assertion(self) -> str:
        import uuid

        import jwt

        now = int(time.time())
        return jwt.encode({"iss": "tmc_pkjwt_token", "sub": "tmc_pkjwt_token", "aud": DOMAIN_ISSUER, "iat": now,
                           "exp": now + 300, "jti": str(uuid.uuid4())}, self.key, algorithm="ES256")


def token_with_basic(world: World) -> dict:
    return invoke("token_basic.json")  # tmc_example: its usage stamp is fresh (no write)


def token_with_post(world: World) -> dict:
    return invoke("token_post.json")  # tmc_example_post's first token: its usage stamp is written


def token_with_private_key_jwt(world: World) -> dict:
    event = with_form("token_post.json", grant_type="client_credentials", resource=API,
                      client_assertion_type=ASSERTION_TYPE, client_assertion=world.assertion())
    return invoke("token_post.json", event)


def revocation(world: World) -> dict:
    return invoke("revocation_basic.json", with_form("revocation_basic.json", token=world.access_token))


def introspection(world: World) -> dict:
    return invoke("introspection_garbage_token.json", with_form(
        "introspection_garbage_token.json", basic(*INTROSPECTOR), token=world.access_token))


def tools_api(world: World) -> dict:
    return invoke("tools_no_token.json", bearer("tools_no_token.json", world.tools_token))


def authorizer(world: World) -> dict:
    return invoke("authorizer_garbage_token.json", bearer("authorizer_garbage_token.json", world.tools_token))


FLOWS: dict[str, Callable[[World], dict]] = {
    "token, client_secret_basic": token_with_basic,
    "token, client_secret_post": token_with_post,
    "token with private_key_jwt": token_with_private_key_jwt,
    "registration create": lambda world: invoke("registration_create.json"),
    "registration read": lambda world: invoke("registration_read.json"),
    "registration update": lambda world: invoke("registration_update.json"),
    "registration delete": lambda world: invoke("registration_delete.json"),
    "revocation": revocation,
    "introspection": introspection,
    "metadata": lambda world: invoke("discovery_metadata.json"),
    "jwks": lambda world: invoke("discovery_jwks.json"),
    "tools API": tools_api,
}


@pytest.fixture
def world(deployed, table) -> World:
    from cryptography.hazmat.primitives.asymmetric import ec

    from tokenmint.oauth.jwk import public_jwk
    from tokenmint.oauth.models import Client

    deployed()
    raw_dynamodb.cache_clear()
    world = World(table, key=ec.generate_private_key(ec.SECP256R1()))
    store_of(table).create_client(Client(
        "tmc_pkjwt_token", "private_key_jwt", ("tools:read",), created_at=1_700_000_000,
        metadata={"jwks": {"keys": [public_jwk(world.key.public_key(), "ES256")]}}))
    world.access_token = invoke("token_basic.json")["json"]["access_token"]
    world.tools_token = tools_token("tools:echo tools:time")
    return world


@pytest.fixture
def injector() -> Injector:
    injector = Injector()
    for service in SERVICES:
        events = aws_client(service, "us-east-1").meta.events
        events.register_first("before-call", injector.before)
        events.register_first("after-call", injector.after)
    yield injector
    for service in SERVICES:
        events = aws_client(service, "us-east-1").meta.events
        events.unregister("before-call", injector.before)
        events.unregister("after-call", injector.after)


def run_cold(flow, world: World) -> dict:
    runtime.install(None)  # a new process: no cached resources, keys or public key
    return flow(world)



CREDENTIAL = re.compile(r"(tmsec_|tmrat_|tmiat_|eyJ[A-Za-z0-9_-]+\.)[A-Za-z0-9_.-]*")


def shown(answer: dict) -> str:
    """An answer's body for a failure message, without the credentials it may hold."""
    return CREDENTIAL.sub(r"\1…", answer.get("body") or "")


def record(flow, world: World, injector: Injector) -> tuple[list[str], dict, list[dict]]:
    """The calls of a fault-free cold run, its answer, and the table it leaves."""
    injector.reset()
    answer = run_cold(flow, world)
    return list(injector.calls), answer, scan(world.table)


def test_every_flow_failing_at_any_aws_call_answers_503_and_writes_all_or_nothing(world, injector, subtests):
    seeded = scan(world.table)
    for name, flow in FLOWS.items():  # one stack for all flows (setting it up is the slow part)
        with subtests.test(flow=name):
            restore(world.table, seeded, scan(world.table))
            check_flow(name, flow, world, injector, seeded)


def check_flow(name: str, flow, world: World, injector: Injector, seeded: list[dict]) -> None:
    """Fail each call of ``flow`` in turn with each fault, from the seeded table each time."""
    calls, succeeded, done = record(flow, world, injector)
    assert calls and succeeded["statusCode"] < 300, (name, succeeded["statusCode"], shown(succeeded))
    outcomes = {((), ()), change(seeded, done)}  # fully before, or fully after
    current = done
    for k, call in enumerate(calls, start=1):
        for fault_name, fault in FAULTS.items():
            restore(world.table, seeded, current)
            injector.reset(k, fault)
            answer = run_cold(flow, world)
            where = f"{name}: call {k} ({call}) {fault_name}"
            assert injector.calls[k - 1] == call, where  # the same run, up to the failing call
            if call in BEST_EFFORT_CALLS:  # the request goes on as if the call had succeeded
                assert answer["statusCode"] == succeeded["statusCode"], (where, shown(answer))
            else:
                assert answer["statusCode"] == 503, (where, shown(answer))
                assert answer["headers"]["Retry-After"].isdigit(), where
                assert answer["headers"]["Cache-Control"] == "no-store", where
                assert answer["json"]["error"] == "temporarily_unavailable", where
                assert not CREDENTIAL.search(answer["body"]), (where, shown(answer))  # no unstored credential
            current = scan(world.table)
            assert change(seeded, current) in outcomes, where


def test_the_authorizer_failing_at_any_aws_call_fails_closed(world, injector):
    # A Lambda authorizer cannot shape API Gateway's answer: an HTTP API answers 500 {"message":
    # "Internal Server Error"} when the authorizer fails, 403 when it denies. It must never allow.
    seeded = scan(world.table)
    calls, answer, _ = record(authorizer, world, injector)
    assert answer["isAuthorized"] is True and calls
    for k, call in enumerate(calls, start=1):
        for fault_name, fault in FAULTS.items():
            injector.reset(k, fault)
            with pytest.raises(UnavailableError):
                run_cold(authorizer, world)
            assert scan(world.table) == seeded, (k, call, fault_name)  # it never writes


# -- the scheduled key rotation -------------------------------------------------------------------------
# A whole lifecycle through the KeyRotationFunction on a simulated clock: adopt the deployed key,
# a forced rotation creates the next key, the schedule promotes it once pre-published and retires the
# deployed key once its tokens have expired (disabled, deletion scheduled).
SCHEDULE = (("key_rotation_scheduled.json", 0), ("key_rotation_forced.json", 0),
            ("key_rotation_scheduled.json", PREPUBLISH), ("key_rotation_scheduled.json", RETIRE_AFTER))


def new_stack(kms_key, monkeypatch, n: int) -> str:
    """A stack of its own (its KMS aliases and tags) with a deployed key of its own: KMS state outlives
    a restored table, so every run gets fresh names rather than a reset account."""
    stack = f"tokenmint-fault-{n}"
    key_arn = kms_key("ES256")
    boto3.client("kms").tag_resource(KeyId=key_arn, Tags=[{"TagKey": STACK_TAG, "TagValue": stack}])
    monkeypatch.setenv("TOKENMINT_STACK", stack)
    monkeypatch.setenv("TOKENMINT_SIGNING_KEY_ID", key_arn)
    monkeypatch.setenv("TOKENMINT_SIGNING_ALG", "ES256")
    return key_arn


def rotation_run(name: str, now: float) -> list[str]:
    """One invocation of the KeyRotationFunction at ``now``, in a new process."""
    runtime.install(None)
    runtime.backend().key_ring.clock = lambda: now
    return invoke(name)["actions"]


def run_the_schedule(injector: Injector) -> tuple[list[str], int]:
    """Every step of SCHEDULE; a step that fails is run again a minute later (the schedule's next
    run), at most three times. Returns the actions and how many runs failed."""
    now, actions, failures = time.time(), [], 0
    for name, advance in SCHEDULE:
        now += advance
        for _ in range(3):
            try:
                actions += rotation_run(name, now)
                break
            except UnavailableError:
                failures += 1
                injector.fail_at = 0  # the fault was one call; the next run finds AWS well
                now += 60
        else:
            raise AssertionError(f"{name} did not recover")
    return actions, failures


@pytest.fixture
def created_keys() -> list[str]:
    """The ARN of every KMS key the functions create (CreateKey answered)."""
    created: list[str] = []

    def record(parsed: dict, **_: Any) -> None:
        if "KeyMetadata" in parsed:
            created.append(parsed["KeyMetadata"]["Arn"])
    aws_client("kms", "us-east-1").meta.events.register("after-call.kms.CreateKey", record)
    yield created
    aws_client("kms", "us-east-1").meta.events.unregister("after-call.kms.CreateKey", record)


def left_behind(created: list[str], kept: str) -> list[str]:
    """Created keys that are neither ``kept`` nor on their way out."""
    kms = boto3.client("kms")
    return [arn for arn in created if arn != kept
            and kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] != "PendingDeletion"]


def test_a_key_rotation_failing_at_any_aws_call_fails_cleanly_and_the_next_run_recovers(
        deployed, table, kms_key, monkeypatch, injector, created_keys):
    import jwt

    deployed("ES256")
    seeded = scan(table)
    new_stack(kms_key, monkeypatch, 0)
    injector.reset()
    actions, failures = run_the_schedule(injector)
    calls = list(injector.calls)
    assert failures == 0 and [a.split(" ", 1)[0] for a in actions] == ["adopted", "created", "promoted", "retired",
                                                                      "scheduled"]
    assert len(created_keys) == 1  # the next key
    stacks = itertools.count(1)
    for k, call in enumerate(calls, start=1):
        # "unreachable" fails where "throttled" does, and is classified alike (the request flows
        # check both): the rotation, slow under moto, runs a refused and a lost-answer fault
        for fault_name, fault in ((name, FAULTS[name]) for name in ("throttled", "timed out")):
            restore(table, seeded, scan(table))
            deployed_key = new_stack(kms_key, monkeypatch, next(stacks))
            created_keys.clear()
            injector.reset(k, fault)
            actions, failures = run_the_schedule(injector)
            where = f"call {k} ({call}) {fault_name}"
            assert failures == 1, where  # the failure surfaced (Lambda reports it; the schedule retries)
            # and the lifecycle ended where it ends without faults: the new key signs, the deployed
            # one is retired, disabled and due for deletion, no KMS key was left behind
            records = key_records(table)
            assert {state: len(rs) for state, rs in records.items()} == {ACTIVE: 1, RETIRED: 1}, (where, actions)
            ((active,), (retired,)) = records[ACTIVE], records[RETIRED]
            assert retired.key_ref == deployed_key and retired.deletion_scheduled, where
            kms = boto3.client("kms")
            assert kms.describe_key(KeyId=deployed_key)["KeyMetadata"]["KeyState"] == "PendingDeletion", where
            assert active.key_ref in created_keys, where
            assert not left_behind(created_keys, active.key_ref), where
    # the last lifecycle's key signs tokens that verify with the published JWKS (PyJWT)
    runtime.install(None)
    injector.reset()
    access_token = invoke("token_basic.json")["json"]["access_token"]
    (jwk,) = invoke("discovery_jwks.json")["json"]["keys"]
    assert jwt.get_unverified_header(access_token)["kid"] == jwk["kid"] == active.kid
    assert jwt.decode(access_token, jwt.PyJWK(jwk).key, algorithms=["ES256"], audience=API)["iss"] == DOMAIN_ISSUER


@pytest.mark.parametrize("failing, fault", [("kms:CreateKey", "timed out"), ("kms:CreateAlias", "throttled")])
def test_an_interrupted_key_creation_leaves_no_kms_key_behind(
        deployed, table, kms_key, monkeypatch, injector, created_keys, failing, fault):
    deployed("ES256")
    new_stack(kms_key, monkeypatch, 1)
    injector.reset()
    run_the_schedule(injector)
    k = injector.calls.index(failing) + 1
    restore(table, [], scan(table))  # no key records: a fresh lifecycle
    new_stack(kms_key, monkeypatch, 2)
    created_keys.clear()
    injector.reset(k, FAULTS[fault])
    run_the_schedule(injector)
    (active,) = key_records(table)[ACTIVE]
    assert not left_behind(created_keys, active.key_ref)
    # and the retry found the key with calls the rotation role allows
    kms_calls = {call.split(":")[1] for call in injector.calls if call.startswith("kms:")}
    assert "ListKeys" in kms_calls and kms_calls <= template_allowed_actions("KeyRotationFunction")
