"""The Client Credentials grant (RFC 6749 §4.4) with resource indicators (RFC 8707 §2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..ports import UnavailableError
from .access_token import AccessToken, issue_access_token
from .client_auth import authenticate_client, extract_credentials
from .errors import InvalidRequestError, InvalidScopeError, InvalidTargetError, UnsupportedGrantTypeError
from .resource import normalize_resource_identifier, select_resource
from .scope import grant_scopes, parse_scope

if TYPE_CHECKING:
    from ..ports import ClientStore, Clock, KeyStore, ResourceStore
    from .client_assertion import ClientAssertionVerifier
    from .form import Form
    from .models import Client, Resource

GRANT_TYPE = "client_credentials"
TOKEN_PATH = "/token"


def assertion_audiences(issuer: str, endpoint_path: str) -> tuple[str, ...]:
    """What a client assertion's ``aud`` may be (RFC 7523 §3): the issuer (with or without the
    trailing slash older MCP SDKs add), the token endpoint, or the endpoint it is sent to."""
    return tuple(dict.fromkeys((issuer, issuer + "/", issuer + TOKEN_PATH, issuer + endpoint_path)))
# last_used_at is written at most this often per client: one write per few minutes, not per token.
USAGE_RESOLUTION = 300


@dataclass(frozen=True)
class TokenResponse:
    """A successful §5.1 response and what the audit trail records about it."""

    client: Client
    resource: Resource
    token: AccessToken

    def body(self) -> dict[str, Any]:
        claims = self.token.claims
        return {
            "access_token": self.token.value,
            "token_type": "Bearer",
            "expires_in": claims["exp"] - claims["iat"],
            "scope": claims["scope"],
        }


class ClientCredentialsGrant:
    """§4.4.2 access token request → §4.4.3 response (never a refresh token)."""

    def __init__(self, clients: ClientStore, resources: ResourceStore, keys: KeyStore, clock: Clock,
                 assertions: ClientAssertionVerifier | None = None) -> None:
        self._clients = clients
        self._resources = resources
        self._keys = keys
        self._clock = clock
        self._assertions = assertions

    def create_token_response(self, form: Form, authorization: str | None, issuer: str) -> TokenResponse:
        # Check the request's syntax first: malformed requests cost no storage read.
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise InvalidRequestError("grant_type is required")
        if grant_type != GRANT_TYPE:
            raise UnsupportedGrantTypeError(f"grant_type must be {GRANT_TYPE}")
        scope = form.get("scope")
        requested_scopes = parse_scope(scope) if scope is not None else None
        resource_values = form.get_all("resource")
        if len(resource_values) > 1:
            raise InvalidTargetError("a token is for one resource; send one resource parameter")
        resource_key = normalize_resource_identifier(resource_values[0]) if resource_values else None
        credentials = extract_credentials(form, authorization)

        now = int(self._clock())
        client = authenticate_client(credentials, self._clients, now, self._assertions,
                                     audiences=assertion_audiences(issuer, TOKEN_PATH))
        resource = select_resource(resource_key, client, self._resources)
        scopes = grant_scopes(requested_scopes, client.scopes, resource.scopes)
        if not scopes:
            raise InvalidScopeError(
                "none of the requested scopes is both granted to this client and defined by the resource",
                client_id=client.client_id)
        token = issue_access_token(issuer=issuer, client_id=client.client_id, audience=resource.identifier,
                                   scopes=scopes, lifetime=resource.token_lifetime, now=now,
                                   key=self._keys.signing_key())
        if client.last_used_at is None or now - client.last_used_at >= USAGE_RESOLUTION:
            try:
                self._clients.record_client_use(client.client_id, now, USAGE_RESOLUTION)
            except UnavailableError:
                pass  # a usage stamp is not worth failing a signed token for; the next one retries
        return TokenResponse(client=client, resource=resource, token=token)
