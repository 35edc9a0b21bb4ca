"""The HTTP API's routes: which function serves which path. template.yaml must say the same
(tests/template checks it), and the embedded server dispatches with this table."""

from __future__ import annotations

from typing import NamedTuple

from .oauth.metadata import (
    AUTHORIZATION_PATH,
    INTROSPECTION_PATH,
    JWKS_PATH,
    METADATA_PATHS,
    REGISTRATION_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
)

# The OpenAPI description of this API (functions/tokenmint/openapi.json), served by discovery.
OPENAPI_PATH = "/openapi.json"


class Route(NamedTuple):
    path: str  # API Gateway syntax: {name} is a path parameter
    function: str  # the logical id in template.yaml
    handler: str  # module whose lambda_handler serves it
    authorizer: str | None = None  # the HTTP API authorizer in front of it (template.yaml name)


# The Lambda authorizer: its name in the HTTP API, its function and module.
AUTHORIZER = ("TokenmintAuthorizer", "AuthorizerFunction", "tokenmint.handlers.authorizer")
TOOLS = "tokenmint.handlers.tools"
# The scopes each authorizer-protected route needs (TOKENMINT_AUTHORIZER_ROUTES in template.yaml).
SAMPLE_AUTHORIZER_ROUTES = {"ANY /authorized/tools/echo": "tools:echo", "ANY /authorized/tools/time": "tools:time"}


# Every route is "ANY": wrong methods reach the function and get a clear OAuth error, not a
# bare API Gateway 404.
ROUTES: tuple[Route, ...] = (
    Route(TOKEN_PATH, "TokenFunction", "tokenmint.handlers.token"),
    *(Route(path, "DiscoveryFunction", "tokenmint.handlers.discovery") for path in METADATA_PATHS),
    Route(JWKS_PATH, "DiscoveryFunction", "tokenmint.handlers.discovery"),
    Route(AUTHORIZATION_PATH, "DiscoveryFunction", "tokenmint.handlers.discovery"),
    Route(OPENAPI_PATH, "DiscoveryFunction", "tokenmint.handlers.discovery"),
    Route(REGISTRATION_PATH, "RegistrationFunction", "tokenmint.handlers.registration"),
    Route(REGISTRATION_PATH + "/{client_id}", "RegistrationFunction", "tokenmint.handlers.registration"),
    Route(REVOCATION_PATH, "RevocationFunction", "tokenmint.handlers.revocation"),
    Route(INTROSPECTION_PATH, "IntrospectionFunction", "tokenmint.handlers.introspection"),
    # The sample protected resource (handlers/tools.py), served beside the authorization server.
    Route("/tools/{tool}", "ToolsFunction", TOOLS),
    Route("/.well-known/oauth-protected-resource/tools", "ToolsFunction", TOOLS),
    *(Route(route.split(" ", 1)[1], "ToolsFunction", TOOLS, AUTHORIZER[0]) for route in SAMPLE_AUTHORIZER_ROUTES),
)
