"""The optional mutual-TLS custom domain (RFC 8705): off by default; with its parameters, an API Gateway
custom domain verifying client certificates against the S3 truststore, mapped to the HTTP API's $default
stage, and its URL in the environment of the functions that publish or accept mTLS (mtls_endpoint_aliases)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from support.template import deployed_template, failed_rules, load_template, resources_of_type
from tokenmint.config import Settings

MTLS = {"MtlsDomainName": "mtls.auth.example.com",
        "MtlsCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0000-4000-8000-000000000000",
        "MtlsTruststoreUri": "s3://example-truststores/tokenmint/truststore.pem",
        "IssuerUrl": "https://abc123.execute-api.us-east-1.amazonaws.com"}
# The functions that publish the aliases (discovery) or authenticate clients (token, revocation, introspection).
PUBLISHING = {"TokenFunction", "DiscoveryFunction", "RevocationFunction", "IntrospectionFunction"}
DOMAIN_TYPES = {"AWS::ApiGatewayV2::DomainName", "AWS::ApiGatewayV2::ApiMapping"}


@pytest.fixture(scope="module")
def sam_output() -> dict[str, Any]:
    """template.yaml through the SAM transform (code paths as `sam package` leaves them), every condition kept."""
    template = load_template()
    for resource in template["Resources"].values():
        for uri in ("CodeUri", "ContentUri"):
            if uri in resource.get("Properties", {}):
                resource["Properties"][uri] = "s3://tokenmint-artifacts/code.zip"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        return transform(template, {}, None)


def environment(deployed: dict[str, Any], function: str) -> dict[str, Any]:
    return deployed["Resources"][function]["Properties"]["Environment"]["Variables"]


def test_by_default_there_is_no_mtls_domain_and_no_alias(sam_output):
    # Given the stack deployed with the default parameters
    deployed = deployed_template(sam_output)

    # Then it has no custom domain, no mapping, no mTLS output, and no function is told of an alias
    assert not [name for name, resource in deployed["Resources"].items() if resource["Type"] in DOMAIN_TYPES]
    assert not [name for name in deployed["Outputs"] if name.startswith("Mtls")]
    for function in resources_of_type(deployed, "AWS::Lambda::Function"):
        assert environment(deployed, function).get("TOKENMINT_MTLS_BASE_URL", "") == "", function
    assert Settings.from_env({"TOKENMINT_MTLS_BASE_URL": ""}).mtls_base_url is None


def test_with_its_parameters_the_mtls_domain_verifies_clients_against_the_truststore(sam_output):
    # Given the stack deployed with an mTLS domain
    deployed = deployed_template(sam_output, **MTLS, MtlsTruststoreVersion="3HL4kqtJlcpXroDTDmJ")

    # Then there is one regional custom domain with the ACM certificate and TLS 1.2, whose mutual TLS
    # reads the truststore (at the given object version) from S3
    ((name, domain),) = resources_of_type(deployed, "AWS::ApiGatewayV2::DomainName").items()
    properties = domain["Properties"]
    assert properties["DomainName"] == {"Ref": "MtlsDomainName"}
    assert properties["DomainNameConfigurations"] == [{"CertificateArn": {"Ref": "MtlsCertificateArn"},
                                                        "EndpointType": "REGIONAL", "SecurityPolicy": "TLS_1_2"}]
    assert properties["MutualTlsAuthentication"] == {"TruststoreUri": {"Ref": "MtlsTruststoreUri"},
                                                     "TruststoreVersion": {"Ref": "MtlsTruststoreVersion"}}
    # And one mapping puts the whole API ($default stage, no path prefix) at the domain's root
    (mapping,) = resources_of_type(deployed, "AWS::ApiGatewayV2::ApiMapping").values()
    (stage_name,) = resources_of_type(deployed, "AWS::ApiGatewayV2::Stage")
    assert deployed["Resources"][stage_name]["Properties"]["StageName"] == "$default"
    assert mapping["Properties"] == {"DomainName": {"Ref": name}, "ApiId": {"Ref": "HttpApi"},
                                     "Stage": {"Ref": stage_name}}
    # And the default execute-api endpoint stays on, for clients without certificates
    assert deployed["Resources"]["HttpApi"]["Properties"].get("DisableExecuteApiEndpoint") in (None, False)
    # And the outputs give the alias base URL and where DNS must point
    outputs = deployed["Outputs"]
    assert outputs["MtlsBaseUrl"]["Value"] == {"Fn::Sub": "https://${MtlsDomainName}"}
    assert outputs["MtlsDnsTarget"]["Value"] == {"Fn::GetAtt": [name, "RegionalDomainName"]}
    assert outputs["MtlsDnsHostedZoneId"]["Value"] == {"Fn::GetAtt": [name, "RegionalHostedZoneId"]}
    assert not failed_rules(sam_output, **MTLS)


def test_without_a_truststore_version_the_property_is_left_out(sam_output):
    deployed = deployed_template(sam_output, **MTLS)
    (domain,) = resources_of_type(deployed, "AWS::ApiGatewayV2::DomainName").values()
    assert domain["Properties"]["MutualTlsAuthentication"] == {"TruststoreUri": {"Ref": "MtlsTruststoreUri"}}


def test_the_functions_that_publish_or_accept_mtls_get_its_base_url(sam_output):
    # Given the stack deployed with an mTLS domain
    deployed = deployed_template(sam_output, **MTLS)

    # Then exactly the token, discovery, revocation and introspection functions get its URL
    told = {function for function in resources_of_type(deployed, "AWS::Lambda::Function")
            if environment(deployed, function).get("TOKENMINT_MTLS_BASE_URL")}
    assert told == PUBLISHING
    for function in PUBLISHING:
        assert environment(deployed, function)["TOKENMINT_MTLS_BASE_URL"] == {"Fn::Sub": "https://${MtlsDomainName}"}
    # which is what Settings reads as the mTLS base URL
    settings = Settings.from_env({"TOKENMINT_MTLS_BASE_URL": "https://" + MTLS["MtlsDomainName"]})
    assert settings.mtls_base_url == "https://mtls.auth.example.com"


@pytest.mark.parametrize("missing", ["MtlsCertificateArn", "MtlsTruststoreUri", "IssuerUrl"])
def test_an_mtls_domain_without_certificate_truststore_or_issuer_is_refused(sam_output, missing):
    # CloudFormation refuses the stack (Rules) before creating anything
    assert failed_rules(sam_output, **{**MTLS, missing: ""}) == ["MtlsDomainNeedsCertificateTruststoreAndIssuer"]


@pytest.mark.parametrize("parameter, accepted, refused", [
    ("MtlsDomainName", ["", "mtls.auth.example.com", "a-b.example.co.uk"],
     ["https://mtls.example.com", "MTLS.example.com", "mtls.example.com/", "localhost", "-a.example.com"]),
    ("MtlsTruststoreUri", ["", "s3://bucket-name/truststore.pem", "s3://my.bucket/a/b/c.pem"],
     ["https://bucket.s3.amazonaws.com/truststore.pem", "s3://bucket-name", "s3://bucket-name/"]),
    ("MtlsCertificateArn", ["", MTLS["MtlsCertificateArn"]],
     ["arn:aws:iam::123456789012:server-certificate/x", "certificate/0a1b"]),
])
def test_mtls_parameters_accept_only_well_formed_values(parameter, accepted, refused):
    pattern = re.compile(load_template()["Parameters"][parameter]["AllowedPattern"])
    assert all(pattern.fullmatch(value) for value in accepted)
    assert not any(pattern.fullmatch(value) for value in refused)
