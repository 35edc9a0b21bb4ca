"""The stateful resources and the configuration the functions receive: table, signing key,
parameters, environment and outputs agree with the code that uses them."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from support.template import (
    Evaluator,
    kms_key_spec,
    load_template,
    parameter_values,
    signing_key_spec_mapping,
    table_create_kwargs,
)
from tokenmint.adapters.aws import dynamodb
from tokenmint.adapters.aws.kms import KMS_ALGORITHMS, STACK_TAG
from tokenmint.config import Settings, validate_issuer
from tokenmint.keys import PREPUBLISH
from tokenmint.handlers.tools import METADATA_PATH as TOOLS_METADATA_PATH
from tokenmint.handlers.tools import TOOLS_PATH
from tokenmint.oauth.jwk import SIGNING_ALGORITHMS
from tokenmint.oauth.metadata import (
    INTROSPECTION_PATH,
    JWKS_PATH,
    METADATA_PATHS,
    REGISTRATION_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
)
from tokenmint.routes import SAMPLE_AUTHORIZER_ROUTES

ALGORITHMS = {"RS256", "PS256", "ES256", "EdDSA"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


# -- table ------------------------------------------------------------------------------------
def test_table_is_durable_encrypted_and_on_demand(template):
    table = template["Resources"]["Table"]
    properties = table["Properties"]
    # the single-region stack's table (multi-region: GlobalTable; tests/template/test_template_transform.py)
    assert table["Condition"] == "HasRegionalTable"
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert properties["DeletionProtectionEnabled"] == {"Ref": "TableDeletionProtection"}
    parameter = template["Parameters"]["TableDeletionProtection"]
    assert parameter["Default"] == "true" and sorted(parameter["AllowedValues"]) == ["false", "true"]


def test_table_keys_are_the_ones_the_dynamodb_adapter_uses():
    kwargs = table_create_kwargs("tokenmint-test")
    assert kwargs["TableName"] == "tokenmint-test"
    assert kwargs["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                   {"AttributeName": "sk", "KeyType": "RANGE"}]
    (index,) = kwargs["GlobalSecondaryIndexes"]
    assert index["IndexName"] == dynamodb.GSI1
    assert index["KeySchema"] == [{"AttributeName": "gsi1pk", "KeyType": "HASH"},
                                  {"AttributeName": "gsi1sk", "KeyType": "RANGE"}]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    assert {d["AttributeName"]: d["AttributeType"] for d in kwargs["AttributeDefinitions"]} == {
        "pk": "S", "sk": "S", "gsi1pk": "S", "gsi1sk": "S"}


def test_table_create_kwargs_create_the_table_under_moto():
    # Given the kwargs the integration tests create their table with
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        # When DynamoDB (moto) creates it
        client.create_table(**table_create_kwargs("tokenmint-test"))
        table = client.describe_table(TableName="tokenmint-test")["Table"]

    # Then it has the template's keys and index
    assert table["KeySchema"] == table_create_kwargs("tokenmint-test")["KeySchema"]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == [dynamodb.GSI1]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


# -- signing key ------------------------------------------------------------------------------
def test_key_spec_mapping_covers_exactly_the_signing_algorithms(template):
    mapping = signing_key_spec_mapping(template)
    assert set(mapping) == ALGORITHMS == set(SIGNING_ALGORITHMS) == set(KMS_ALGORITHMS)
    assert set(template["Parameters"]["SigningAlgorithm"]["AllowedValues"]) == ALGORITHMS
    assert template["Parameters"]["SigningAlgorithm"]["Default"] == "RS256"


@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_key_spec_is_the_one_the_kms_adapter_signs_with(alg):
    assert kms_key_spec(alg) == KMS_ALGORITHMS[alg][0]


def test_kms_key_spec_of_an_unknown_algorithm_is_an_error():
    with pytest.raises(KeyError):
        kms_key_spec("HS256")


def test_signing_key_is_an_asymmetric_signing_key(template):
    key = template["Resources"]["SigningKey"]["Properties"]
    assert key["KeyUsage"] == "SIGN_VERIFY"
    assert key["KeySpec"]["Fn::FindInMap"][1] == {"Ref": "SigningAlgorithm"}
    assert key["PendingWindowInDays"] == 30
    (statement,) = key["KeyPolicy"]["Statement"]
    assert statement["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    alias = template["Resources"]["SigningKeyAlias"]["Properties"]
    assert alias == {"AliasName": {"Fn::Sub": "alias/${AWS::StackName}-signing"},
                     "TargetKeyId": {"Fn::If": ["IsPrimaryRegion", {"Ref": "SigningKey"}, {"Ref": "SigningKeyReplica"}]}}


def test_signing_keys_carry_the_stack_tag_the_policies_require(template):
    # The deployed key (and a replica-region stack's replica of it) are tagged like the keys the
    # rotation creates (adapters/aws/kms.py STACK_TAG), so the functions' tag conditions cover them
    for name in ("SigningKey", "SigningKeyReplica"):
        tags = template["Resources"][name]["Properties"]["Tags"]
        assert tags == [{"Key": STACK_TAG, "Value": {"Ref": "AWS::StackName"}}], name
    # a multi-Region key only when there are replica regions; unset otherwise, as before
    assert template["Resources"]["SigningKey"]["Properties"]["MultiRegion"] == {
        "Fn::If": ["IsMultiRegion", True, {"Ref": "AWS::NoValue"}]}
    assert template["Resources"]["SigningKey"]["Condition"] == "IsPrimaryRegion"
    assert template["Resources"]["SigningKeyReplica"]["Condition"] == "IsReplicaRegion"


# -- configuration the functions receive --------------------------------------------------------
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0a1b2c3d-0000-4000-8000-000000000000"
# What the template's resources resolve to in a deployed stack (a Ref or "Resource.Attribute").
DEPLOYED_RESOURCES = {"Table": "tokenmint-Table-1A2B3C", "GlobalTable": "tokenmint-table",
                      "SigningKey.Arn": KEY_ARN,
                      "SigningKeyReplica.Arn": "arn:aws:kms:eu-west-1:123456789012:key/mrk-0123456789abcdef0123456789abcdef"}


def deployed_environment(template: dict[str, Any], function: str | None = None, **parameters: str) -> dict[str, str]:
    """Globals.Function's environment as a deployed stack would resolve it; with ``function``, that
    function's environment (Globals merged with its own variables, as SAM merges them)."""
    evaluator = Evaluator(template, parameter_values(template, **parameters), DEPLOYED_RESOURCES)
    variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    if function is not None:
        properties = template["Resources"][function]["Properties"]
        variables.update(properties.get("Environment", {}).get("Variables", {}))
    return {name: str(evaluator.value(value)) for name, value in variables.items()}


def test_functions_get_every_setting_the_aws_backend_needs(template):
    # Given the environment a deployed function sees with the default parameters
    env = deployed_environment(template)

    # When the function reads its settings
    settings = Settings.from_env(env)

    # Then it runs on the aws backend, with the stack's table and key, and the issuer from the request
    assert settings.backend == "aws"
    assert settings.table_name == "tokenmint-Table-1A2B3C"
    assert settings.signing_key_id.startswith("arn:aws:kms:")
    assert settings.signing_alg == "RS256"
    assert settings.issuer is None
    assert settings.resource_cache_seconds == 30.0
    # and the stack name, which tags the keys the functions may use and prefixes their aliases
    assert settings.stack_name == "tokenmint" == env["TOKENMINT_STACK"]
    assert env["POWERTOOLS_SERVICE_NAME"] == "tokenmint"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"


@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_every_allowed_signing_algorithm_is_a_valid_setting(template, alg):
    assert Settings.from_env(deployed_environment(template, SigningAlgorithm=alg)).signing_alg == alg


def function_names(template: dict[str, Any]) -> list[str]:
    return sorted(name for name, resource in template["Resources"].items()
                  if resource["Type"] == "AWS::Serverless::Function")


# Each function's own variables (on top of Globals): only what that function reads.
OWN_ENVIRONMENT = {
    # the mutual-TLS alias (RFC 8705 §5; tests/template/test_template_mtls.py)
    "TokenFunction": {"TOKENMINT_MTLS_BASE_URL"},
    "DiscoveryFunction": {"TOKENMINT_MTLS_BASE_URL"},
    "RegistrationFunction": {"TOKENMINT_SOFTWARE_STATEMENT_ISSUERS"},
    "RevocationFunction": {"TOKENMINT_MTLS_BASE_URL"},
    "IntrospectionFunction": {"TOKENMINT_MTLS_BASE_URL"},
    "ToolsFunction": {"TOKENMINT_TOOLS_RESOURCE", "TOKENMINT_CHECK_REVOCATION"},
    "AuthorizerFunction": {"TOKENMINT_AUTHORIZER_ROUTES", "TOKENMINT_AUTHORIZER_AUDIENCE", "TOKENMINT_AUTHORIZER_CACHE_SECONDS",
                           "TOKENMINT_CHECK_REVOCATION"},
    "KeyRotationFunction": {"TOKENMINT_KEY_ROTATION_DAYS", "TOKENMINT_KEY_REPLICA_REGIONS"},
}


def test_only_the_registration_function_gets_the_software_statement_issuers(template):
    # Given each function's own environment (on top of Globals)
    own = {name: set(template["Resources"][name]["Properties"].get("Environment", {}).get("Variables", {}))
           for name in function_names(template)}

    # Then every function gets only its own settings: the trusted issuers reach the registration
    # function and no other (nor Globals); the resource-server settings reach the tools API and the
    # authorizer only
    assert own == OWN_ENVIRONMENT
    for name in OWN_ENVIRONMENT["ToolsFunction"] | OWN_ENVIRONMENT["AuthorizerFunction"]:
        assert name not in template["Globals"]["Function"]["Environment"]["Variables"]
    assert "TOKENMINT_SOFTWARE_STATEMENT_ISSUERS" not in template["Globals"]["Function"]["Environment"]["Variables"]
    variables = template["Resources"]["RegistrationFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["TOKENMINT_SOFTWARE_STATEMENT_ISSUERS"] == {"Ref": "SoftwareStatementIssuers"}


def test_software_statement_issuers_parameter_defaults_to_trusting_no_one(template):
    parameter = template["Parameters"]["SoftwareStatementIssuers"]
    assert parameter["Type"] == "String"
    assert parameter["Default"] == "{}"
    assert "JWK Set" in parameter["Description"]
    settings = Settings.from_env(deployed_environment(template, "RegistrationFunction"))
    assert settings.software_statement_issuers == {}
    assert settings.backend == "aws" and settings.table_name == "tokenmint-Table-1A2B3C"


def test_registration_function_reads_trusted_issuers_from_the_parameter(template):
    # RFC 8037 §A.2's Ed25519 public key
    key = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    issuers = json.dumps({"https://statements.example.com": {"keys": [key]}})
    settings = Settings.from_env(
        deployed_environment(template, "RegistrationFunction", SoftwareStatementIssuers=issuers))
    assert list(settings.software_statement_issuers) == ["https://statements.example.com"]


@pytest.mark.parametrize("function", sorted(OWN_ENVIRONMENT))
def test_every_function_has_a_retained_log_group_with_the_retention_parameter(template, function):
    groups = {name: resource for name, resource in template["Resources"].items()
              if resource["Type"] == "AWS::Logs::LogGroup"}
    assert set(groups) == {f"{name}LogGroup" for name in function_names(template)}
    group = groups[f"{function}LogGroup"]
    assert group["DeletionPolicy"] == group["UpdateReplacePolicy"] == "Retain"
    # deployed with its function (the rotation function: primary region only)
    assert group.get("Condition") == template["Resources"][function].get("Condition")
    assert group["Properties"] == {"LogGroupName": {"Fn::Sub": f"/aws/lambda/${{{function}}}"},
                                   "RetentionInDays": {"Ref": "LogRetentionInDays"}}


# -- the sample tools API and the Lambda authorizer (resource-server settings) ------------------------
def test_tools_and_authorizer_settings_default_to_the_tools_api_with_revocation_checks(template):
    # Given the tools API's and the authorizer's environment with the default parameters
    tools = Settings.from_env(deployed_environment(template, "ToolsFunction"))
    authorizer = Settings.from_env(deployed_environment(template, "AuthorizerFunction"))

    # Then both protect <issuer>/tools (empty ToolsResource), checking revocation
    assert tools.tools_resource is None and authorizer.authorizer_audience is None
    assert tools.check_revocation is authorizer.check_revocation is True
    assert tools.backend == authorizer.backend == "aws"
    # And the authorizer requires exactly the scopes routes.py names for each route
    assert authorizer.authorizer_routes == {route: tuple(scopes.split())
                                            for route, scopes in SAMPLE_AUTHORIZER_ROUTES.items()}


def test_tools_resource_and_check_revocation_parameters_reach_both_functions(template):
    parameters = {"ToolsResource": "https://tools.example.com/mcp", "CheckRevocation": "false"}
    tools = Settings.from_env(deployed_environment(template, "ToolsFunction", **parameters))
    authorizer = Settings.from_env(deployed_environment(template, "AuthorizerFunction", **parameters))
    assert tools.tools_resource == authorizer.authorizer_audience == "https://tools.example.com/mcp"
    assert tools.check_revocation is authorizer.check_revocation is False


def test_resource_server_parameters(template):
    parameters = template["Parameters"]
    tools_resource = parameters["ToolsResource"]
    assert tools_resource["Type"] == "String" and tools_resource["Default"] == ""
    pattern = re.compile(tools_resource["AllowedPattern"])
    for accepted in ("", "https://tools.example.com", "https://tools.example.com/mcp"):
        assert pattern.fullmatch(accepted), accepted
    for refused in ("http://tools.example.com", "https://tools.example.com/mcp#x", "https://x.example.com?a=1",
                    "tools.example.com"):
        assert not pattern.fullmatch(refused), refused
    check = parameters["CheckRevocation"]
    assert check["Default"] == "true" and sorted(check["AllowedValues"]) == ["false", "true"]
    cache = parameters["AuthorizerCacheSeconds"]
    # API Gateway: 0 disables the authorizer cache, 3600 is the most it keeps an answer
    assert (cache["Type"], cache["Default"], cache["MinValue"], cache["MaxValue"]) == ("Number", 60, 0, 3600)
    assert "revoked" in cache["Description"]


def issuer_pattern(template: dict[str, Any]) -> re.Pattern[str]:
    # CloudFormation matches AllowedPattern against the whole value.
    return re.compile(template["Parameters"]["IssuerUrl"]["AllowedPattern"])


@pytest.mark.parametrize("issuer", ["https://auth.example.com", "https://example.com/tenants/a1"])
def test_issuer_parameter_accepts_issuers_the_code_accepts_unchanged(template, issuer):
    assert issuer_pattern(template).fullmatch(issuer)
    assert validate_issuer(issuer) == issuer
    assert Settings.from_env(deployed_environment(template, IssuerUrl=issuer)).issuer == issuer


@pytest.mark.parametrize("issuer", ["http://auth.example.com", "https://auth.example.com/",
                                    "https://auth.example.com?tenant=a", "https://auth.example.com#x",
                                    "https://", "auth.example.com"])
def test_issuer_parameter_rejects_what_is_not_an_issuer(template, issuer):
    assert not issuer_pattern(template).fullmatch(issuer)


def test_issuer_parameter_defaults_to_the_api_domain(template):
    assert template["Parameters"]["IssuerUrl"]["Default"] == ""
    assert issuer_pattern(template).fullmatch("")


# -- outputs ------------------------------------------------------------------------------------
def test_outputs_name_the_endpoints_the_metadata_publishes(template):
    outputs = template["Outputs"]
    assert set(outputs) == {"Issuer", "TokenEndpoint", "JwksUri", "MetadataUrl", "RegistrationEndpoint",
                            "RevocationEndpoint", "IntrospectionEndpoint", "ToolsApi", "ToolsResourceMetadata",
                            "TableName", "SigningKeyArn", "KeyRotationFunction",
                            "MtlsBaseUrl", "MtlsDnsTarget", "MtlsDnsHostedZoneId",  # test_template_mtls.py
                            "DashboardUrl"}  # test_template_monitoring.py
    issuer = outputs["Issuer"]["Value"]
    assert issuer == {"Fn::If": ["HasIssuerUrl", {"Ref": "IssuerUrl"},
                                 {"Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"}]}
    for output, path in (("TokenEndpoint", TOKEN_PATH), ("JwksUri", JWKS_PATH), ("MetadataUrl", METADATA_PATHS[0]),
                         ("RegistrationEndpoint", REGISTRATION_PATH), ("RevocationEndpoint", REVOCATION_PATH),
                         ("IntrospectionEndpoint", INTROSPECTION_PATH), ("ToolsApi", TOOLS_PATH),
                         ("ToolsResourceMetadata", TOOLS_METADATA_PATH)):
        assert outputs[output]["Value"] == {"Fn::Sub": ["${Issuer}" + path, {"Issuer": issuer}]}
    assert outputs["TableName"]["Value"] == {"Fn::If": ["HasRegionalTable", {"Ref": "Table"}, {
        "Fn::If": ["HasGlobalTable", {"Ref": "GlobalTable"}, {"Fn::Sub": "${AWS::StackName}-table"}]}]}
    assert outputs["SigningKeyArn"]["Value"] == {"Fn::If": ["IsPrimaryRegion", {"Fn::GetAtt": ["SigningKey", "Arn"]},
                                                            {"Fn::GetAtt": ["SigningKeyReplica", "Arn"]}]}
    assert outputs["KeyRotationFunction"] == {
        "Condition": "IsPrimaryRegion", "Description": outputs["KeyRotationFunction"]["Description"],
        "Value": {"Ref": "KeyRotationFunction"}}
    assert template["Conditions"]["HasIssuerUrl"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "IssuerUrl"}, ""]}]}


# -- key lifecycle and multi-region parameters -------------------------------------------------------
def test_key_rotation_parameters_reach_the_rotation_function(template):
    parameters = template["Parameters"]
    days, minutes = parameters["KeyRotationDays"], parameters["KeyRotationCheckMinutes"]
    assert (days["Type"], days["Default"], days["MinValue"]) == ("Number", 30, 1)
    # a next key is promoted at the first check PREPUBLISH after its creation: the checks come at
    # least hourly; "rate(1 minutes)" is no valid rate expression, so at least 2
    assert (minutes["Type"], minutes["Default"], minutes["MinValue"], minutes["MaxValue"]) == ("Number", 60, 2, 60)
    assert PREPUBLISH <= minutes["MaxValue"] * 60 <= 4 * PREPUBLISH

    settings = Settings.from_env(deployed_environment(template, "KeyRotationFunction"))
    assert (settings.key_rotation_days, settings.key_replica_regions) == (30, ())
    settings = Settings.from_env(deployed_environment(template, "KeyRotationFunction", KeyRotationDays="7",
                                                      KeyReplicaRegions="eu-west-1,ap-southeast-2"))
    assert (settings.key_rotation_days, settings.key_replica_regions) == (7, ("eu-west-1", "ap-southeast-2"))
    assert settings.stack_name == "tokenmint"


def test_multi_region_parameters_and_conditions(template):
    parameters = template["Parameters"]
    regions = parameters["KeyReplicaRegions"]
    assert (regions["Type"], regions["Default"]) == ("CommaDelimitedList", "")
    primary = parameters["IsPrimaryRegion"]
    assert (primary["Type"], primary["Default"], sorted(primary["AllowedValues"])) == ("String", "true",
                                                                                       ["false", "true"])
    pattern = re.compile(parameters["PrimarySigningKeyArn"]["AllowedPattern"])
    assert parameters["PrimarySigningKeyArn"]["Default"] == ""
    assert pattern.fullmatch("") and pattern.fullmatch(
        "arn:aws:kms:us-east-1:123456789012:key/mrk-0123456789abcdef0123456789abcdef")
    assert not pattern.fullmatch(KEY_ARN)  # a single-Region key cannot be replicated

    def conditions(**values: str) -> dict[str, bool]:
        evaluator = Evaluator(template, parameter_values(template, **values))
        return {name: evaluator.condition(name) for name in ("IsMultiRegion", "IsPrimaryRegion", "IsReplicaRegion",
                                                             "HasRegionalTable", "HasGlobalTable",
                                                             "HasSecondReplicaRegion")}

    assert conditions() == {"IsMultiRegion": False, "IsPrimaryRegion": True, "IsReplicaRegion": False,
                            "HasRegionalTable": True, "HasGlobalTable": False, "HasSecondReplicaRegion": False}
    assert conditions(KeyReplicaRegions="eu-west-1") == {
        "IsMultiRegion": True, "IsPrimaryRegion": True, "IsReplicaRegion": False,
        "HasRegionalTable": False, "HasGlobalTable": True, "HasSecondReplicaRegion": False}
    assert conditions(KeyReplicaRegions="eu-west-1,ap-southeast-2")["HasSecondReplicaRegion"] is True
    assert conditions(IsPrimaryRegion="false", KeyReplicaRegions="eu-west-1") == {
        "IsMultiRegion": True, "IsPrimaryRegion": False, "IsReplicaRegion": True,
        "HasRegionalTable": False, "HasGlobalTable": False, "HasSecondReplicaRegion": False}


def test_replica_region_stack_settings_name_the_primarys_table_and_the_local_key_replica(template):
    env = deployed_environment(template, "TokenFunction", IsPrimaryRegion="false", KeyReplicaRegions="eu-west-1",
                               PrimarySigningKeyArn="arn:aws:kms:us-east-1:123456789012:key/mrk-"
                                                    "0123456789abcdef0123456789abcdef")
    settings = Settings.from_env(env)
    assert settings.table_name == "tokenmint-table"  # the GlobalTable's name in the primary stack
    assert settings.signing_key_id == DEPLOYED_RESOURCES["SigningKeyReplica.Arn"]
    assert settings.stack_name == "tokenmint"


def test_abuse_resistance_parameters_reach_every_function_that_authenticates(template):
    # Given the defaults, then the functions throttle as README documents
    settings = Settings.from_env(deployed_environment(template))
    assert (settings.auth_failure_window, settings.auth_failures_per_client_source, settings.auth_failures_per_source,
            settings.registrations_per_source) == (60, 30, 100, 20)
    # and the parameters change them (through Globals: token, revocation, introspection, registration)
    tuned = Settings.from_env(deployed_environment(template, AuthFailureWindowSeconds="300",
                                                   AuthFailuresPerClientAndSource="10", AuthFailuresPerSource="0",
                                                   RegistrationsPerSource="5"))
    assert (tuned.auth_failure_window, tuned.auth_failures_per_client_source, tuned.auth_failures_per_source,
            tuned.registrations_per_source) == (300, 10, 0, 5)
    parameters = template["Parameters"]
    assert parameters["AuthFailureWindowSeconds"]["MinValue"] == 1
    assert all(parameters[name]["MinValue"] == 0 for name in
               ("AuthFailuresPerClientAndSource", "AuthFailuresPerSource", "RegistrationsPerSource"))
