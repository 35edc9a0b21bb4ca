"""A sample protected resource: an "agent tools" API whose tools each need one scope, as MCP
recommends (one scope per tool). It shows both ways tokenmint protects an API:

- ``/tools/{tool}``: the function verifies the token itself (``tokenmint.verifier``) and answers
  401/403 with RFC 6750 / RFC 9728 challenges (``resource_metadata``, ``insufficient_scope``), which
  MCP clients need to discover the authorization server;
- ``/authorized/tools/<tool>``: API Gateway's Lambda authorizer (handlers/authorizer.py) has
  already decided, and passes the client and scopes in the request context.

``/.well-known/oauth-protected-resource/tools`` serves its RFC 9728 metadata.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths

from .. import runtime
from ..oauth.dpop import DPOP_ALGORITHMS
from ..oauth.errors import challenge as www_authenticate
from ..observability import audit, audit_source, logger, metrics
from ..verifier import LocalKeys, StoreRevocationCheck, TokenRejected, TokenVerifier
from . import http

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

TOOLS_PATH = "/tools"
METADATA_PATH = "/.well-known/oauth-protected-resource" + TOOLS_PATH
TOOLS = {"echo": "tools:echo", "time": "tools:time"}  # tool → the one scope it needs

app = http.create_resolver()
http.allow_only(app, METADATA_PATH, ("GET",))
for _tool_path in (TOOLS_PATH + "/<tool>", "/authorized" + TOOLS_PATH + "/<tool>"):
    http.allow_only(app, _tool_path, ("GET", "POST"))


def resource_identifier() -> str:
    settings = runtime.backend().settings
    return settings.tools_resource or http.issuer_of(app, settings.issuer) + TOOLS_PATH


def resource_metadata_url() -> str:
    """Where this function serves its RFC 9728 metadata. For the default identifier
    (<issuer>/tools) that is also the §3.1 location (well-known path between host and path); a
    challenge names the URL explicitly (§5.1), so a custom identifier still leads clients there."""
    return http.issuer_of(app, runtime.backend().settings.issuer) + METADATA_PATH


@app.route(METADATA_PATH, method=["GET", "HEAD"])
def handle_resource_metadata() -> Response:
    settings = runtime.backend().settings
    metadata = {
        "resource": resource_identifier(),
        "authorization_servers": [http.issuer_of(app, settings.issuer)],
        "scopes_supported": sorted(TOOLS.values()),
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),  # RFC 9449 §7.1; Bearer works too
        "resource_name": "tokenmint sample agent tools",
    }
    return http.json_response(200, metadata, {"Cache-Control": "public, max-age=300"})


def _run(tool: str, client_id: str) -> Response:
    if tool == "echo":
        body = http.raw_body(app, 4096).decode("utf-8", "replace")
        return http.json_response(200, {"tool": "echo", "client_id": client_id, "echo": body})
    return http.json_response(200, {"tool": "time", "client_id": client_id, "time": int(time.time())})


def _refuse(rejected: TokenRejected, presented: bool) -> Response:
    challenge = rejected.challenge(resource_metadata_url()) if presented else (
        www_authenticate("Bearer", realm="tokenmint", resource_metadata=resource_metadata_url()))
    audit("resource.denied", rejected.error, reason=rejected.description, **http.source(app))
    return http.json_response(rejected.status_code,
                              {"error": rejected.error, "error_description": rejected.description},
                              {"WWW-Authenticate": challenge, "Cache-Control": "no-store"})


@app.route(TOOLS_PATH + "/<tool>", method=["GET", "POST"])
def handle_tool(tool: str) -> Response:
    backend = runtime.backend()
    revocation = (StoreRevocationCheck(backend.clients, backend.revocations) if backend.settings.check_revocation
                  else None)
    verifier = TokenVerifier(issuer=http.issuer_of(app, backend.settings.issuer), audience=resource_identifier(),
                             keys=LocalKeys(backend.keys.public_jwks), revocation=revocation,
                             dpop_replay=backend.clients)  # proof jtis in the table: one use across instances
    authorization = http.header(app, "authorization")
    try:
        verified = verifier.verify_request(
            authorization, method=app.current_event.request_context.http.method, url=http.request_url(app),
            dpop=http.header(app, "dpop"), certificate=http.client_certificate(app),
            required_scopes=(TOOLS[tool],) if tool in TOOLS else ())
    except TokenRejected as rejected:
        return _refuse(rejected, presented=bool(authorization))
    if tool not in TOOLS:
        return http.json_response(404, {"error": "invalid_request", "error_description": f"no tool {tool!r}"},
                                  http.NO_STORE)
    return _run(tool, verified.client_id)


@app.route("/authorized" + TOOLS_PATH + "/<tool>", method=["GET", "POST"])
def handle_authorized_tool(tool: str) -> Response:
    # Reached only through the Lambda authorizer, which checked the route's scope.
    context = (app.current_event.raw_event.get("requestContext", {}).get("authorizer") or {}).get("lambda") or {}
    if tool not in TOOLS or "client_id" not in context:
        return http.json_response(404, {"error": "invalid_request", "error_description": "no such tool"})
    return _run(tool, context["client_id"])


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@audit_source
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
