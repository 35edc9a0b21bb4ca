"""The HTTP API's routes in template.yaml are routes.py's ROUTES (with the same authorizer in front
of the same routes), and events/ has a valid API Gateway payload 2.0 event for every route, valid
Lambda authorizer events, and the key rotation function's scheduled and forced events."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import parse_qsl

import pytest

from support.template import EVENTS_DIR, http_api_routes, load_template
from tokenmint.routes import AUTHORIZER, ROUTES, SAMPLE_AUTHORIZER_ROUTES

EVENT_FILES = sorted(EVENTS_DIR.glob("*.json"))
# Events API Gateway sends the Lambda authorizer (not HTTP requests), the key rotation function's
# (EventBridge's, or an operator's), and the HTTP requests.
AUTHORIZER_EVENT_FILES = [path for path in EVENT_FILES if path.name.startswith("authorizer_")]
KEY_ROTATION_EVENT_FILES = [path for path in EVENT_FILES if path.name.startswith("key_rotation_")]
HTTP_EVENT_FILES = [path for path in EVENT_FILES if path not in AUTHORIZER_EVENT_FILES + KEY_ROTATION_EVENT_FILES]
KEY_ROTATION_FUNCTION = ("KeyRotationFunction", "tokenmint.handlers.key_rotation")
EVENT_NAME = re.compile(r"(?P<endpoint>[a-z0-9]+)_(?P<case>[a-z0-9_]+)\.json")

# The cases the integration tests and `sam local invoke -e` rely on.
REQUIRED_EVENTS = {
    "token_basic", "token_post", "token_wrong_secret", "token_unknown_client", "token_no_auth",
    "token_unsupported_grant_type", "token_missing_grant_type", "token_wrong_content_type",
    "token_repeated_parameter", "token_invalid_scope", "token_invalid_target_fragment",
    "token_unknown_resource", "token_wrong_method", "token_bad_basic_header",
    "discovery_metadata", "discovery_openid_configuration", "discovery_jwks", "discovery_authorize",
    "registration_create", "registration_missing_token", "registration_wrong_token",
    "registration_malformed_json", "registration_wrong_content_type", "registration_redirect_uris",
    "registration_scope_outside_policy", "registration_wrong_method", "registration_read",
    "registration_read_wrong_token", "registration_update", "registration_update_server_fields",
    "registration_delete",
    "revocation_basic", "revocation_unauthenticated", "revocation_missing_token",
    "introspection_garbage_token", "introspection_no_permission", "introspection_unauthenticated",
    "tools_no_token", "tools_metadata", "tools_unknown_tool",
    "authorizer_no_token", "authorizer_garbage_token", "authorizer_unconfigured_route",
    "key_rotation_scheduled", "key_rotation_forced",
}
PATH_PARAMETER = re.compile(r"\{([A-Za-z0-9_]+)\}")


def template_route_keys() -> set[str]:
    return {f"{route['method']} {route['path']}" for route in http_api_routes()}


def test_template_routes_are_routes_py():
    # Given the HttpApi events of the template's functions
    routes = http_api_routes()

    # Then they are exactly ROUTES: same paths, same functions, same handler modules, same authorizers
    assert sorted((r["path"], r["function"], r["handler"], r["authorizer"]) for r in routes) == sorted(
        ROUTES, key=lambda route: (route.path, route.function, route.handler, route.authorizer or ""))
    # And each is routed once, for every method, on the one HttpApi
    assert len({r["path"] for r in routes}) == len(routes)
    assert {r["method"] for r in routes} == {"ANY"}
    assert all(r["api"] == {"Ref": "HttpApi"} for r in routes)


def test_every_function_handler_is_a_lambda_handler():
    template = load_template()
    handlers = {name: resource["Properties"]["Handler"]
                for name, resource in template["Resources"].items()
                if resource["Type"] == "AWS::Serverless::Function"}
    _, authorizer_function, authorizer_module = AUTHORIZER
    rotation_function, rotation_module = KEY_ROTATION_FUNCTION
    # every function serves routes, except the authorizer (API Gateway calls it) and the key rotation
    # (an EventBridge schedule calls it)
    assert handlers == {**{route.function: f"{route.handler}.lambda_handler" for route in ROUTES},
                        authorizer_function: f"{authorizer_module}.lambda_handler",
                        rotation_function: f"{rotation_module}.lambda_handler"}


# -- the Lambda authorizer ------------------------------------------------------------------------
def http_api_authorizers() -> dict[str, dict]:
    return load_template()["Resources"]["HttpApi"]["Properties"]["Auth"]["Authorizers"]


def test_routes_with_an_authorizer_in_routes_py_have_it_in_the_template_and_no_others():
    # Given each template route's authorizer, and ROUTES'
    in_template = {route["path"]: route["authorizer"] for route in http_api_routes()}
    in_code = {route.path: route.authorizer for route in ROUTES}

    # Then each route has the same one, or none in both
    assert in_template == in_code
    assert {path for path, name in in_template.items() if name} == {
        key.split(" ", 1)[1] for key in SAMPLE_AUTHORIZER_ROUTES}
    # And it is the HTTP API's one authorizer, which is nobody's default (the OAuth endpoints
    # authenticate clients themselves: a gateway authorizer in front of them would refuse them)
    assert set(http_api_authorizers()) == {AUTHORIZER[0]} == {name for name in in_code.values() if name}
    assert "DefaultAuthorizer" not in load_template()["Resources"]["HttpApi"]["Properties"]["Auth"]


def test_authorizer_is_the_authorizer_function_keyed_by_token_and_route():
    name, function, _ = AUTHORIZER
    authorizer = http_api_authorizers()[name]
    assert authorizer["FunctionArn"] == {"Fn::GetAtt": [function, "Arn"]}
    assert authorizer["AuthorizerPayloadFormatVersion"] == "2.0"
    assert authorizer["EnableSimpleResponses"] is True
    assert authorizer["EnableFunctionDefaultPermissions"] is True
    # The cache key holds the token and the route: an answer for one route's scopes is never
    # reused for another route
    identity = authorizer["Identity"]
    assert "Authorization" in identity["Headers"]
    assert "routeKey" in identity["Context"]
    assert identity["ReauthorizeEvery"] == {"Ref": "AuthorizerCacheSeconds"}
    # The function is only the authorizer: no route invokes it directly
    assert "Events" not in load_template()["Resources"][function]["Properties"]


def test_authorizer_routes_setting_is_routes_py():
    variables = load_template()["Resources"][AUTHORIZER[1]]["Properties"]["Environment"]["Variables"]
    assert json.loads(variables["TOKENMINT_AUTHORIZER_ROUTES"]) == SAMPLE_AUTHORIZER_ROUTES
    # every key names a route the template puts behind the authorizer
    assert set(SAMPLE_AUTHORIZER_ROUTES) == {f"{route['method']} {route['path']}" for route in http_api_routes()
                                             if route["authorizer"] == AUTHORIZER[0]}


def test_required_events_exist():
    assert REQUIRED_EVENTS <= {path.stem for path in EVENT_FILES}


def test_every_route_has_an_event():
    route_keys = {json.loads(path.read_text())["routeKey"] for path in HTTP_EVENT_FILES}
    assert template_route_keys() <= route_keys


def test_every_authorizer_route_has_authorizer_events():
    route_keys = {json.loads(path.read_text())["routeKey"] for path in AUTHORIZER_EVENT_FILES}
    assert route_keys & set(SAMPLE_AUTHORIZER_ROUTES)
    assert route_keys - set(SAMPLE_AUTHORIZER_ROUTES)  # and one for a route the map does not name


def assert_api_domain(context: dict) -> None:
    """The request reached the API by its execute-api domain, or by the custom domain with mutual
    TLS (RFC 8705), which API Gateway reports with the verified client certificate."""
    if "authentication" in context:
        assert context["domainPrefix"] == context["domainName"].split(".")[0]
        assert set(context["authentication"]["clientCert"]) == {
            "clientCertPem", "subjectDN", "issuerDN", "serialNumber", "validity"}
    else:
        assert context["domainName"] == f"{context['domainPrefix']}.execute-api.us-east-1.amazonaws.com"
        assert context["apiId"] == context["domainPrefix"]


@pytest.mark.parametrize("path", AUTHORIZER_EVENT_FILES, ids=lambda path: path.name)
def test_authorizer_event_is_a_request_authorizer_payload_2_event(path):
    # Given an authorizer event file
    event = json.loads(path.read_text(encoding="utf-8"))
    context = event["requestContext"]
    http = context["http"]
    name = EVENT_NAME.fullmatch(path.name)

    # Then it is what API Gateway sends a REQUEST authorizer with payload format 2.0
    assert name and name["endpoint"] == "authorizer"
    assert event["version"] == "2.0" and event["type"] == "REQUEST"
    assert context["stage"] == "$default" and context["routeKey"] == event["routeKey"]
    assert_api_domain(context)
    assert context["accountId"] and context["requestId"] and isinstance(context["timeEpoch"], int)
    method, route_path = event["routeKey"].split(" ", 1)
    assert method == "ANY" and route_path.startswith("/authorized/")
    assert event["rawPath"] == http["path"] == route_path
    assert event["routeArn"] == (f"arn:aws:execute-api:us-east-1:{context['accountId']}:{context['apiId']}"
                                 f"/$default/{http['method']}{event['rawPath']}")
    assert isinstance(event["rawQueryString"], str) and event["pathParameters"] == {}
    headers = event["headers"]
    assert all(key == key.lower() and isinstance(value, str) for key, value in headers.items())
    assert headers["host"] == context["domainName"]
    # with the template's identity sources, in order: the Authorization header (when sent), the route key
    expected_sources = [headers["authorization"]] if "authorization" in headers else []
    assert event["identitySource"] == [*expected_sources, event["routeKey"]]
    # on a route behind the authorizer, except the one about a route the map does not name
    if path.stem == "authorizer_unconfigured_route":
        assert event["routeKey"] not in SAMPLE_AUTHORIZER_ROUTES
    else:
        assert event["routeKey"] in SAMPLE_AUTHORIZER_ROUTES
        assert event["routeKey"] in template_route_keys()


@pytest.mark.parametrize("path", HTTP_EVENT_FILES, ids=lambda path: path.name)
def test_event_is_an_http_api_payload_2_event_for_a_template_route(path):
    # Given an event file
    name = EVENT_NAME.fullmatch(path.name)
    event = json.loads(path.read_text(encoding="utf-8"))
    context = event["requestContext"]
    http = context["http"]

    # Then it is an API Gateway HTTP API payload 2.0 event on the $default stage
    assert name, f"{path.name} is not named <endpoint>_<case>.json"
    assert event["version"] == "2.0"
    assert context["stage"] == "$default"
    assert_api_domain(context)
    assert context["accountId"] and context["requestId"] and context["time"]
    assert isinstance(context["timeEpoch"], int)
    assert http["method"] in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
    assert http["protocol"].startswith("HTTP/") and http["sourceIp"] and "userAgent" in http
    # on a route the template defines, consistently in every place the event names it
    assert event["routeKey"] in template_route_keys()
    assert context["routeKey"] == event["routeKey"]
    route_path = event["routeKey"].split(" ", 1)[1]
    # with a value for each {parameter} of the route (API Gateway omits pathParameters when it has none)
    parameters = event.get("pathParameters", {})
    assert set(parameters) == set(PATH_PARAMETER.findall(route_path))
    assert all(isinstance(value, str) and value and "/" not in value for value in parameters.values())
    concrete_path = PATH_PARAMETER.sub(lambda match: parameters[match.group(1)], route_path)
    assert event["rawPath"] == http["path"] == concrete_path
    assert isinstance(event["rawQueryString"], str)
    # named after the endpoint module that serves it
    (handler,) = {route.handler for route in ROUTES if route.path == route_path}
    assert name["endpoint"] == handler.rpartition(".")[2]
    # with headers as API Gateway passes them: lower-case names, string values
    headers = event["headers"]
    assert all(key == key.lower() and isinstance(value, str) for key, value in headers.items())
    assert headers["host"] == context["domainName"]
    # and a body that decodes as flagged
    assert isinstance(event["isBase64Encoded"], bool)
    if "body" in event:
        body = (base64.b64decode(event["body"], validate=True) if event["isBase64Encoded"]
                else event["body"].encode("utf-8"))
        assert headers["content-length"] == str(len(body))
        assert "content-type" in headers
    else:
        assert not event["isBase64Encoded"]


def test_form_bodies_are_base64_as_api_gateway_sends_them():
    # API Gateway base64-encodes form bodies; token_post keeps the plain variant covered.
    event = json.loads((EVENTS_DIR / "token_basic.json").read_text())
    assert event["isBase64Encoded"] is True
    body = base64.b64decode(event["body"]).decode()
    assert body == ("grant_type=client_credentials&resource=https%3A%2F%2Fapi.example.com%2Fmcp"
                    "&scope=tools%3Aread")
    scheme, _, credentials = event["headers"]["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == (
        "tmc_example:tmsec_example0000000000000000000000000000000000")



def form_fields(event: dict) -> dict[str, str]:
    raw = base64.b64decode(event["body"]).decode() if event["isBase64Encoded"] else event["body"]
    return dict(parse_qsl(raw, keep_blank_values=True, strict_parsing=True))


@pytest.mark.parametrize("endpoint", ["revocation", "introspection"])
def test_revocation_and_introspection_events_post_forms(endpoint):
    # RFC 7009 §2.1 and RFC 7662 §2.1: a form POST with the token; clients authenticate as at the token
    # endpoint (Basic here), except in the events about unauthenticated requests
    examples = {"tmc_example": "tmsec_example0000000000000000000000000000000000",
                "tmc_introspector": "tmsec_introspector00000000000000000000000000000000"}
    events = {path.stem: json.loads(path.read_text(encoding="utf-8"))
              for path in EVENTS_DIR.glob(f"{endpoint}_*.json")}
    assert events
    for name, event in events.items():
        assert event["requestContext"]["http"]["method"] == "POST", name
        assert event["headers"]["content-type"] == "application/x-www-form-urlencoded", name
        fields = form_fields(event)
        assert ("token" in fields) is (name != "revocation_missing_token"), name
        authorization = event["headers"].get("authorization")
        if name.endswith("_unauthenticated"):
            assert authorization is None and "client_secret" not in fields, name
            continue
        scheme, _, credentials = authorization.partition(" ")
        client_id, _, secret = base64.b64decode(credentials).decode().partition(":")
        assert scheme == "Basic" and examples[client_id] == secret, name
    # the introspection event that is allowed to introspect is the introspector's
    introspector = events.get("introspection_garbage_token")
    if introspector:
        credentials = introspector["headers"]["authorization"].partition(" ")[2]
        assert base64.b64decode(credentials).decode().startswith("tmc_introspector:")


def test_json_bodies_are_plain_text_as_api_gateway_sends_them():
    # API Gateway passes a JSON body as it is (isBase64Encoded false); every registration event
    # that sends JSON sends a JSON object, except the one about malformed JSON.
    for path in EVENTS_DIR.glob("registration_*.json"):
        event = json.loads(path.read_text(encoding="utf-8"))
        if "body" not in event:
            continue
        assert event["isBase64Encoded"] is False, path.name
        if path.stem == "registration_malformed_json":
            with pytest.raises(ValueError):
                json.loads(event["body"])
        else:
            assert isinstance(json.loads(event["body"]), dict), path.name


def test_registration_events_present_bearer_tokens():
    # The initial access token on /register, the registration access token on /register/{client_id}
    for path in EVENTS_DIR.glob("registration_*.json"):
        event = json.loads(path.read_text(encoding="utf-8"))
        authorization = event["headers"].get("authorization")
        if path.stem == "registration_missing_token":
            assert authorization is None
            continue
        scheme, _, token = authorization.partition(" ")
        prefix = "tmrat_" if event["routeKey"].endswith("{client_id}") else "tmiat_"
        assert scheme == "Bearer" and token.startswith(prefix), path.name


# -- the key rotation function's events ---------------------------------------------------------------
def test_key_rotation_events_are_the_scheduled_event_and_the_forced_one():
    assert [path.name for path in KEY_ROTATION_EVENT_FILES] == ["key_rotation_forced.json",
                                                                "key_rotation_scheduled.json"]
    # The forced run: what an operator sends (aws lambda invoke --payload '{"force": true}')
    assert json.loads((EVENTS_DIR / "key_rotation_forced.json").read_text()) == {"force": True}


def test_key_rotation_scheduled_event_is_what_the_eventbridge_rule_sends():
    # Given the scheduled event and the function's Schedule event in the template
    event = json.loads((EVENTS_DIR / "key_rotation_scheduled.json").read_text(encoding="utf-8"))
    function, _ = KEY_ROTATION_FUNCTION
    ((event_name, schedule),) = load_template()["Resources"][function]["Properties"]["Events"].items()

    # Then it is an EventBridge "Scheduled Event" (an EventBridge rule, not EventBridge Scheduler),
    # from the rule SAM names <function><event>, with nothing that would force a rotation
    assert schedule["Type"] == "Schedule" and "Input" not in schedule["Properties"]
    assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources",
                          "detail"}
    assert (event["version"], event["detail-type"], event["source"], event["detail"]) == (
        "0", "Scheduled Event", "aws.events", {})
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", event["time"])
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", event["id"])
    (rule,) = event["resources"]
    assert re.fullmatch(rf"arn:aws:events:{event['region']}:{event['account']}:rule/[A-Za-z0-9-]+-{function}"
                        rf"{event_name}-[A-Z0-9]+", rule)
    assert "force" not in event
