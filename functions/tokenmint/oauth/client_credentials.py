"""The Client Credentials grant (RFC 6749 §4.4) with resource indicators (RFC 8707 §2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..ports import UnavailableError
from .access_token import AccessToken, issue_access_token
from .client_auth import authenticate_client, extract_credentials
from .dpop import InvalidDpopProofError, verify_proof
from .errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
    UnsupportedGrantTypeError,
)
from .mtls import CERTIFICATE_BOUND, certificate_thumbprint, load_certificate
from .resource import normalize_resource_identifier, select_resource
from .scope import grant_scopes, parse_scope

if TYPE_CHECKING:
    from ..ports import ClientStore, Clock, KeyStore, ReplayCache, ResourceStore
    from .client_assertion import ClientAssertionVerifier
    from .dpop import DpopProof
    from .form import Form
    from .models import Client, Resource
    from .throttle import AuthenticationThrottle

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
            "token_type": self.token.token_type,
            "expires_in": claims["exp"] - claims["iat"],
            "scope": claims["scope"],
        }


class ClientCredentialsGrant:
    """§4.4.2 access token request → §4.4.3 response (never a refresh token)."""

    def __init__(self, clients: ClientStore, resources: ResourceStore, keys: KeyStore, clock: Clock,
                 assertions: ClientAssertionVerifier | None = None, replay: ReplayCache | None = None,
                 throttle: AuthenticationThrottle | None = None) -> None:
        self._throttle = throttle  # failed-authentication throttling (oauth/throttle.py); None: off
        self._clients = clients
        self._replay = replay  # DPoP proof jtis (RFC 9449 §11.1); None: DPoP is not offered
        self._resources = resources
        self._keys = keys
        self._clock = clock
        self._assertions = assertions

    def create_token_response(self, form: Form, authorization: str | None, issuer: str, *,
                              dpop: str | None = None, endpoint_urls: tuple[str, ...] = (),
                              source_ip: str | None = None, certificate: str | None = None) -> TokenResponse:
        """``dpop`` is the request's DPoP header; ``endpoint_urls`` the URLs this endpoint answers at
        (a proof's htu must name one; default: the issuer's token endpoint); ``certificate`` the TLS
        client certificate the TLS layer verified (RFC 8705), if any."""
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
        credentials = extract_credentials(form, authorization, certificate)

        now = int(self._clock())
        proof = None
        if dpop is not None:  # checked before any storage read; its jti is spent only once all else passed
            if self._replay is None:
                raise InvalidDpopProofError("DPoP is not available here")
            proof = verify_proof(dpop, method="POST", urls=endpoint_urls or (issuer + TOKEN_PATH,), now=now)
        client = authenticate_client(credentials, self._clients, now, self._assertions,
                                     audiences=assertion_audiences(issuer, TOKEN_PATH),
                                     guard=self._throttle.guard(source_ip, now) if self._throttle else None)
        if proof is None and client.metadata.get("dpop_bound_access_tokens") is True:
            raise InvalidDpopProofError("this client must send a DPoP proof (dpop_bound_access_tokens)",
                                        client_id=client.client_id)
        resource = select_resource(resource_key, client, self._resources)
        scopes = grant_scopes(requested_scopes, client.scopes, resource.scopes)
        if not scopes:
            raise InvalidScopeError(
                "none of the requested scopes is both granted to this client and defined by the resource",
                client_id=client.client_id)
        confirmation = _confirmation(client, proof, certificate)
        if proof is not None:
            self._spend(proof, client)
        token = issue_access_token(issuer=issuer, client_id=client.client_id, audience=resource.identifier,
                                   scopes=scopes, lifetime=resource.token_lifetime, now=now,
                                   key=self._keys.signing_key(), confirmation=confirmation)
        if client.last_used_at is None or now - client.last_used_at >= USAGE_RESOLUTION:
            try:
                self._clients.record_client_use(client.client_id, now, USAGE_RESOLUTION)
            except UnavailableError:
                pass  # a usage stamp is not worth failing a signed token for; the next one retries
        return TokenResponse(client=client, resource=resource, token=token)

    def _spend(self, proof: DpopProof, client: Client) -> None:
        assert self._replay is not None
        if not self._replay.use_once(proof.replay_key, proof.replay_expires_at):
            raise InvalidDpopProofError("the DPoP proof was already used", client_id=client.client_id)


def _confirmation(client: Client, proof: DpopProof | None, certificate: str | None) -> dict[str, str]:
    """The keys the token is bound to (RFC 7800 ``cnf``): the DPoP proof's (RFC 9449 §6.1), and the
    TLS client certificate's for clients registered for certificate-bound tokens (RFC 8705 §3)."""
    confirmation = {"jkt": proof.jkt} if proof is not None else {}
    if client.metadata.get(CERTIFICATE_BOUND) is True:
        if not certificate:
            raise InvalidClientError("this client's tokens are bound to its TLS client certificate: "
                                     "connect with it (mtls_endpoint_aliases)", client_id=client.client_id)
        confirmation["x5t#S256"] = certificate_thumbprint(load_certificate(certificate))
    return confirmation
