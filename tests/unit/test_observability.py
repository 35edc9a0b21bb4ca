"""Metrics derived from the audit trail, as CloudWatch receives them: EMF documents on stdout, parsed as
JSON, with their names, dimensions and values; the audit events' request source; sinks that fail."""

import base64
import io
import json
from urllib.parse import quote

import pytest

from support.fakes import NOW, InMemoryKeyStore, InMemoryStore
from tokenmint import observability, runtime
from tokenmint.config import Settings
from tokenmint.handlers import authorizer, discovery, token
from tokenmint.observability import metrics
from tokenmint.server import build_event, lambda_context

ISSUER = "https://auth.example.com"
API = "https://api.example.com/mcp"
SECRET = "tmsec_" + "s" * 43
STACK = "tokenmint-prod"
FORM = {"content-type": "application/x-www-form-urlencoded"}
GOOD = f"grant_type=client_credentials&resource={quote(API)}".encode()


@pytest.fixture(autouse=True)
def backend(monkeypatch):
    store = InMemoryStore()
    store.add_resource(API, "tools:read")
    store.add_client("svc", SECRET, "tools:read")
    runtime.install(runtime.Backend(Settings(issuer=ISSUER), store, store, InMemoryKeyStore(), store, store,
                                    clock=lambda: NOW))
    # POWERTOOLS_SERVICE_NAME, which template.yaml sets to the stack's name
    monkeypatch.setattr(observability._emf, "service", STACK)
    observability.publish(True)
    yield store
    runtime.install(None)
    observability.publish(True)


@pytest.fixture
def logs():
    """What the structured log (audit lines included) writes, as a string buffer."""
    handler = observability.logger.registered_handler
    stream, buffer = handler.stream, io.StringIO()
    observability.log_to(buffer, "INFO")
    yield buffer
    observability.log_to(stream, "INFO")


def emf(stdout: str) -> list[dict]:
    """The EMF documents among the printed lines, without powertools' ColdStart (once per process)."""
    documents = [json.loads(line) for line in stdout.splitlines() if line.startswith("{") and '"_aws"' in line]
    return [d for d in documents if d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] != "ColdStart"]


def metric(document: dict) -> tuple[str, dict[str, str], list[list[str]], list[float]]:
    """(name, dimension values, dimension sets, values) of a one-metric document."""
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "tokenmint"
    (definition,) = directive["Metrics"]
    name = definition["Name"]
    dimensions = {key: document[key] for key_set in directive["Dimensions"] for key in key_set}
    values = document[name] if isinstance(document[name], list) else [document[name]]
    return name, dimensions, [sorted(s) for s in directive["Dimensions"]], values


def post_token(body: bytes, authorization: dict, source_ip: str = "198.51.100.7") -> dict:
    headers = {**FORM, **authorization, "user-agent": "billing-agent/1.0"}
    event = build_event("POST", "/token", headers, body, domain="auth.example.com", source_ip=source_ip)
    return token.lambda_handler(event, lambda_context("TokenFunction"))


def basic(client_id: str, secret: str) -> dict:
    return {"authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def test_given_an_issued_token_then_one_tokens_issued_count_under_the_stack_and_nothing_else(capsys):
    response = post_token(GOOD, basic("svc", SECRET))

    assert response["statusCode"] == 200
    (document,) = emf(capsys.readouterr().out)
    assert metric(document) == ("TokensIssued", {"service": STACK}, [["service"]], [1.0])
    assert document["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] == "Count"


def test_given_a_wrong_secret_then_an_auth_failure_by_reason_and_in_total_and_no_identifier_anywhere(capsys, logs):
    access_token = json.loads(post_token(GOOD, basic("svc", SECRET))["body"])["access_token"]
    capsys.readouterr()
    # a secret pasted into the id field, and a real client with a wrong secret
    for client_id, secret in ((SECRET, "x"), ("svc", "tmsec_wrong")):
        assert post_token(GOOD, basic(client_id, secret), source_ip="203.0.113.9")["statusCode"] == 401

    out = capsys.readouterr().out
    documents = emf(out)
    # one document per invocation: by reason, and (a second dimension set) in total for the alarm
    assert [metric(d) for d in documents] == 2 * [
        ("AuthFailures", {"service": STACK, "Reason": "invalid_client"}, [["Reason", "service"], ["service"]], [1.0])]
    # Nothing identifying or secret in a metric; nothing secret in the whole output (logs included)
    metrics_text = json.dumps(documents)
    for value in ("svc", "203.0.113.9", "billing-agent", SECRET, access_token):
        assert value not in metrics_text
    log = logs.getvalue()
    assert log.count('"action":"token.denied"') == 2  # the log is there, and holds no secret
    for value in (SECRET, "tmsec_wrong", access_token):
        assert value not in out + log


def test_given_an_unknown_error_code_then_the_reason_is_other(capsys):
    @metrics.log_metrics
    def handler(event, context):
        observability.audit("token.denied", "made_up_by_" + "a_client")
        observability.audit("resource.denied", "insufficient_scope")

    handler({}, lambda_context("x"))

    reasons = sorted(metric(d)[1]["Reason"] for d in emf(capsys.readouterr().out))
    assert reasons == ["insufficient_scope", "other"]


def test_given_registrations_and_revocations_then_counted_by_action(capsys):
    @metrics.log_metrics
    def handler(event, context):
        for action in ("registration.created", "registration.created", "registration.updated",
                       "registration.deleted", "registration.read", "token.revoked", "token.revocation_ignored",
                       "token.introspected", "client.created"):
            observability.audit(action, "success", client_id="tmc_x")

    handler({}, lambda_context("x"))

    found = {(name, dims.get("Action")): values for name, dims, _, values in map(metric, emf(capsys.readouterr().out))}
    assert found == {("Revocations", None): [1.0], ("Registrations", "created"): [1.0, 1.0],
                     ("Registrations", "updated"): [1.0], ("Registrations", "deleted"): [1.0]}


def test_given_dependency_calls_then_latency_by_dependency_and_operation_and_throttles_also_in_total(capsys):
    @metrics.log_metrics
    def handler(event, context):
        observability.dependency_call("KMS", "Sign", 12.5)
        observability.dependency_call("KMS", "Sign", 30.0, throttled=1)
        observability.dependency_call("DynamoDB", "GetItem", 4.0)

    handler({}, lambda_context("x"))

    found = {(name, dims["Dependency"], dims["Operation"]): (sets, values)
             for name, dims, sets, values in map(metric, emf(capsys.readouterr().out))}
    own = ["Dependency", "Operation", "service"]
    assert found == {("DependencyLatency", "KMS", "Sign"): ([own], [12.5, 30.0]),
                     ("DependencyLatency", "DynamoDB", "GetItem"): ([own], [4.0]),
                     ("DependencyThrottled", "KMS", "Sign"): ([own, ["service"]], [1.0])}


def test_given_an_invocation_without_metrics_then_nothing_is_printed_and_nothing_warned(capsys, recwarn):
    event = build_event("GET", "/jwks.json", {}, b"", domain="auth.example.com", source_ip="192.0.2.1")
    assert discovery.lambda_handler(event, lambda_context("DiscoveryFunction"))["statusCode"] == 200
    assert emf(capsys.readouterr().out) == []
    assert not [w for w in recwarn if "metrics" in str(w.message).lower()]


def test_given_metrics_off_then_nothing_is_collected_or_printed_however_many(capsys):
    # powertools would print a full set of 100 values even when disabled; `tokenmint serve` must not
    observability.publish(False)
    for _ in range(150):
        post_token(GOOD, basic("svc", SECRET))
        observability.dependency_call("KMS", "Sign", 1.0)
    assert emf(capsys.readouterr().out) == []


def test_given_an_authorizer_request_then_its_audit_event_has_the_source_ip_and_user_agent():
    events = []
    observability.install_audit_sink(events.append)
    try:
        event = build_event("GET", "/authorized/tools/echo", {"authorization": "Bearer not-a-token",
                                                              "user-agent": "agent/2"},
                            b"", domain="auth.example.com", source_ip="198.51.100.20",
                            route="/authorized/tools/echo")
        event.update(type="REQUEST", routeKey="ANY /authorized/tools/echo")
        assert authorizer.lambda_handler(event, lambda_context("AuthorizerFunction")) == {"isAuthorized": False}
    finally:
        observability.remove_audit_sink(events.append)
    (denied,) = events
    assert denied["action"] == "authorizer.denied"
    assert (denied["source_ip"], denied["user_agent"]) == ("198.51.100.20", "agent/2")
    # outside an invocation there is no request: an admin action has no source
    observability.audit("client.created", "success", actor="cli")
    assert "source_ip" not in json.dumps(events[1:])


def test_given_a_failing_audit_sink_then_the_token_is_issued_all_the_same(logs):
    def broken(event):
        raise OSError("disk full")
    observability.install_audit_sink(broken)
    try:
        response = post_token(GOOD, basic("svc", SECRET))
    finally:
        observability.remove_audit_sink(broken)
    assert response["statusCode"] == 200
    (warning,) = [json.loads(line) for line in logs.getvalue().splitlines() if "not stored" in line]
    assert warning["level"] == "WARNING" and warning["action"] == "token.issued" and "disk full" in warning["error"]
