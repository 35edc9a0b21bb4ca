"""What `sam build` is fed: the layer's requirements, and functions/Makefile's targets and platform."""

from __future__ import annotations

import re
import tomllib

from support.template import ROOT, load_template

FUNCTIONS = ROOT / "functions"
PROVIDED_BY_LAMBDA_RUNTIME = {"boto3", "botocore"}


def normalized_name(requirement: str) -> str:
    """The distribution name of a requirement line, normalized (PEP 503): "PyJWT[crypto]>=2" → "pyjwt"."""
    match = re.match(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)", requirement)
    assert match, f"not a requirement: {requirement!r}"
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements_txt_names() -> list[str]:
    lines = (FUNCTIONS / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [normalized_name(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def pyproject_dependency_names() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [normalized_name(requirement) for requirement in pyproject["project"]["dependencies"]]


def test_layer_requirements_are_the_runtime_dependencies_minus_boto3():
    # Given the layer's requirements and the package's dependencies
    layer = requirements_txt_names()
    package = pyproject_dependency_names()

    # Then the layer installs every dependency the runtime does not already ship, once
    assert len(layer) == len(set(layer))
    assert set(layer) == set(package) - PROVIDED_BY_LAMBDA_RUNTIME
    assert not set(layer) & PROVIDED_BY_LAMBDA_RUNTIME


def test_normalized_name():
    assert normalized_name("PyJWT[crypto]>=2.8,<3") == "pyjwt"
    assert normalized_name("aws_lambda.Powertools >=3") == "aws-lambda-powertools"


def makefile() -> str:
    return (FUNCTIONS / "Makefile").read_text(encoding="utf-8")


def test_makefile_builds_every_resource_built_with_make():
    # Given the resources that sam build builds with functions/Makefile
    template = load_template()
    built_with_make = {name for name, resource in template["Resources"].items()
                       if resource.get("Metadata", {}).get("BuildMethod") == "makefile"}

    # Then the Makefile has a build-<LogicalId> target for each, and no stale ones
    targets = set(re.findall(r"^build-([A-Za-z0-9]+)\s*:", makefile(), re.MULTILINE))
    assert built_with_make == {"TokenFunction", "DiscoveryFunction", "RegistrationFunction", "RevocationFunction",
                               "IntrospectionFunction", "ToolsFunction", "AuthorizerFunction", "KeyRotationFunction",
                               "DependencyLayer"}
    assert targets == built_with_make


def test_layer_is_built_for_the_functions_runtime_and_architecture():
    # Given the functions' runtime and architecture
    template = load_template()
    function_globals = template["Globals"]["Function"]
    layer = template["Resources"]["DependencyLayer"]["Properties"]
    variables = dict(re.findall(r"^([A-Z_]+)\s*:?=\s*(\S+)", makefile(), re.MULTILINE))

    # Then the layer declares them, and the Makefile installs wheels for exactly them
    assert layer["CompatibleRuntimes"] == [function_globals["Runtime"]] == ["python3.13"]
    assert layer["CompatibleArchitectures"] == function_globals["Architectures"] == ["arm64"]
    assert f"python{variables['LAMBDA_PYTHON']}" == function_globals["Runtime"]
    assert variables["LAMBDA_PLATFORM"].endswith("_aarch64")
    recipe = makefile().split("build-DependencyLayer:", 1)[1]
    for flag in ("--platform $(LAMBDA_PLATFORM)", "--python-version $(LAMBDA_PYTHON)",
                 "--implementation cp", "--only-binary=:all:", "-r requirements.txt",
                 '--target "$(ARTIFACTS_DIR)/python"'):
        assert flag in recipe
