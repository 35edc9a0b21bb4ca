"""Token revocation (RFC 7009) and introspection (RFC 7662) of tokenmint's own access tokens.

Both authenticate the calling client as the token endpoint does (RFC 6749 §2.3.1). A token is
checked with the server's current published keys, so a key removed from the JWKS (emergency
rollover) makes its tokens inactive too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..verifier import LocalKeys, StoreRevocationCheck, TokenRejected, TokenVerifier, VerifiedToken
from .access_token import token_type
from .client_auth import authenticate_client, extract_credentials
from .client_credentials import assertion_audiences
from .errors import InvalidRequestError, UnauthorizedClientError
from .metadata import INTROSPECTION_PATH, REVOCATION_PATH
from .resource import normalize_resource_identifier

if TYPE_CHECKING:
    from ..ports import ClientStore, Clock, KeyStore, RevocationStore
    from .client_assertion import ClientAssertionVerifier
    from .form import Form
    from .models import Client
    from .throttle import AuthenticationThrottle

INACTIVE = {"active": False}
REVOCATION_MARGIN = 60  # ≥ verifier.DEFAULT_LEEWAY


@dataclass(frozen=True)
class RevocationResult:
    client: Client
    revoked_jti: str | None  # None: nothing of this client's to revoke (still a 200, §2.2)


@dataclass(frozen=True)
class IntrospectionResult:
    caller: Client
    body: dict[str, Any]


class TokenStatusEndpoints:
    """The revocation (RFC 7009 §2) and introspection (RFC 7662 §2) endpoints."""

    def __init__(self, clients: ClientStore, revocations: RevocationStore, keys: KeyStore, clock: Clock,
                 assertions: ClientAssertionVerifier | None = None,
                 throttle: AuthenticationThrottle | None = None) -> None:
        self._clients, self._revocations, self._keys, self._clock = clients, revocations, keys, clock
        self._assertions = assertions
        self._throttle = throttle  # failed-authentication throttling, as at the token endpoint

    def _authenticate(self, form: Form, authorization: str | None, issuer: str, path: str,
                      source_ip: str | None, certificate: str | None) -> tuple[Client, str]:
        token = form.get("token")  # §2.1 both: required; a hint (access_token or not) changes nothing
        if token is None:
            raise InvalidRequestError("token is required")
        now = int(self._clock())
        client = authenticate_client(extract_credentials(form, authorization, certificate), self._clients, now,
                                     self._assertions, audiences=assertion_audiences(issuer, path),
                                     guard=self._throttle.guard(source_ip, now) if self._throttle else None)
        return client, token

    def _verify(self, token: str, issuer: str) -> VerifiedToken | None:
        # No leeway: the server's own clock decides, and an expired token is inactive (RFC 7662 §2.2).
        verifier = TokenVerifier(issuer=issuer, audience=None, keys=LocalKeys(self._keys.public_jwks), leeway=0,
                                 revocation=StoreRevocationCheck(self._clients, self._revocations), clock=self._clock)
        try:
            return verifier.inspect(token)  # a bound token is revocable and introspectable too
        except TokenRejected:
            return None

    def revoke(self, form: Form, authorization: str | None, issuer: str, *,
               source_ip: str | None = None, certificate: str | None = None) -> RevocationResult:
        """§2.1: a client revokes its own token. Invalid, expired, already revoked and other clients'
        tokens get the same 200 (§2.2), so the answer reveals nothing about them."""
        client, token = self._authenticate(form, authorization, issuer, REVOCATION_PATH, source_ip, certificate)
        verified = self._verify(token, issuer)
        if verified is None or verified.client_id != client.client_id:
            return RevocationResult(client, None)
        # Kept past exp by the skew resource servers allow on exp, so no verifier ever sees it revive.
        self._revocations.revoke_token(verified.jti, client.client_id, verified.expires_at + REVOCATION_MARGIN)
        return RevocationResult(client, verified.jti)

    def introspect(self, form: Form, authorization: str | None, issuer: str, *,
                   source_ip: str | None = None, certificate: str | None = None) -> IntrospectionResult:
        """§2.2: ``active`` and the token's claims, for callers allowed to introspect its audience;
        ``{"active": false}`` for anything else, including tokens of audiences the caller may not see."""
        caller, token = self._authenticate(form, authorization, issuer, INTROSPECTION_PATH, source_ip, certificate)
        if not caller.introspect:
            raise UnauthorizedClientError("this client may not call the introspection endpoint",
                                          client_id=caller.client_id)
        verified = self._verify(token, issuer)
        if verified is None or not caller.may_introspect(normalize_resource_identifier(verified.audience)):
            return IntrospectionResult(caller, dict(INACTIVE))
        claims = verified.claims
        # RFC 9449 §6.2 / RFC 8705 §3.2: a bound token's cnf tells the resource server what to check.
        body: dict[str, Any] = {
            "active": True, "token_type": token_type(claims),
            **{name: claims[name] for name in ("client_id", "sub", "scope", "aud", "iss", "exp", "iat", "jti",
                                               "nbf", "cnf") if name in claims}}
        return IntrospectionResult(caller, body)
