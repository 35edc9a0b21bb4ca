"""Least privilege item type by item type (DESIGN.md, security rules): each function's role allows
its DynamoDB actions only on the partition keys it uses (``dynamodb:LeadingKeys``, template.yaml).

Every DynamoDB call each function makes while it handles real events under moto (every event in
events/, and the flows the events alone do not reach: private_key_jwt and DPoP, revoking and
introspecting a real token, failures that count and block, a whole key rotation) is turned into
what IAM authorises: one (action, partition keys) request per call, or per item of a
TransactWriteItems. Each must be allowed by the function's role as the template deploys it, and
each grant (action and partition key pattern) must be used by some call: no grant to spare.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from integration.test_fault_injection import (  # the flows' world: a seeded stack and its tokens
    ASSERTION_TYPE,
    FLOWS,
    World,
    restore,
    scan,
    world,  # noqa: F401 (a fixture)
)
from integration.test_fault_injection import authorizer as authorizer_with_a_bearer_token
from integration.test_lambda_events import (
    EXPECTED,
    INTROSPECTOR,
    basic,
    deployed,  # noqa: F401 (a fixture)
    dpop_tools_token,
    invoke,
    pkjwt_assertion,
    run_a_full_rotation,
    with_dpop,
    with_form,
)
from support.template import deployed_template, load_template
from tokenmint import runtime
from tokenmint.adapters.aws.clients import aws_client

# The only condition a table grant may carry; anything else would need this evaluator extended.
LEADING_KEYS = ("ForAllValues:StringLike", "dynamodb:LeadingKeys")
TABLE_ARN = {"Fn::GetAtt": ["Table", "Arn"]}  # what the roles name (single-region stack)


# -- what IAM authorises for a DynamoDB call ----------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """One authorisation: ``action`` on ``resource`` (a table name, or table/index/<name> for an
    index) for items whose partition keys are ``partition_keys``."""

    action: str
    resource: str
    partition_keys: tuple[str, ...]


ITEM_CALLS = {"GetItem": "Key", "UpdateItem": "Key", "DeleteItem": "Key", "PutItem": "Item"}
# A TransactWriteItems item is authorised with the action of the call it stands for.
TRANSACTION_ITEMS = {"Put": ("PutItem", "Item"), "Update": ("UpdateItem", "Key"), "Delete": ("DeleteItem", "Key"),
                     "ConditionCheck": ("ConditionCheckItem", "Key")}


def partition_key_names() -> dict[str | None, str]:
    """The partition key attribute of the table (None) and of each of its indexes, from the template."""
    table = load_template()["Resources"]["Table"]["Properties"]

    def hash_key(schema: list[dict]) -> str:
        return next(key["AttributeName"] for key in schema if key["KeyType"] == "HASH")
    return {None: hash_key(table["KeySchema"]),
            **{index["IndexName"]: hash_key(index["KeySchema"]) for index in table.get("GlobalSecondaryIndexes", ())}}


def queried_partition(params: dict[str, Any]) -> str:
    """The partition key value a Query names: ``<partition key> = :value`` in its KeyConditionExpression."""
    index = params.get("IndexName")
    wanted = partition_key_names()[index]
    names = params.get("ExpressionAttributeNames", {})
    for clause in re.split(r"\s+AND\s+", params["KeyConditionExpression"], flags=re.IGNORECASE):
        match = re.fullmatch(r"\s*\(?\s*([#\w]+)\s*=\s*(:\w+)\s*\)?\s*", clause)
        if match and names.get(match[1], match[1]) == wanted:
            return params["ExpressionAttributeValues"][match[2]]["S"]
    raise AssertionError(f"no partition key equality in {params['KeyConditionExpression']!r}")


def requests(operation: str, params: dict[str, Any]) -> list[Request]:
    """What IAM authorises for one call: ``operation`` with its API ``params``."""
    if operation in ITEM_CALLS:
        item = params[ITEM_CALLS[operation]]
        return [Request(f"dynamodb:{operation}", params["TableName"], (item["pk"]["S"],))]
    if operation == "Query":
        index = params.get("IndexName")
        resource = params["TableName"] + (f"/index/{index}" if index else "")
        return [Request("dynamodb:Query", resource, (queried_partition(params),))]
    if operation == "TransactWriteItems":
        return [Request(f"dynamodb:{TRANSACTION_ITEMS[kind][0]}", body["TableName"],
                        (body[TRANSACTION_ITEMS[kind][1]]["pk"]["S"],))
                for item in params["TransactItems"] for kind, body in item.items()]
    # Scan, batch calls, PartiQL: not one item or one partition; no role should need them
    raise AssertionError(f"{operation}: a call this check cannot authorise by partition key")


# -- the roles as the template deploys them -----------------------------------------------------------
@dataclass(frozen=True)
class Statement:
    """A table statement of a role: its actions, and the partition key patterns it is limited to
    (None: every item)."""

    actions: frozenset[str]
    patterns: tuple[str, ...] | None


def table_statements(function: str) -> list[Statement]:
    """The role's DynamoDB statements (single-region stack), each checked to name the table and at
    most the LeadingKeys condition."""
    statements = []
    properties = deployed_template(load_template())["Resources"][function]["Properties"]
    for policy in properties.get("Policies", ()):
        for statement in policy["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if not any(action.startswith("dynamodb:") for action in actions):
                continue
            assert all(action.startswith("dynamodb:") for action in actions), statement
            assert statement["Effect"] == "Allow" and statement["Resource"] == TABLE_ARN, statement
            condition = statement.get("Condition")
            patterns = None
            if condition is not None:
                ((operator, keys),) = condition.items()
                ((key, values),) = keys.items()
                assert (operator, key) == LEADING_KEYS, condition
                patterns = tuple(values)
            statements.append(Statement(frozenset(actions), patterns))
    return statements


def string_like(pattern: str, value: str) -> bool:
    """IAM's StringLike: case-sensitive, ``*`` any characters, ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def allows(statement: Statement, request: Request, table: str) -> bool:
    """Whether ``statement`` allows ``request``: its action, on the table itself (no role names an
    index), with every partition key matching one of its patterns (ForAllValues)."""
    if request.action not in statement.actions or request.resource != table:
        return False
    return statement.patterns is None or all(
        any(string_like(pattern, key) for pattern in statement.patterns) for key in request.partition_keys)


# -- recording each function's calls ------------------------------------------------------------------
def handlers() -> dict[str, str]:
    """Function logical id → its handler (module.attribute), from the template."""
    return {name: resource["Properties"]["Handler"] for name, resource in load_template()["Resources"].items()
            if resource["Type"] == "AWS::Serverless::Function"}


@dataclass
class Recorder:
    """The DynamoDB calls made through the functions' client, each attributed to the function whose
    handler is running (None: outside any handler) and to the flow that made it."""

    calls: list[tuple[str | None, str, str, dict[str, Any]]] = field(default_factory=list)
    function: str | None = None
    flow: str = ""

    def record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((self.function, self.flow, model.name, params))

    def handler_of(self, function: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        def run(event: Any, context: Any) -> Any:
            self.function = function
            try:
                return handler(event, context)
            finally:
                self.function = None
        return run

    def authorisations(self) -> Iterator[tuple[str | None, str, Request]]:
        for function, flow, operation, params in self.calls:
            for request in requests(operation, params):
                yield function, flow, request


@pytest.fixture
def recorder(world, monkeypatch) -> Iterator[Recorder]:
    recorder = Recorder()
    for function, handler in handlers().items():
        module_name, _, attribute = handler.rpartition(".")
        module = importlib.import_module(module_name)
        monkeypatch.setattr(module, attribute, recorder.handler_of(function, getattr(module, attribute)))
    events = aws_client("dynamodb", "us-east-1").meta.events
    events.register("before-parameter-build.dynamodb", recorder.record)  # once per call, before retries
    yield recorder
    events.unregister("before-parameter-build.dynamodb", recorder.record)


# -- the flows ----------------------------------------------------------------------------------------
def event(name: str) -> Callable[[World], None]:
    """events/<name>, answered as test_lambda_events expects (so the path it exercises is the one meant)."""
    def run(world: World) -> None:
        answer = invoke(name)
        expected = EXPECTED[name]
        if isinstance(expected, tuple):
            assert answer["statusCode"] == expected[0], (name, answer["statusCode"])
        elif "isAuthorized" in expected:
            assert answer == expected, name
    return run


def answered(status: int, flow: Callable[[World], dict]) -> Callable[[World], None]:
    def run(world: World) -> None:
        answer = flow(world)
        assert answer.get("statusCode", 200) == status and answer.get("isAuthorized", True), answer.get("body")
    return run


def with_assertion(name: str, world: World) -> dict:
    """events/<name> (revocation, introspection) from tmc_pkjwt, authenticated by private_key_jwt."""
    form = with_form(name, token=world.access_token, client_assertion_type=ASSERTION_TYPE,
                     client_assertion=pkjwt_assertion())
    del form["headers"]["authorization"]
    return form


FLOW_STATUS = {"registration create": 201, "registration delete": 204}  # the other FLOWS answer 200
WRONG_SECRET = basic(INTROSPECTOR[0], "tmsec_wrong" + "0" * 40)
CHECKED_FLOWS: dict[str, Callable[[World], None]] = {
    **{f"event {name}": event(name) for name in sorted(EXPECTED)},
    **{name: answered(FLOW_STATUS.get(name, 200), flow) for name, flow in FLOWS.items()},
    "token with a DPoP proof": lambda world: dpop_tools_token("tools:echo"),  # asserts a DPoP token itself
    "revocation by a private_key_jwt caller": answered(200, lambda world: invoke(
        "revocation_basic.json", with_assertion("revocation_basic.json", world))),
    "revocation, wrong secret": answered(401, lambda world: invoke(
        "revocation_basic.json", with_form("revocation_basic.json", WRONG_SECRET, token=world.access_token))),
    "introspection by a private_key_jwt caller": answered(200, lambda world: invoke(
        "introspection_garbage_token.json", with_assertion("introspection_garbage_token.json", world))),
    "introspection, wrong secret": answered(401, lambda world: invoke(
        "introspection_garbage_token.json",
        with_form("introspection_garbage_token.json", WRONG_SECRET, token=world.access_token))),
    "tools API with a DPoP-bound token": answered(200, lambda world: invoke(
        "tools_no_token.json", with_dpop("tools_no_token.json", dpop_tools_token("tools:echo")))),
    "authorizer, bearer token": answered(200, authorizer_with_a_bearer_token),
    "authorizer with a DPoP-bound token": answered(200, lambda world: invoke(
        "authorizer_garbage_token.json", with_dpop("authorizer_garbage_token.json", dpop_tools_token("tools:echo")))),
    # adopt, rotate, promote, retire: every step of the key lifecycle through the handler
    "key rotation, a whole lifecycle": lambda world: run_a_full_rotation(world.table),
}


def test_every_dynamodb_call_is_allowed_on_its_partition_keys_and_every_grant_is_used(world, recorder, monkeypatch):
    # Given the deployed functions on a seeded table, where a client's first failure from a source
    # also records a block on the client (so that flow's write is exercised too)
    monkeypatch.setenv("TOKENMINT_AUTH_FAILURES_PER_CLIENT_SOURCE", "1")
    seeded = scan(world.table)
    roles = {function: table_statements(function) for function in handlers()}

    # When every flow runs from the seeded table, each in a new process (every cache empty)
    for flow_name, flow in CHECKED_FLOWS.items():
        restore(world.table, seeded, scan(world.table))
        runtime.install(None)
        recorder.flow = flow_name
        flow(world)

    # Then every call was made by a function, and each is one its role allows on its items
    made = list(recorder.authorisations())
    assert made and all(function is not None for function, _, _ in made)
    refused = sorted({(function, request.action, request.resource, request.partition_keys, flow)
                      for function, flow, request in made
                      if not any(allows(statement, request, world.table) for statement in roles[function])})
    assert refused == []
    # And every grant (each action of each statement, on each of its patterns) is used by a call
    unused = []
    for function, statements in roles.items():
        for statement in statements:
            for action in sorted(statement.actions):
                for pattern in statement.patterns or (None,):
                    single = Statement(frozenset({action}), None if pattern is None else (pattern,))
                    if not any(allows(single, request, world.table)
                               for caller, _, request in made if caller == function):
                        unused.append((function, action, pattern))
    assert unused == []


# -- the evaluator itself refuses what a role does not allow ------------------------------------------
@pytest.mark.parametrize("function, operation, params", [
    # the token function reads clients, not initial access tokens
    ("TokenFunction", "GetItem", {"TableName": "t", "Key": {"pk": {"S": "IAT#abc"}, "sk": {"S": "IAT"}}}),
    # a partition key that only starts like an allowed one (RESOURCE is exact, no wildcard)
    ("DiscoveryFunction", "Query", {"TableName": "t", "KeyConditionExpression": "pk = :pk",
                                    "ExpressionAttributeValues": {":pk": {"S": "RESOURCES"}}}),
    # listing clients by the index is the CLI's, on an index no role names
    ("RegistrationFunction", "Query", {"TableName": "t", "IndexName": "gsi1", "KeyConditionExpression": "gsi1pk = :pk",
                                       "ExpressionAttributeValues": {":pk": {"S": "CLIENT"}}}),
    # a transaction item is authorised with its own action and key: the registration function never
    # deletes initial access tokens
    ("RegistrationFunction", "TransactWriteItems", {"TransactItems": [
        {"Put": {"TableName": "t", "Item": {"pk": {"S": "CLIENT#tmc_x"}, "sk": {"S": "CLIENT"}}}},
        {"Delete": {"TableName": "t", "Key": {"pk": {"S": "IAT#abc"}, "sk": {"S": "IAT"}}}}]}),
    # the rotation writes key records only
    ("KeyRotationFunction", "PutItem", {"TableName": "t",
                                        "Item": {"pk": {"S": "CLIENT#tmc_x"}, "sk": {"S": "CLIENT"}}}),
])
def test_the_check_refuses_calls_outside_the_roles_items(function, operation, params):
    statements = table_statements(function)
    assert not all(any(allows(statement, request, "t") for statement in statements)
                   for request in requests(operation, params))
