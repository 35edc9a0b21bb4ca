"""The HTTP API's routes: which function serves which path. template.yaml must say the same
(tests/template checks it), and the embedded server dispatches with this table."""

from __future__ import annotations

from typing import NamedTuple

from .oauth.metadata import JWKS_PATH, METADATA_PATHS, REGISTRATION_PATH, TOKEN_PATH


class Route(NamedTuple):
    path: str  # API Gateway syntax: {name} is a path parameter
    function: str  # the logical id in template.yaml
    handler: str  # module whose lambda_handler serves it


# Every route is "ANY": wrong methods reach the function and get a clear OAuth error, not a
# bare API Gateway 404.
ROUTES: tuple[Route, ...] = (
    Route(TOKEN_PATH, "TokenFunction", "tokenmint.handlers.token"),
    *(Route(path, "DiscoveryFunction", "tokenmint.handlers.discovery") for path in METADATA_PATHS),
    Route(JWKS_PATH, "DiscoveryFunction", "tokenmint.handlers.discovery"),
    Route(REGISTRATION_PATH, "RegistrationFunction", "tokenmint.handlers.registration"),
    Route(REGISTRATION_PATH + "/{client_id}", "RegistrationFunction", "tokenmint.handlers.registration"),
)
