"""Monitoring in template.yaml (infra/alarms.md): alarms and a dashboard exist only with AlarmTopicArn,
notify it, and watch metrics that exist: the ones the code emits (tokenmint namespace, as EMF), and
AWS's for the resources of this template."""

from __future__ import annotations

import contextlib
import io
import json
import re
from typing import Any

import pytest

from support.template import Evaluator, deployed_template, load_template, parameter_values, resources_of_type
from tokenmint import observability
from tokenmint.observability import metrics

TOPIC = "arn:aws:sns:us-east-1:123456789012:tokenmint-alarms"
REPLICA_REGION = {"IsPrimaryRegion": "false", "KeyReplicaRegions": "eu-west-1",
                  "PrimarySigningKeyArn": "arn:aws:kms:us-east-1:123456789012:key/mrk-0123456789abcdef0123456789abcdef"}
ALARMS = {"ApiServerErrorsAlarm", "AuthFailuresAlarm", "DependencyThrottledAlarm", "TableThrottledAlarm",
          "KeyRotationErrorsAlarm", "TokenLatencyAlarm"}
# Physical names CloudFormation would give the resources (what a Ref or ${Name} resolves to).
NAMES = {"HttpApi": "a1b2c3d4e5", "TokenFunction": "tokenmint-TokenFunction-X1",
         "KeyRotationFunction": "tokenmint-KeyRotationFunction-X2", "Table": "tokenmint-Table-X3",
         "GlobalTable": "tokenmint-table", "Dashboard": "tokenmint-us-east-1"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def emitted() -> set[tuple[str, tuple[str, ...]]]:
    """(metric name, dimension names) of every metric the code publishes, as CloudWatch gets them:
    each business metric derived from an audit event, and the AWS dependency metrics."""
    observability.publish(True)
    service, observability._emf.service = observability._emf.service, "tokenmint"
    try:
        @metrics.log_metrics
        def invocation(event: dict, context: Any) -> None:
            for action, outcome in (("token.issued", "success"), ("token.revoked", "success"),
                                    ("token.denied", "invalid_client"), ("registration.created", "success")):
                observability.audit(action, outcome)
            observability.dependency_call("KMS", "Sign", 10.0, throttled=1)

        with contextlib.redirect_stdout(io.StringIO()) as printed:
            invocation({}, None)
    finally:
        observability._emf.service = service
    found = set()
    for document in map(json.loads, printed.getvalue().splitlines()):
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "tokenmint"
            for definition in directive["Metrics"]:
                for dimension_set in directive["Dimensions"]:
                    found.add((definition["Name"], tuple(sorted(dimension_set))))
    return found


def deployed(template: dict[str, Any], **parameters: str) -> dict[str, Any]:
    return deployed_template(template, **parameters)


def alarms(deployed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of_type(deployed, "AWS::CloudWatch::Alarm")


def evaluate(template: dict[str, Any], node: Any, **parameters: str) -> Any:
    return Evaluator(template, parameter_values(template, **parameters), NAMES).value(node)


def test_without_an_alarm_topic_there_is_no_alarm_and_no_dashboard(template):
    stack = deployed(template)
    assert not [r for r in stack["Resources"].values() if r["Type"].startswith("AWS::CloudWatch::")]
    assert "DashboardUrl" not in stack["Outputs"]


def test_with_an_alarm_topic_every_alarm_notifies_it_and_the_dashboard_exists(template):
    stack = deployed(template, AlarmTopicArn=TOPIC)
    assert set(alarms(stack)) == ALARMS
    for name, alarm in alarms(stack).items():
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == properties["OKActions"] == [{"Ref": "AlarmTopicArn"}], name
        assert properties["TreatMissingData"] == "notBreaching", name  # no traffic is no alarm
        assert properties["AlarmDescription"], name
    assert set(resources_of_type(stack, "AWS::CloudWatch::Dashboard")) == {"Dashboard"}
    assert "DashboardUrl" in stack["Outputs"]


def test_a_replica_region_stack_has_no_key_rotation_alarm(template):
    # the primary stack rotates the keys; a replica-region stack has no rotation function to watch
    assert set(alarms(deployed(template, AlarmTopicArn=TOPIC, **REPLICA_REGION))) == ALARMS - {"KeyRotationErrorsAlarm"}


def test_the_metrics_service_dimension_is_the_stack_name(template):
    # the alarms select the stack's own metrics by service = stack name, which is what the functions
    # publish (powertools reads POWERTOOLS_SERVICE_NAME)
    assert template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == {
        "Ref": "AWS::StackName"}
    for name in ("AuthFailuresAlarm", "DependencyThrottledAlarm"):
        assert template["Resources"][name]["Properties"]["Dimensions"] == [
            {"Name": "service", "Value": {"Ref": "AWS::StackName"}}]


def test_tokenmint_alarms_watch_metrics_the_code_emits_with_those_dimensions(template, emitted):
    for name, alarm in alarms(deployed(template, AlarmTopicArn=TOPIC)).items():
        properties = alarm["Properties"]
        if properties.get("Namespace") == "tokenmint":
            dimensions = tuple(sorted(d["Name"] for d in properties["Dimensions"]))
            assert (properties["MetricName"], dimensions) in emitted, name


@pytest.mark.parametrize("parameters, table", [({}, NAMES["Table"]),
                                               ({"KeyReplicaRegions": "eu-west-1"}, "tokenmint-table"),
                                               (REPLICA_REGION, "tokenmint-table")])
def test_aws_metric_alarms_watch_this_stacks_api_functions_and_table(template, parameters, table):
    stack = deployed(template, AlarmTopicArn=TOPIC, **parameters)
    watched = {}
    for name, alarm in alarms(stack).items():
        properties = alarm["Properties"]
        stats = [q["MetricStat"]["Metric"] for q in properties.get("Metrics", ()) if "MetricStat" in q]
        for metric in stats or [properties]:
            dimensions = {d["Name"]: evaluate(template, d["Value"], AlarmTopicArn=TOPIC, **parameters)
                          for d in metric["Dimensions"]}
            watched.setdefault(name, []).append((metric["Namespace"], metric["MetricName"], dimensions))
    assert watched["ApiServerErrorsAlarm"] == [("AWS/ApiGateway", "5xx", {"ApiId": NAMES["HttpApi"]})]
    assert watched["TokenLatencyAlarm"] == [("AWS/Lambda", "Duration", {"FunctionName": NAMES["TokenFunction"]})]
    assert stack["Resources"]["TokenLatencyAlarm"]["Properties"]["ExtendedStatistic"] == "p99"
    if "KeyRotationErrorsAlarm" in watched:
        assert watched["KeyRotationErrorsAlarm"] == [
            ("AWS/Lambda", "Errors", {"FunctionName": NAMES["KeyRotationFunction"]})]
    # the table the functions use (TOKENMINT_TABLE), for every DynamoDB operation any role may call
    env_table = evaluate(template, template["Globals"]["Function"]["Environment"]["Variables"]["TOKENMINT_TABLE"],
                         **parameters)
    assert env_table == table
    throttled = watched["TableThrottledAlarm"]
    assert {(namespace, name, d["TableName"]) for namespace, name, d in throttled} == {
        ("AWS/DynamoDB", "ThrottledRequests", table)}
    operations = {d["Operation"] for _, _, d in throttled}
    granted = {action.split(":")[1] for function in resources_of_type(template, "AWS::Serverless::Function").values()
               for policy in function["Properties"].get("Policies", ()) if isinstance(policy, dict)
               for statement in policy["Statement"] if isinstance(statement, dict) and "Action" in statement
               for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
               if action.startswith("dynamodb:")}
    assert granted <= operations and "TransactWriteItems" in operations
    expression = next(q for q in stack["Resources"]["TableThrottledAlarm"]["Properties"]["Metrics"] if "Expression" in q)
    assert set(re.findall(r"\w+", expression["Expression"])) - {"SUM"} == {
        q["Id"] for q in stack["Resources"]["TableThrottledAlarm"]["Properties"]["Metrics"] if "MetricStat" in q}


def test_the_dashboard_is_valid_json_and_graphs_only_metrics_that_exist(template, emitted):
    body = evaluate(template, template["Resources"]["Dashboard"]["Properties"]["DashboardBody"], AlarmTopicArn=TOPIC)
    widgets = json.loads(body)["widgets"]
    assert len(widgets) >= 6
    searched, graphed = [], []
    for widget in widgets:
        assert widget["properties"]["region"] == "us-east-1"
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], dict):
                searched.append(row[0]["expression"])
            else:
                graphed.append(row)
    for row in graphed:
        namespace, name, *rest = [item for item in row if not isinstance(item, dict)]
        dimensions = dict(zip(rest[::2], rest[1::2]))
        if namespace == "tokenmint":
            assert (name, tuple(sorted(dimensions))) in emitted and dimensions["service"] == "tokenmint"
        else:
            assert set(dimensions.values()) <= {NAMES["HttpApi"], NAMES["TokenFunction"], NAMES["KeyRotationFunction"]}
    for expression in searched:
        schema, name = re.search(r"SEARCH\('\{([^}]*)\} MetricName=\"(\w+)\"", expression).groups()
        namespace, *dimension_names = schema.split(",")
        if namespace == "tokenmint":
            assert (name, tuple(sorted(dimension_names))) in emitted, expression
            assert 'service="tokenmint"' in expression
        else:
            assert (namespace, name) == ("AWS/DynamoDB", "ThrottledRequests")
            assert f'TableName="{NAMES["Table"]}"' in expression


def test_functions_trace_with_xray(template):
    assert template["Globals"]["Function"]["Tracing"] == "Active"
