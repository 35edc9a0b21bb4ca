"""template.yaml as data, so tests build their DynamoDB tables and KMS keys from the template itself.

CloudFormation's short tags (``!Ref``, ``!Sub``, ``!GetAtt`` …) become their long JSON forms
(``{"Ref": …}``, ``{"Fn::Sub": …}``, ``{"Fn::GetAtt": [resource, attribute]}``), which is what the
SAM translator and every CloudFormation tool work with.
"""

from __future__ import annotations

import copy
import functools
import json
import re
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


# -- the template as CloudFormation deploys it with given parameters --------------------------------
PSEUDO_PARAMETERS = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws",
                     "AWS::StackName": "tokenmint", "AWS::URLSuffix": "amazonaws.com"}
NO_VALUE = {"Ref": "AWS::NoValue"}


def parameter_values(template: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """Every parameter's value (its default unless overridden), plus the pseudo parameters; a
    CommaDelimitedList is a list, as CloudFormation makes it."""
    values: dict[str, Any] = dict(PSEUDO_PARAMETERS)
    for name, parameter in template.get("Parameters", {}).items():
        value = overrides.get(name, parameter.get("Default", ""))
        if parameter["Type"] == "CommaDelimitedList":
            values[name] = list(value) if isinstance(value, (list, tuple)) else str(value).split(",")
        else:
            values[name] = str(value).lower() if isinstance(value, bool) else str(value)
    unknown = set(overrides) - set(template.get("Parameters", {}))
    if unknown:
        raise KeyError(f"no such parameters: {sorted(unknown)}")
    return values


class Evaluator:
    """Evaluates the intrinsic functions CloudFormation resolves at deploy time, for one set of
    parameter values: conditions, Fn::If, Ref, Fn::Sub, Fn::Join, Fn::Select, Fn::Split, Fn::FindInMap
    and (with ``attributes``: "Resource.Attribute" or a resource's Ref → value) Fn::GetAtt."""

    def __init__(self, template: dict[str, Any], values: dict[str, Any],
                 attributes: dict[str, Any] | None = None) -> None:
        self.template, self.values, self.attributes = template, values, attributes or {}
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.value(self.template["Conditions"][name]))
        return self._conditions[name]

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.value(item) for item in node if item != NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) != 1:
            return {key: self.value(item) for key, item in node.items()}
        ((function, argument),) = node.items()
        if function == "Ref":
            if argument in self.values:
                return self.values[argument]
            return self.attributes[argument]
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::If":
            name, when_true, when_false = argument
            return self.value(when_true if self.condition(name) else when_false)
        if function == "Fn::Equals":
            left, right = (self.value(item) for item in argument)
            return str(left) == str(right)
        if function == "Fn::Not":
            return not self.value(argument[0])
        if function == "Fn::And":
            return all(self.value(item) for item in argument)
        if function == "Fn::Or":
            return any(self.value(item) for item in argument)
        if function == "Fn::Join":
            separator, items = argument
            return separator.join(str(item) for item in self.value(items))
        if function == "Fn::Select":
            index, items = argument
            return self.value(items)[int(self.value(index))]
        if function == "Fn::Split":
            separator, text = argument
            return str(self.value(text)).split(separator)
        if function == "Fn::FindInMap":
            mapping, key, attribute = (self.value(item) for item in argument)
            return self.template["Mappings"][mapping][key][attribute]
        if function == "Fn::GetAtt":
            resource, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.attributes[f"{resource}.{attribute}"]
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            scope = {name: self.value(item) for name, item in variables.items()}

            def substitute(match: Any) -> str:
                name = match.group(1)
                if name in scope:
                    return str(scope[name])
                if name in self.values:
                    return str(self.values[name])
                return str(self.attributes[name])
            return re.sub(r"\$\{([^}!]+)\}", substitute, text)
        return {function: self.value(argument)}

    def choose(self, node: Any) -> Any:
        """``node`` with only its Fn::If resolved (NoValue removed); every other function kept."""
        if isinstance(node, list):
            chosen = [self.choose(item) for item in node]
            return [item for item in chosen if item != NO_VALUE]
        if not isinstance(node, dict):
            return node
        if list(node) == ["Fn::If"]:
            name, when_true, when_false = node["Fn::If"]
            return self.choose(when_true if self.condition(name) else when_false)
        chosen = {key: self.choose(item) for key, item in node.items()}
        return {key: item for key, item in chosen.items() if item != NO_VALUE}


def deployed_template(template: dict[str, Any], **parameters: Any) -> dict[str, Any]:
    """``template`` (before or after the SAM transform) as CloudFormation would create it with
    ``parameters``: without the resources and outputs whose Condition is false, and with every
    Fn::If replaced by the branch it takes. Refs, Subs and GetAtts stay as they are."""
    evaluator = Evaluator(template, parameter_values(template, **parameters))
    deployed = copy.deepcopy(template)
    for section in ("Resources", "Outputs"):
        deployed[section] = {name: evaluator.choose(body) for name, body in template.get(section, {}).items()
                             if "Condition" not in body or evaluator.condition(body["Condition"])}
    return deployed


def failed_rules(template: dict[str, Any], **parameters: Any) -> list[str]:
    """The Rules whose assertions fail for ``parameters`` (CloudFormation refuses to deploy then)."""
    evaluator = Evaluator(template, parameter_values(template, **parameters))
    failed = []
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not evaluator.value(rule["RuleCondition"]):
            continue
        if not all(evaluator.value(assertion["Assert"]) for assertion in rule["Assertions"]):
            failed.append(name)
    return failed
