"""The SAM transform of template.yaml, and least privilege: each function's role allows exactly the
calls its code makes (DESIGN.md, security rules)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from support.template import (
    Evaluator,
    deployed_template,
    failed_rules,
    load_template,
    parameter_values,
    resources_of_type,
)

BASIC_EXECUTION_ROLE = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
# What SAM grants for Tracing: Active (the X-Ray daemon's writes: PutTraceSegments, sampling rules).
XRAY_WRITE_ONLY = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"

# Resources and conditions of the grants, as written in the template (a Ref as ${Name}).
KEYS = "arn:${AWS::Partition}:kms:*:${AWS::AccountId}:key/*"  # every key of the account, any region
STACK_ALIASES = "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:alias/${AWS::StackName}-key-*"
# A key this stack owns: the deployed key, the keys the rotation creates and their replicas.
OWNED = {"StringEquals": {"aws:ResourceTag/tokenmint:stack": "${AWS::StackName}"}}
# Keys the stack owns that are signing keys of the specs it creates (the rotation's own grants).
OWNED_SIGNING_KEYS = {"StringEquals": {"aws:ResourceTag/tokenmint:stack": "${AWS::StackName}",
                                       "kms:KeyUsage": "SIGN_VERIFY",
                                       "kms:KeySpec": ["RSA_2048", "ECC_NIST_P256", "ECC_NIST_EDWARDS25519"]}}
# A request that tags with the stack tag and with no other tag.
TAGGED_WITH_THE_STACK_ONLY = {"StringEquals": {"aws:RequestTag/tokenmint:stack": "${AWS::StackName}"},
                              "ForAllValues:StringEquals": {"aws:TagKeys": ["tokenmint:stack"]}}
SIGNING_KEYS_TAGGED_WITH_THE_STACK = {
    "StringEquals": {"aws:RequestTag/tokenmint:stack": "${AWS::StackName}", "kms:KeyUsage": "SIGN_VERIFY",
                     "kms:KeySpec": ["RSA_2048", "ECC_NIST_P256", "ECC_NIST_EDWARDS25519"]},
    "ForAllValues:StringEquals": {"aws:TagKeys": ["tokenmint:stack"]}}
REPLICAS_OF_OWNED_KEYS = {"StringEquals": {"aws:ResourceTag/tokenmint:stack": "${AWS::StackName}",
                                           "kms:ReplicaRegion": "${KeyReplicaRegions}"}}


def grant(action: str, resource: str, condition: dict[str, Any] | None = None) -> tuple[str, str, str | None]:
    return action, resource, json.dumps(condition, sort_keys=True) if condition else None


def items(*partition_keys: str) -> dict[str, Any]:
    """The condition of a table grant: every item the call touches has one of these partition keys
    (pk; ``*`` matches any characters), in the key design of adapters/aws/dynamodb.py."""
    return {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(partition_keys)}}


# The table's item types by partition key (adapters/aws/dynamodb.py).
CLIENTS = "CLIENT#*"  # a client, and its deletion mark
RESOURCES = "RESOURCE"  # the resource registry, one partition
INITIAL_ACCESS_TOKENS = "IAT#*"
REVOKED_TOKENS = "JTI#*"
KEY_RECORDS = "KEY"  # the signing key records, one partition
REPLAY_RECORDS = "ASSERTION#*"  # spent client assertion jtis and DPoP proof jtis
COUNTERS = "THROTTLE#*"  # failed-authentication and registration counters

# (action, resource, condition) each function's role must allow, and nothing else (single-region
# primary stack; the table is "Table.Arn"). Every table grant names the item types it may touch
# (dynamodb:LeadingKeys); IAM authorises each item of a TransactWriteItems with its own action.
# TokenFunction: GetItem (the client), Query (the resource registry, the key records), UpdateItem
# (the client's usage stamp; on failures, a block on the client and the counters), PutItem (a
# private_key_jwt assertion's or a DPoP proof's jti), Sign (the token) and GetPublicKey (the
# deployed key's kid, before the first rotation). DiscoveryFunction: Query (scopes_supported, the
# key records), GetPublicKey (the JWKS before the first rotation). RegistrationFunction: GetItem (the
# source's failure counter, the initial access token, the client), UpdateItem (the counters; register
# spends the initial access token, an Update item), PutItem and DeleteItem on the client's partition
# (an update; register's Put of the client; delete's Delete of the client and Put of its deletion
# mark). It uses no ConditionCheck item, so no dynamodb:ConditionCheckItem; it never lists (no
# Query) and never signs (no KMS). RevocationFunction: GetItem (the calling client; the token's
# client and revocation entry, read by the revocation check), PutItem (the revocation entry, and a
# private_key_jwt caller's assertion jti), Query (the key records), UpdateItem (a failing caller's
# counters and block), GetPublicKey (verifying the token). IntrospectionFunction: the same, but its
# PutItem is only the assertion jti. ToolsFunction and AuthorizerFunction: GetItem (the revocation
# check: the token's revocation entry and client), Query (the key records), PutItem (a DPoP proof's
# jti) and GetPublicKey. Only the token function signs. Every KMS grant is by the stack tag, since
# the rotation creates keys whose ARNs the template cannot know.
# KeyRotationFunction: Query and PutItem on the key records only (a record; the Puts of its
# transactions); CreateKey only of signing keys tagged with the stack and nothing else, TagResource
# (needed by CreateKey's Tags) of that tag only, CreateAlias on this stack's aliases and owned keys
# (it is authorised on both), and the lifecycle calls on owned keys.
EXPECTED_GRANTS = {
    "TokenFunction": {
        grant("dynamodb:GetItem", "Table.Arn", items(CLIENTS)),
        grant("dynamodb:Query", "Table.Arn", items(RESOURCES, KEY_RECORDS)),
        grant("dynamodb:UpdateItem", "Table.Arn", items(CLIENTS, COUNTERS)),
        grant("dynamodb:PutItem", "Table.Arn", items(REPLAY_RECORDS)),
        grant("kms:Sign", KEYS, OWNED),
        grant("kms:GetPublicKey", KEYS, OWNED),
    },
    "DiscoveryFunction": {
        grant("dynamodb:Query", "Table.Arn", items(RESOURCES, KEY_RECORDS)),
        grant("kms:GetPublicKey", KEYS, OWNED),
    },
    "RegistrationFunction": {
        grant("dynamodb:GetItem", "Table.Arn", items(COUNTERS, INITIAL_ACCESS_TOKENS, CLIENTS)),
        grant("dynamodb:UpdateItem", "Table.Arn", items(COUNTERS, INITIAL_ACCESS_TOKENS)),
        grant("dynamodb:PutItem", "Table.Arn", items(CLIENTS)),
        grant("dynamodb:DeleteItem", "Table.Arn", items(CLIENTS)),
    },
    "RevocationFunction": {
        grant("dynamodb:GetItem", "Table.Arn", items(CLIENTS, REVOKED_TOKENS)),
        grant("dynamodb:PutItem", "Table.Arn", items(REVOKED_TOKENS, REPLAY_RECORDS)),
        grant("dynamodb:Query", "Table.Arn", items(KEY_RECORDS)),
        grant("dynamodb:UpdateItem", "Table.Arn", items(CLIENTS, COUNTERS)),
        grant("kms:GetPublicKey", KEYS, OWNED),
    },
    "IntrospectionFunction": {
        grant("dynamodb:GetItem", "Table.Arn", items(CLIENTS, REVOKED_TOKENS)),
        grant("dynamodb:Query", "Table.Arn", items(KEY_RECORDS)),
        grant("dynamodb:PutItem", "Table.Arn", items(REPLAY_RECORDS)),
        grant("dynamodb:UpdateItem", "Table.Arn", items(CLIENTS, COUNTERS)),
        grant("kms:GetPublicKey", KEYS, OWNED),
    },
    "ToolsFunction": {
        grant("dynamodb:GetItem", "Table.Arn", items(REVOKED_TOKENS, CLIENTS)),
        grant("dynamodb:Query", "Table.Arn", items(KEY_RECORDS)),
        grant("dynamodb:PutItem", "Table.Arn", items(REPLAY_RECORDS)),  # DPoP proof jtis (RFC 9449 §11.1)
        grant("kms:GetPublicKey", KEYS, OWNED),
    },
    "AuthorizerFunction": {
        grant("dynamodb:GetItem", "Table.Arn", items(REVOKED_TOKENS, CLIENTS)),
        grant("dynamodb:Query", "Table.Arn", items(KEY_RECORDS)),
        grant("dynamodb:PutItem", "Table.Arn", items(REPLAY_RECORDS)),  # DPoP proof jtis (RFC 9449 §11.1)
        grant("kms:GetPublicKey", KEYS, OWNED),
    },
    "KeyRotationFunction": {
        grant("dynamodb:Query", "Table.Arn", items(KEY_RECORDS)),
        grant("dynamodb:PutItem", "Table.Arn", items(KEY_RECORDS)),
        grant("kms:CreateKey", "*", SIGNING_KEYS_TAGGED_WITH_THE_STACK),
        grant("kms:TagResource", KEYS, TAGGED_WITH_THE_STACK_ONLY),
        grant("kms:CreateAlias", STACK_ALIASES),
        grant("kms:ListKeys", "*"),  # an interrupted creation's key is looked for (adapters/aws/kms.py)
        grant("kms:CreateAlias", KEYS, OWNED_SIGNING_KEYS),
        grant("kms:DescribeKey", KEYS, OWNED_SIGNING_KEYS),
        grant("kms:GetPublicKey", KEYS, OWNED_SIGNING_KEYS),
        grant("kms:DisableKey", KEYS, OWNED_SIGNING_KEYS),
        grant("kms:ScheduleKeyDeletion", KEYS, OWNED_SIGNING_KEYS),
    },
}
FUNCTIONS = sorted(EXPECTED_GRANTS)
REPLICA_REGION_TABLE = "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${AWS::StackName}-table"


def with_table(grants: set[tuple[str, str, str | None]], table: str) -> set[tuple[str, str, str | None]]:
    return {(action, table if resource == "Table.Arn" else resource, condition)
            for action, resource, condition in grants}


class _NoManagedPolicies:
    """Stands in for the IAM ListPolicies call the translator would make for named managed policies."""

    def load(self) -> dict[str, str]:
        return {}


def sam_transform(template: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation template SAM would deploy, without AWS: local code paths become S3 URIs,
    as `sam package` would make them."""
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for uri in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(uri), str):
                properties[uri] = "s3://tokenmint-artifacts/code.zip"
    return transform(template, {}, _NoManagedPolicies())


@pytest.fixture(scope="module")
def sam_output() -> dict[str, Any]:
    """The SAM transform's output: every resource, each with its Condition, every Fn::If kept."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        return sam_transform(load_template())


@pytest.fixture(scope="module")
def transformed(sam_output) -> dict[str, Any]:
    """What CloudFormation deploys with the default parameters: a single-region primary stack."""
    return deployed_template(sam_output)


MULTI_REGION = {"KeyReplicaRegions": "eu-west-1,ap-southeast-2"}
REPLICA_REGION = {"IsPrimaryRegion": "false", "KeyReplicaRegions": "eu-west-1,ap-southeast-2",
                  "PrimarySigningKeyArn": "arn:aws:kms:us-east-1:123456789012:key/mrk-0123456789abcdef0123456789abcdef"}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _written(value: Any) -> Any:
    """A resource or condition value as the template writes it: {"Fn::GetAtt": ["Table", "Arn"]} →
    "Table.Arn", {"Fn::Sub": "…"} → "…", {"Ref": "X"} → "${X}"; lists and mappings item by item."""
    if isinstance(value, list):
        return [_written(item) for item in value]
    if isinstance(value, dict):
        if list(value) == ["Fn::GetAtt"]:
            return ".".join(value["Fn::GetAtt"])
        if list(value) == ["Fn::Sub"] and isinstance(value["Fn::Sub"], str):
            return value["Fn::Sub"]
        if list(value) == ["Ref"]:
            return "${" + value["Ref"] + "}"
        return {key: _written(item) for key, item in value.items()}
    return value


def role_of(transformed: dict[str, Any], function: str) -> dict[str, Any]:
    role_ref = transformed["Resources"][function]["Properties"]["Role"]
    return transformed["Resources"][role_ref["Fn::GetAtt"][0]]["Properties"]


def role_grants(transformed: dict[str, Any], function: str) -> set[tuple[str, str, str | None]]:
    grants = set()
    for policy in role_of(transformed, function).get("Policies", ()):
        for statement in _as_list(policy["PolicyDocument"]["Statement"]):
            # Only Allow statements with Action and Resource: a Deny, NotAction or NotResource
            # would need its own review.
            assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, statement
            assert statement["Effect"] == "Allow"
            for action in _as_list(statement["Action"]):
                for resource in _as_list(statement["Resource"]):
                    grants.add(grant(action, _written(resource), _written(statement.get("Condition"))))
    return grants


def test_transform_produces_the_deployed_resources(transformed):
    # Given the translated template, then it holds the API, its $default stage, the eight
    # functions with a role each, and the dependency layer
    types = {name: resource["Type"] for name, resource in transformed["Resources"].items()}
    assert types["HttpApi"] == "AWS::ApiGatewayV2::Api"
    assert {types[name] for name in EXPECTED_GRANTS} == {"AWS::Lambda::Function"}
    assert list(types.values()).count("AWS::IAM::Role") == len(EXPECTED_GRANTS) == 8
    assert list(types.values()).count("AWS::Lambda::LayerVersion") == 1
    stages = resources_of_type(transformed, "AWS::ApiGatewayV2::Stage")
    assert [stage["Properties"]["StageName"] for stage in stages.values()] == ["$default"]


def test_default_stage_throttles_with_the_parameters(transformed):
    (stage,) = resources_of_type(transformed, "AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"},
    }


def test_registration_routes_throttle_with_their_own_parameters(transformed):
    (stage,) = resources_of_type(transformed, "AWS::ApiGatewayV2::Stage").values()
    limits = {"ThrottlingRateLimit": {"Ref": "RegistrationThrottlingRateLimit"},
              "ThrottlingBurstLimit": {"Ref": "RegistrationThrottlingBurstLimit"}}
    assert stage["Properties"]["RouteSettings"] == {"ANY /register": limits, "ANY /register/{client_id}": limits}
    # the routes they name exist (a stage cannot name a route the API does not have)
    paths = transformed["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
    assert {"/register", "/register/{client_id}"} <= set(paths)
    assert all("x-amazon-apigateway-any-method" in paths[p] for p in ("/register", "/register/{client_id}"))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_role_allows_exactly_what_the_function_calls(transformed, function):
    # Given the function's role after the transform
    role = role_of(transformed, function)

    # Then its only managed policies are the basic execution role (CloudWatch Logs) and, for active
    # tracing, X-Ray's write-only access
    assert role["ManagedPolicyArns"] == [BASIC_EXECUTION_ROLE, XRAY_WRITE_ONLY]
    # And its inline policies allow exactly the expected actions on exactly the expected resources,
    # under exactly the expected conditions
    assert role_grants(transformed, function) == EXPECTED_GRANTS[function]


def test_every_function_is_reviewed(transformed):
    functions = set(resources_of_type(transformed, "AWS::Lambda::Function"))
    assert functions == set(EXPECTED_GRANTS)


@pytest.mark.parametrize("parameters", [{}, MULTI_REGION, REPLICA_REGION], ids=["single", "primary", "replica"])
def test_kms_grants_on_keys_need_the_stack_tag_and_only_the_token_function_signs(sam_output, parameters):
    # Given every role of a deployment
    deployed = deployed_template(sam_output, **parameters)
    functions = resources_of_type(deployed, "AWS::Lambda::Function")
    grants = {function: role_grants(deployed, function) for function in functions}

    # Then every grant on KMS keys requires the key to carry this stack's tag, except those that
    # make a key (CreateKey, and the TagResource its Tags need), which require the request to tag it
    # so, and ListKeys, which reads no key
    for function, function_grants in grants.items():
        for action, resource, condition in function_grants:
            if not action.startswith("kms:"):
                continue
            conditions = json.loads(condition) if condition else {}
            if action in {"kms:CreateKey", "kms:TagResource"}:
                assert conditions["StringEquals"]["aws:RequestTag/tokenmint:stack"] == "${AWS::StackName}"
                assert conditions["ForAllValues:StringEquals"] == {"aws:TagKeys": ["tokenmint:stack"]}
            elif resource == STACK_ALIASES:
                assert action == "kms:CreateAlias" and not conditions  # the alias side of CreateAlias
            elif action == "kms:ListKeys":
                assert resource == "*" and not conditions  # key ids only; IAM has no resource for it
            else:
                assert resource == KEYS, (function, action)
                assert conditions["StringEquals"]["aws:ResourceTag/tokenmint:stack"] == "${AWS::StackName}"
    # And only the token function may sign
    assert {function for function, function_grants in grants.items()
            if any(action == "kms:Sign" for action, _, _ in function_grants)} == {"TokenFunction"}


def test_multi_region_primary_roles_use_the_global_table_and_the_rotation_replicates(sam_output):
    # Given the primary stack of a multi-region issuer
    deployed = deployed_template(sam_output, **MULTI_REGION)

    # Then every function's table grants name the global table, and the rotation may also replicate
    # the keys this stack owns into the replica regions, and no other region
    for function in FUNCTIONS:
        expected = with_table(EXPECTED_GRANTS[function], "GlobalTable.Arn")
        if function == "KeyRotationFunction":
            expected.add(grant("kms:ReplicateKey", KEYS, REPLICAS_OF_OWNED_KEYS))
        assert role_grants(deployed, function) == expected, function
    (statement,) = [s for policy in role_of(deployed, "KeyRotationFunction")["Policies"]
                    for s in policy["PolicyDocument"]["Statement"] if s["Action"] == "kms:ReplicateKey"]
    assert statement["Condition"]["StringEquals"]["kms:ReplicaRegion"] == {"Ref": "KeyReplicaRegions"}


def test_replica_region_roles_use_the_primary_stacks_table_and_nothing_rotates(sam_output):
    # Given a replica-region stack
    deployed = deployed_template(sam_output, **REPLICA_REGION)

    # Then its functions use the global table by name (the primary stack owns it), with the same
    # grants, and there is no rotation function, role or schedule
    functions = set(resources_of_type(deployed, "AWS::Lambda::Function"))
    assert functions == set(FUNCTIONS) - {"KeyRotationFunction"}
    for function in functions:
        assert role_grants(deployed, function) == with_table(EXPECTED_GRANTS[function], REPLICA_REGION_TABLE)
    assert not resources_of_type(deployed, "AWS::Events::Rule")
    assert not any("KeyRotation" in name for name in deployed["Resources"])


@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_run_python313_on_arm64_with_the_layer(transformed, function):
    properties = transformed["Resources"][function]["Properties"]
    (layer,) = resources_of_type(transformed, "AWS::Lambda::LayerVersion")
    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Layers"] == [{"Ref": layer}]



def test_only_the_registration_function_deploys_with_the_trusted_statement_issuers(transformed):
    # Given each deployed function's environment (SAM merges Globals with the function's own)
    env = {name: transformed["Resources"][name]["Properties"]["Environment"]["Variables"]
           for name in EXPECTED_GRANTS}

    # Then every function has the shared settings, and only registration the trusted issuers
    for variables in env.values():
        assert {"TOKENMINT_BACKEND", "TOKENMINT_TABLE", "TOKENMINT_SIGNING_KEY_ID", "TOKENMINT_STACK"} <= set(variables)
        assert variables["TOKENMINT_STACK"] == {"Ref": "AWS::StackName"}
    assert env["RegistrationFunction"]["TOKENMINT_SOFTWARE_STATEMENT_ISSUERS"] == {"Ref": "SoftwareStatementIssuers"}
    assert [name for name, variables in env.items() if "TOKENMINT_SOFTWARE_STATEMENT_ISSUERS" in variables] == [
        "RegistrationFunction"]


# -- the Lambda authorizer ------------------------------------------------------------------------
def openapi(transformed: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document SAM generates for the HTTP API (its routes and authorizers)."""
    return transformed["Resources"]["HttpApi"]["Properties"]["Body"]


def test_authorizer_is_a_cached_request_authorizer_keyed_by_token_and_route(transformed):
    # Given the HTTP API's one authorizer after the transform
    schemes = openapi(transformed)["components"]["securitySchemes"]
    assert list(schemes) == ["TokenmintAuthorizer"]
    authorizer = schemes["TokenmintAuthorizer"]["x-amazon-apigateway-authorizer"]

    # Then it is a REQUEST authorizer invoking AuthorizerFunction with payload 2.0 and simple responses
    assert authorizer["type"] == "request"
    assert authorizer["authorizerUri"]["Fn::Sub"][1] == {"__FunctionArn__": {"Fn::GetAtt": ["AuthorizerFunction",
                                                                                          "Arn"]}}
    assert authorizer["authorizerPayloadFormatVersion"] == "2.0"
    assert authorizer["enableSimpleResponses"] is True
    # whose cached answers are keyed by the token and the route, for AuthorizerCacheSeconds
    assert authorizer["identitySource"] == ["$request.header.Authorization", "$context.routeKey"]
    assert authorizer["authorizerResultTtlInSeconds"] == {"Ref": "AuthorizerCacheSeconds"}
    # and no invoke role: API Gateway may invoke the function by its resource policy, for this API only
    assert "authorizerCredentials" not in authorizer
    permissions = [resource["Properties"] for resource in
                   resources_of_type(transformed, "AWS::Lambda::Permission").values()
                   if resource["Properties"]["FunctionName"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}]
    assert len(permissions) == 1
    assert permissions[0]["Principal"] == "apigateway.amazonaws.com"
    assert permissions[0]["SourceArn"]["Fn::Sub"][1] == {"__ApiId__": {"Ref": "HttpApi"}}


def test_only_the_authorizer_routes_are_secured_at_the_gateway(transformed):
    # Given the deployed routes
    secured = {path: operation.get("security")
               for path, operations in openapi(transformed)["paths"].items()
               for operation in operations.values()}

    # Then the authorizer guards exactly the /authorized routes, and the OAuth endpoints stay open
    assert {path for path, security in secured.items() if security} == {"/authorized/tools/echo",
                                                                        "/authorized/tools/time"}
    assert secured["/authorized/tools/echo"] == secured["/authorized/tools/time"] == [{"TokenmintAuthorizer": []}]
    assert "security" not in openapi(transformed)  # no default authorizer


# -- the key rotation schedule ------------------------------------------------------------------------
def test_key_rotation_runs_on_an_eventbridge_schedule_from_the_parameter(transformed):
    # Given the deployed rules and the permissions to invoke the rotation function
    (rule_name,) = resources_of_type(transformed, "AWS::Events::Rule")
    rule = transformed["Resources"][rule_name]["Properties"]
    permissions = [resource["Properties"] for resource in resources_of_type(transformed, "AWS::Lambda::Permission").values()
                   if resource["Properties"]["FunctionName"] == {"Ref": "KeyRotationFunction"}]

    # Then one rule runs the rotation function every KeyRotationCheckMinutes, with the scheduled
    # event as it is (no input: a scheduled run never forces a rotation)
    assert rule["ScheduleExpression"] == {"Fn::Sub": "rate(${KeyRotationCheckMinutes} minutes)"}
    assert rule.get("State", "ENABLED") == "ENABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["KeyRotationFunction", "Arn"]}
    assert "Input" not in target and "InputPath" not in target
    # And only EventBridge, for that rule, may invoke it
    assert [(p["Principal"], p["SourceArn"]) for p in permissions] == [
        ("events.amazonaws.com", {"Fn::GetAtt": [rule_name, "Arn"]})]


def test_key_rotation_function_has_no_route_and_the_minute_long_timeout(transformed):
    function = transformed["Resources"]["KeyRotationFunction"]["Properties"]
    assert function["Handler"] == "tokenmint.handlers.key_rotation.lambda_handler"
    assert function["Timeout"] == 60
    openapi_paths = transformed["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
    integrations = json.dumps(openapi_paths)
    assert "KeyRotationFunction" not in integrations
    variables = function["Environment"]["Variables"]
    assert variables["TOKENMINT_KEY_ROTATION_DAYS"] == {"Ref": "KeyRotationDays"}
    assert variables["TOKENMINT_KEY_REPLICA_REGIONS"] == {"Fn::Join": [",", {"Ref": "KeyReplicaRegions"}]}


# -- multi-region: which table, which key -------------------------------------------------------------
def tables(deployed: dict[str, Any]) -> dict[str, str]:
    return {name: resource["Type"] for name, resource in deployed["Resources"].items()
            if resource["Type"].startswith("AWS::DynamoDB::")}


def environments(deployed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: function["Properties"]["Environment"]["Variables"]
            for name, function in resources_of_type(deployed, "AWS::Lambda::Function").items()}


def test_single_region_stack_keeps_its_regional_table_and_single_region_key(sam_output):
    # Given the default parameters (KeyReplicaRegions unset)
    deployed = deployed_template(sam_output)

    # Then the table is the regional AWS::DynamoDB::Table, as before, and every function uses it
    assert tables(deployed) == {"Table": "AWS::DynamoDB::Table"}
    assert {json.dumps(env["TOKENMINT_TABLE"]) for env in environments(deployed).values()} == {'{"Ref": "Table"}'}
    assert deployed["Outputs"]["TableName"]["Value"] == {"Ref": "Table"}
    # And the signing key is single-Region (MultiRegion unset, so a deployed key is not replaced)
    key = deployed["Resources"]["SigningKey"]["Properties"]
    assert "MultiRegion" not in key
    assert "SigningKeyReplica" not in deployed["Resources"]
    assert {json.dumps(env["TOKENMINT_SIGNING_KEY_ID"]) for env in environments(deployed).values()} == {
        '{"Fn::GetAtt": ["SigningKey", "Arn"]}'}


@pytest.mark.parametrize("regions, expected", [
    ("eu-west-1", ["us-east-1", "eu-west-1"]),
    ("eu-west-1,ap-southeast-2", ["us-east-1", "eu-west-1", "ap-southeast-2"]),
])
def test_multi_region_primary_stack_owns_a_global_table_with_a_replica_per_region(sam_output, regions, expected):
    # Given a primary stack with replica regions
    deployed = deployed_template(sam_output, KeyReplicaRegions=regions)
    evaluator = Evaluator(sam_output, parameter_values(sam_output, KeyReplicaRegions=regions))

    # Then the table is a global table with a replica here and in each replica region, and every
    # function (and the TableName output) uses it
    assert tables(deployed) == {"GlobalTable": "AWS::DynamoDB::GlobalTable"}
    table = deployed["Resources"]["GlobalTable"]
    replicas = evaluator.value(table["Properties"]["Replicas"])
    assert [replica["Region"] for replica in replicas] == expected
    assert {json.dumps(env["TOKENMINT_TABLE"]) for env in environments(deployed).values()} == {
        '{"Ref": "GlobalTable"}'}
    assert deployed["Outputs"]["TableName"]["Value"] == {"Ref": "GlobalTable"}
    # With the regional table's keys, index and protections, in every replica
    regional = load_template()["Resources"]["Table"]["Properties"]
    properties = table["Properties"]
    for name in ("BillingMode", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "SSESpecification",
                 "TimeToLiveSpecification"):
        assert properties[name] == regional[name], name
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    assert properties["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    for replica in replicas:
        assert replica["PointInTimeRecoverySpecification"] == regional["PointInTimeRecoverySpecification"]
        assert replica["DeletionProtectionEnabled"] == "true"
    # Named after the stack, so that the replica-region stacks find it
    assert evaluator.value(properties["TableName"]) == "tokenmint-table"
    # And the signing key is a multi-Region primary key; the rotation replicates to the same regions
    assert deployed["Resources"]["SigningKey"]["Properties"]["MultiRegion"] is True
    rotation = environments(deployed)["KeyRotationFunction"]
    assert evaluator.value(rotation["TOKENMINT_KEY_REPLICA_REGIONS"]) == regions


def test_replica_region_stack_reads_the_primarys_global_table_and_signs_with_a_key_replica(sam_output):
    # Given a replica-region stack (same stack name as the primary)
    deployed = deployed_template(sam_output, **REPLICA_REGION)
    evaluator = Evaluator(sam_output, parameter_values(sam_output, **REPLICA_REGION))
    primary = Evaluator(sam_output, parameter_values(sam_output, **MULTI_REGION))

    # Then it creates no table and uses the primary's global table, by its name
    assert tables(deployed) == {}
    (table,) = {json.dumps(env["TOKENMINT_TABLE"]) for env in environments(deployed).values()}
    assert evaluator.value(json.loads(table)) == primary.value(
        sam_output["Resources"]["GlobalTable"]["Properties"]["TableName"]) == "tokenmint-table"
    # And its signing key is a replica of the primary's deployed key, tagged for its own policies
    assert "SigningKey" not in deployed["Resources"]
    replica = deployed["Resources"]["SigningKeyReplica"]
    assert replica["Type"] == "AWS::KMS::ReplicaKey"
    assert replica["Properties"]["PrimaryKeyArn"] == {"Ref": "PrimarySigningKeyArn"}
    assert replica["Properties"]["Tags"] == [{"Key": "tokenmint:stack", "Value": {"Ref": "AWS::StackName"}}]
    assert {json.dumps(env["TOKENMINT_SIGNING_KEY_ID"]) for env in environments(deployed).values()} == {
        '{"Fn::GetAtt": ["SigningKeyReplica", "Arn"]}'}
    assert deployed["Resources"]["SigningKeyAlias"]["Properties"]["TargetKeyId"] == {"Ref": "SigningKeyReplica"}
    assert "KeyRotationFunction" not in deployed["Outputs"]


def test_a_replica_region_stack_without_the_primary_key_is_refused(sam_output):
    without_key = {name: value for name, value in REPLICA_REGION.items() if name != "PrimarySigningKeyArn"}
    assert failed_rules(sam_output, **without_key) == ["ReplicaRegionStackNeedsThePrimaryKey"]
    assert failed_rules(sam_output, **REPLICA_REGION) == []
    assert failed_rules(sam_output) == [] == failed_rules(sam_output, **MULTI_REGION)
