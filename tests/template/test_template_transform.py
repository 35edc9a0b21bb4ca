"""The SAM transform of template.yaml, and least privilege: each function's role allows exactly the
calls its code makes (DESIGN.md, security rules)."""

from __future__ import annotations

from typing import Any

import pytest
from samtranslator.translator.transform import transform

from support.template import load_template, resources_of_type

BASIC_EXECUTION_ROLE = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"

# (action, resource) pairs each function's role must allow, and nothing else.
# TokenFunction: GetItem (the client), Query (the resource registry), UpdateItem (the client's
# usage stamp), Sign (the token) and GetPublicKey (the kid). DiscoveryFunction: Query
# (scopes_supported), GetPublicKey (the JWKS). RegistrationFunction: GetItem (the initial access
# token, the client), PutItem (an update), and the items of its TransactWriteItems calls, which IAM
# authorises one by one: UpdateItem + PutItem (register: spend the token, create the client),
# DeleteItem + PutItem (delete: the client, its deletion mark). It uses no ConditionCheck item, so
# no dynamodb:ConditionCheckItem; it never lists (no Query) and never signs (no KMS).
# RevocationFunction: GetItem (the calling client; the token's client and revocation entry, read
# by the revocation check), PutItem (the revocation entry), GetPublicKey (verifying the token).
# IntrospectionFunction: the same reads, and no write. ToolsFunction and AuthorizerFunction: GetItem
# (the revocation check: the token's revocation entry and client) and GetPublicKey. Only the token
# function signs.
EXPECTED_GRANTS = {
    "TokenFunction": {
        ("dynamodb:GetItem", "Table.Arn"),
        ("dynamodb:Query", "Table.Arn"),
        ("dynamodb:UpdateItem", "Table.Arn"),
        ("kms:Sign", "SigningKey.Arn"),
        ("kms:GetPublicKey", "SigningKey.Arn"),
    },
    "DiscoveryFunction": {
        ("dynamodb:Query", "Table.Arn"),
        ("kms:GetPublicKey", "SigningKey.Arn"),
    },
    "RegistrationFunction": {
        ("dynamodb:GetItem", "Table.Arn"),
        ("dynamodb:PutItem", "Table.Arn"),
        ("dynamodb:UpdateItem", "Table.Arn"),
        ("dynamodb:DeleteItem", "Table.Arn"),
    },
    "RevocationFunction": {
        ("dynamodb:GetItem", "Table.Arn"),
        ("dynamodb:PutItem", "Table.Arn"),
        ("kms:GetPublicKey", "SigningKey.Arn"),
    },
    "IntrospectionFunction": {
        ("dynamodb:GetItem", "Table.Arn"),
        ("kms:GetPublicKey", "SigningKey.Arn"),
    },
    "ToolsFunction": {
        ("dynamodb:GetItem", "Table.Arn"),
        ("kms:GetPublicKey", "SigningKey.Arn"),
    },
    "AuthorizerFunction": {
        ("dynamodb:GetItem", "Table.Arn"),
        ("kms:GetPublicKey", "SigningKey.Arn"),
    },
}


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
def transformed() -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        return sam_transform(load_template())


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resource_name(resource: Any) -> str:
    """{"Fn::GetAtt": ["Table", "Arn"]} → "Table.Arn"; anything else as it is written."""
    if isinstance(resource, dict) and list(resource) == ["Fn::GetAtt"]:
        return ".".join(resource["Fn::GetAtt"])
    return repr(resource)


def role_grants(transformed: dict[str, Any], function: str) -> set[tuple[str, str]]:
    role_ref = transformed["Resources"][function]["Properties"]["Role"]
    role = transformed["Resources"][role_ref["Fn::GetAtt"][0]]["Properties"]
    grants = set()
    for policy in role.get("Policies", ()):
        for statement in _as_list(policy["PolicyDocument"]["Statement"]):
            # Only plain Allow statements: a Deny, NotAction or NotResource would need its own review.
            assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, statement
            assert statement["Effect"] == "Allow"
            for action in _as_list(statement["Action"]):
                for resource in _as_list(statement["Resource"]):
                    grants.add((action, _resource_name(resource)))
    return grants


def test_transform_produces_the_deployed_resources(transformed):
    # Given the translated template, then it holds the API, its $default stage, the seven
    # functions with a role each, and the dependency layer
    types = {name: resource["Type"] for name, resource in transformed["Resources"].items()}
    assert types["HttpApi"] == "AWS::ApiGatewayV2::Api"
    assert {types[name] for name in EXPECTED_GRANTS} == {"AWS::Lambda::Function"}
    assert list(types.values()).count("AWS::IAM::Role") == len(EXPECTED_GRANTS) == 7
    assert list(types.values()).count("AWS::Lambda::LayerVersion") == 1
    stages = resources_of_type(transformed, "AWS::ApiGatewayV2::Stage")
    assert [stage["Properties"]["StageName"] for stage in stages.values()] == ["$default"]


def test_default_stage_throttles_with_the_parameters(transformed):
    (stage,) = resources_of_type(transformed, "AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"},
    }


@pytest.mark.parametrize("function", sorted(EXPECTED_GRANTS))
def test_function_role_allows_exactly_what_the_function_calls(transformed, function):
    # Given the function's role after the transform
    role_ref = transformed["Resources"][function]["Properties"]["Role"]
    role = transformed["Resources"][role_ref["Fn::GetAtt"][0]]["Properties"]

    # Then its only managed policy is the basic execution role (CloudWatch Logs)
    assert role["ManagedPolicyArns"] == [BASIC_EXECUTION_ROLE]
    # And its inline policies allow exactly the expected actions on exactly the expected resources
    assert role_grants(transformed, function) == EXPECTED_GRANTS[function]


def test_every_function_is_reviewed(transformed):
    functions = set(resources_of_type(transformed, "AWS::Lambda::Function"))
    assert functions == set(EXPECTED_GRANTS)


@pytest.mark.parametrize("function", sorted(EXPECTED_GRANTS))
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
        assert {"TOKENMINT_BACKEND", "TOKENMINT_TABLE", "TOKENMINT_SIGNING_KEY_ID"} <= set(variables)
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
