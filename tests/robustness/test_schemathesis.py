"""schemathesis against the OpenAPI description the real ``tokenmint serve`` serves at /openapi.json.

Every operation gets its examples, schemathesis's coverage cases (boundaries, missing and wrong
values, undeclared methods) and a bounded number of fuzzed cases, with valid credentials for the
operation (so the cases get past authentication): no answer may be a 5xx, and every answer must be
one the description declares, with the declared content type, body schema and headers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

OPENAPI = Path(__file__).resolve().parents[2] / "functions" / "tokenmint" / "openapi.json"
TOOLS_SCOPES = "tools:echo tools:time"
# Undeclared methods (schemathesis's unsupported_method) have a test of their own, over every route
# and method: test_openapi.py. Deliberately not checked: positive_data_acceptance (a schema cannot say which resources, scopes or
# client ids exist, so valid-looking requests are rightly refused) and negative_data_rejection (RFC
# 6749 §3.1 and RFC 7591 §2 require unknown parameters and members to be ignored, not refused).
CHECKS = [getattr(schemathesis.checks, name) for name in (
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
    "response_headers_conformance", "ignored_auth")]
# Abuse limits off: fuzzing fails authentication and registers clients far faster than any client
# should, and a 429 for the valid cases would hide what they reach (the limits have tests of their own).
SERVER_ENV = {"TOKENMINT_AUTH_FAILURES_PER_CLIENT_SOURCE": "0", "TOKENMINT_AUTH_FAILURES_PER_SOURCE": "0",
              "TOKENMINT_REGISTRATIONS_PER_SOURCE": "0"}


# The packaged document, which /openapi.json serves (test_openapi.py checks they are the same):
# loaded at collection, when no server runs yet, and called at the running server's issuer.
schema = schemathesis.openapi.from_path(OPENAPI)


@pytest.fixture(scope="module")
def tools_token(world) -> str:
    return world.token(world.issuer + "/tools", TOOLS_SCOPES)


# schemathesis applies credentials where a case is not about missing or wrong ones (and its
# ignored_auth check then probes those refusals itself). Cases are built at collection, before the
# server runs, so the provider marks them and the test puts in the real credentials.
VALID_CREDENTIALS = "Bearer (valid credentials for this operation)"


@schema.auth(refresh_interval=None, retry_on=[])
class ValidCredentials:
    def get(self, case, context):
        return VALID_CREDENTIALS

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": data}


def with_credentials(case, world, tools_token: str) -> None:
    """Real credentials for the operation, where the provider marked the case for them."""
    if (case.headers or {}).get("Authorization") != VALID_CREDENTIALS:
        return
    path = case.operation.path
    if path in ("/token", "/revoke", "/introspect"):
        authorization = requests.auth._basic_auth_str(world.client_id, world.client_secret)
    elif path == "/register":
        authorization = f"Bearer {world.initial_access_token}"
    elif path == "/register/{client_id}":
        # a registration of its own for each case: an update rotates the token, a delete ends the client
        created = world.register(client_name="schemathesis", scope="demo:read")
        authorization = f"Bearer {created['registration_access_token']}"
        case.path_parameters = {**(case.path_parameters or {}), "client_id": created["client_id"]}
        if isinstance(case.body, dict) and "client_id" in case.body:
            case.body = {**case.body, "client_id": created["client_id"]}
    else:  # the sample tools API
        authorization = f"Bearer {tools_token}"
    case.headers = {**case.headers, "Authorization": authorization}


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_openapi_description_says(case, world, tools_token):
    if case.method.upper() != case.operation.method.upper():
        return  # an undeclared method: test_openapi.py
    with_credentials(case, world, tools_token)
    case.call_and_validate(base_url=world.issuer, checks=CHECKS, timeout=10)
