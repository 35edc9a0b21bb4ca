"""template.yaml as data, so tests build their DynamoDB tables and KMS keys from the template itself.

CloudFormation's short tags (``!Ref``, ``!Sub``, ``!GetAtt`` …) become their long JSON forms
(``{"Ref": …}``, ``{"Fn::Sub": …}``, ``{"Fn::GetAtt": [resource, attribute]}``), which is what the
SAM translator and every CloudFormation tool work with.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
EVENTS_DIR = ROOT / "events"


class _CloudFormationLoader(yaml.SafeLoader):
    """A safe YAML loader that also understands CloudFormation's short-form intrinsic functions."""


def _construct_node(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value = _construct_node(loader, node)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        # !GetAtt Resource.Attribute (the attribute itself may contain dots: Endpoint.Address)
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def parse_template(text: str) -> dict[str, Any]:
    """A CloudFormation/SAM template (YAML with short tags, or JSON) as plain data."""
    document = yaml.load(text, Loader=_CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict):
        raise ValueError("a template is a mapping")
    return document


@functools.lru_cache(maxsize=None)
def _load_cached(path: Path) -> str:
    return json.dumps(parse_template(path.read_text(encoding="utf-8")))


def load_template(path: Path | str = TEMPLATE_PATH) -> dict[str, Any]:
    """template.yaml as data: a fresh copy on every call, so callers may change it."""
    return json.loads(_load_cached(Path(path).resolve()))


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: resource for name, resource in template["Resources"].items()
            if resource.get("Type") == resource_type}


def _table_properties(template: dict[str, Any] | None = None) -> dict[str, Any]:
    template = template or load_template()
    tables = resources_of_type(template, "AWS::DynamoDB::Table")
    if len(tables) != 1:
        raise LookupError(f"expected one AWS::DynamoDB::Table in the template, found {sorted(tables)}")
    return next(iter(tables.values()))["Properties"]


def table_create_kwargs(table_name: str) -> dict[str, Any]:
    """Keyword arguments for boto3 ``dynamodb.create_table``: the template's table, named ``table_name``."""
    properties = _table_properties()
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": copy.deepcopy(properties["AttributeDefinitions"]),
        "KeySchema": copy.deepcopy(properties["KeySchema"]),
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    indexes = [
        {key: copy.deepcopy(index[key]) for key in ("IndexName", "KeySchema", "Projection")}
        for index in properties.get("GlobalSecondaryIndexes", ())
    ]
    if indexes:
        kwargs["GlobalSecondaryIndexes"] = indexes
    if kwargs["BillingMode"] != "PAY_PER_REQUEST":
        raise ValueError("the template's table is expected to be on-demand (PAY_PER_REQUEST)")
    return kwargs


def signing_key_spec_mapping(template: dict[str, Any] | None = None) -> dict[str, str]:
    """JWS algorithm → KMS key spec, from the mapping the signing key's KeySpec is looked up in
    (``!FindInMap [Mapping, !Ref SigningAlgorithm, KeySpec]``)."""
    template = template or load_template()
    for resource in resources_of_type(template, "AWS::KMS::Key").values():
        spec = resource["Properties"].get("KeySpec")
        if isinstance(spec, dict) and "Fn::FindInMap" in spec:
            mapping_name, _, attribute = spec["Fn::FindInMap"]
            return {alg: row[attribute] for alg, row in template["Mappings"][mapping_name].items()}
    raise LookupError("no AWS::KMS::Key in the template takes its KeySpec from a mapping")


def kms_key_spec(alg: str) -> str:
    """The KMS key spec the template creates for JWS algorithm ``alg`` (KeyError if it has none)."""
    return signing_key_spec_mapping()[alg]


def http_api_routes(template: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every HttpApi event of every function: path, method, function logical id, handler module, and
    the HttpApi authorizer in front of it (``Auth.Authorizer``; None without one)."""
    template = template or load_template()
    routes = []
    for name, resource in resources_of_type(template, "AWS::Serverless::Function").items():
        properties = resource["Properties"]
        handler = properties.get("Handler", "")
        for event in properties.get("Events", {}).values():
            if event.get("Type") != "HttpApi":
                continue
            routes.append({
                "path": event["Properties"]["Path"],
                "method": event["Properties"].get("Method", "ANY").upper(),
                "function": name,
                "handler": handler.rpartition(".")[0],
                "api": event["Properties"].get("ApiId"),
                "authorizer": (event["Properties"].get("Auth") or {}).get("Authorizer"),
            })
    return routes


def load_event(name: str) -> dict[str, Any]:
    """events/<name>.json (name with or without .json)."""
    filename = name if name.endswith(".json") else f"{name}.json"
    return json.loads((EVENTS_DIR / filename).read_text(encoding="utf-8"))
