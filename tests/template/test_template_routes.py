"""The HTTP API's routes in template.yaml are routes.py's ROUTES, and events/ has a valid API Gateway
payload 2.0 event for every route."""

from __future__ import annotations

import base64
import json
import re

import pytest

from support.template import EVENTS_DIR, http_api_routes, load_template
from tokenmint.routes import ROUTES

EVENT_FILES = sorted(EVENTS_DIR.glob("*.json"))
EVENT_NAME = re.compile(r"(?P<endpoint>[a-z0-9]+)_(?P<case>[a-z0-9_]+)\.json")

# The cases the integration tests and `sam local invoke -e` rely on.
REQUIRED_EVENTS = {
    "token_basic", "token_post", "token_wrong_secret", "token_unknown_client", "token_no_auth",
    "token_unsupported_grant_type", "token_missing_grant_type", "token_wrong_content_type",
    "token_repeated_parameter", "token_invalid_scope", "token_invalid_target_fragment",
    "token_unknown_resource", "token_wrong_method", "token_bad_basic_header",
    "discovery_metadata", "discovery_openid_configuration", "discovery_jwks",
    "registration_create", "registration_missing_token", "registration_wrong_token",
    "registration_malformed_json", "registration_wrong_content_type", "registration_redirect_uris",
    "registration_scope_outside_policy", "registration_wrong_method", "registration_read",
    "registration_read_wrong_token", "registration_update", "registration_update_server_fields",
    "registration_delete",
}
PATH_PARAMETER = re.compile(r"\{([A-Za-z0-9_]+)\}")


def template_route_keys() -> set[str]:
    return {f"{route['method']} {route['path']}" for route in http_api_routes()}


def test_template_routes_are_routes_py():
    # Given the HttpApi events of the template's functions
    routes = http_api_routes()

    # Then they are exactly ROUTES: same paths, same functions, same handler modules
    assert sorted((r["path"], r["function"], r["handler"]) for r in routes) == sorted(ROUTES)
    # And each is routed once, for every method, on the one HttpApi
    assert len({r["path"] for r in routes}) == len(routes)
    assert {r["method"] for r in routes} == {"ANY"}
    assert all(r["api"] == {"Ref": "HttpApi"} for r in routes)


def test_every_function_handler_is_a_lambda_handler():
    template = load_template()
    handlers = {name: resource["Properties"]["Handler"]
                for name, resource in template["Resources"].items()
                if resource["Type"] == "AWS::Serverless::Function"}
    assert handlers == {route.function: f"{route.handler}.lambda_handler" for route in ROUTES}


def test_required_events_exist():
    assert REQUIRED_EVENTS <= {path.stem for path in EVENT_FILES}


def test_every_route_has_an_event():
    route_keys = {json.loads(path.read_text())["routeKey"] for path in EVENT_FILES}
    assert template_route_keys() <= route_keys


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda path: path.name)
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
    assert context["domainName"] == f"{context['domainPrefix']}.execute-api.us-east-1.amazonaws.com"
    assert context["apiId"] == context["domainPrefix"]
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
