"""The OpenAPI description (functions/tokenmint/openapi.json): a valid OpenAPI 3.1 document that
describes every route of routes.py and nothing else, is what the server serves at /openapi.json,
and declares the error answers every client must be ready for. Undeclared methods get 405."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import requests

from tokenmint.routes import OPENAPI_PATH, ROUTES

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "functions" / "tokenmint" / "openapi.json"
INFRA = ROOT / "infra" / "openapi.json"
SPEC = json.loads(PACKAGED.read_text(encoding="utf-8"))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def operations():
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def resolve(node: dict) -> dict:
    while "$ref" in node:
        kind, name = node["$ref"].removeprefix("#/components/").split("/")
        node = SPEC["components"][kind][name]
    return node


def test_the_document_is_valid_openapi_3_1_with_valid_json_schemas():
    from schemathesis.specs.openapi.definitions import OPENAPI_31  # the OAS 3.1 meta-schema

    jsonschema.Draft202012Validator(OPENAPI_31).validate(SPEC)
    for name, schema in SPEC["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
    # every reference resolves
    references = [value for value in _walk(SPEC) if isinstance(value, dict) and "$ref" in value]
    assert references and all(resolve(reference) for reference in references)


def _walk(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _walk(child)


def test_every_route_is_described_and_nothing_else():
    assert set(SPEC["paths"]) == {route.path for route in ROUTES}
    assert OPENAPI_PATH in SPEC["paths"]


def test_the_infra_copy_is_the_packaged_document():
    # DESIGN.md keeps the API's description in infra/; the package serves it (infra/openapi.json is a
    # link to it, so they cannot drift)
    assert json.loads(INFRA.read_text(encoding="utf-8")) == SPEC


def test_every_error_answer_is_an_oauth_error_and_every_retry_names_when():
    for path, method, operation in operations():
        responses = {status: resolve(response) for status, response in operation["responses"].items()}
        # a client may always meet a dependency failure on what reads the store
        if path not in (OPENAPI_PATH, "/authorize") and not path.startswith("/authorized/"):
            assert "503" in responses, (path, method)
        for status, response in responses.items():
            if status in ("429", "503"):
                assert resolve(response["headers"]["Retry-After"])["required"] is True, (path, method, status)
            if status >= "400" and not path.startswith("/authorized/"):  # API Gateway answers there
                (media,) = response["content"].values()
                assert resolve(media["schema"]) is SPEC["components"]["schemas"]["OAuthError"], (path, method)
                assert "Cache-Control" in response["headers"], (path, method, status)
        if "requestBody" in operation:
            assert "413" in responses, (path, method)
        if status_401 := responses.get("401"):
            challenge = status_401.get("headers", {}).get("WWW-Authenticate")
            assert challenge or path.startswith("/authorized/"), (path, method)


def test_every_security_scheme_is_used_and_secrets_never_answered():
    used = {name for _, _, operation in operations() for requirement in operation.get("security", [])
            for name in requirement}
    assert used == set(SPEC["components"]["securitySchemes"])
    schemas = SPEC["components"]["schemas"]
    assert schemas["TokenResponse"]["properties"]["refresh_token"] is False  # never a refresh token
    assert all(schemas["Jwk"]["properties"][member] is False for member in ("d", "p", "q", "dp", "dq", "qi", "k"))
    assert {"client_secret": False, "registration_access_token": False}.items() <= \
        schemas["ClientRead"]["allOf"][1]["properties"].items()


def test_the_token_endpoint_describes_the_dpop_header():
    (parameter,) = [resolve(p) for p in SPEC["paths"]["/token"]["post"]["parameters"]]
    assert (parameter["name"], parameter["in"], parameter["required"]) == ("DPoP", "header", False)


# -- against the running server ------------------------------------------------------------------------
def test_the_server_serves_the_document_with_its_issuer(world):
    response = requests.get(world.issuer + OPENAPI_PATH, timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"].startswith("public, max-age=")
    assert response.json() == {**SPEC, "servers": [{"url": world.issuer}]}
    assert requests.head(world.issuer + OPENAPI_PATH, timeout=5).content == b""


@pytest.fixture(scope="module")
def tools_token(world):
    return world.token(world.issuer + "/tools", "tools:echo tools:time")


def undeclared(path: str) -> list[str]:
    declared = {method.upper() for method in SPEC["paths"][path] if method in METHODS}
    return [method for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "QUERY")
            if method not in declared and not (method == "HEAD" and "GET" in declared)]


def wrong_answers(world, token: str, requests_: list[tuple[str, str]]) -> list[str]:
    """What each (path, method) got that is not a 405 with Allow and an OAuth error (empty: all right)."""
    wrong = []
    for path, method in requests_:
        # with a valid token: behind the authorizer, API Gateway answers 401 before any method check
        target = path.replace("{client_id}", "tmc_unknown").replace("{tool}", "echo")
        response = requests.request(method, world.issuer + target, headers={"Authorization": f"Bearer {token}"},
                                    timeout=5)
        declared = {m.upper() for m in SPEC["paths"][path] if m in METHODS}
        allowed = {m.strip() for m in response.headers.get("Allow", "").split(",")}
        # HEAD: no content (RFC 9110 §9.3.2)
        error = response.json().get("error") if method != "HEAD" and response.content else "invalid_request"
        if (response.status_code, error, response.headers.get("Cache-Control")) != (405, "invalid_request", "no-store") \
                or not declared <= allowed:
            wrong.append(f"{method} {path}: {response.status_code} {response.text[:100]}")
    return wrong


@pytest.mark.parametrize("path", sorted(SPEC["paths"]))
def test_an_undeclared_method_gets_405_with_allow_and_an_oauth_error(world, tools_token, path):
    checked = [(path, method) for method in undeclared(path)]
    assert not wrong_answers(world, tools_token, checked)
