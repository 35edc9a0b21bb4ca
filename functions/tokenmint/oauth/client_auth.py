"""Client authentication (RFC 6749 §2.3): client_secret_basic and client_secret_post (§2.3.1),
private_key_jwt (RFC 7523 §2.2, in client_assertion.py), and mutual TLS (RFC 8705 §2:
tls_client_auth and self_signed_tls_client_auth, in mtls.py)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from .client_assertion import ASSERTION_TYPE, ClientAssertionVerifier
from .credentials import MAX_CLIENT_ID_LENGTH, MAX_SECRET_LENGTH, verify_secret
from .errors import InvalidClientError, InvalidRequestError
from .models import CLIENT_SECRET_BASIC, CLIENT_SECRET_POST, MTLS_AUTH_METHODS, PRIVATE_KEY_JWT
from .mtls import authenticate_certificate, load_certificate
from .throttle import ThrottledError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..ports import ClientStore
    from .form import Form
    from .models import Client
    from .throttle import AuthenticationGuard


@dataclass(frozen=True)
class PresentedCredentials:
    """What the request claims: a client id, the method it used and the secret it sent."""

    method: str
    client_id: str | None  # for private_key_jwt: the body's client_id, optional (RFC 7521 §4.2)
    secret: str = ""
    assertion: str = ""
    certificate: str = ""  # mutual TLS: the PEM the TLS layer verified (RFC 8705 §2)

    def __repr__(self) -> str:  # never let the secret reach a log or a traceback
        return f"PresentedCredentials(method={self.method!r}, client_id={self.client_id!r})"


# A request that proves its client with the TLS client certificate alone (RFC 8705 §2): the
# client's registered method says which of the two mTLS methods applies.
MUTUAL_TLS = "mutual_tls"


def extract_credentials(form: Form, authorization: str | None, certificate: str | None = None) -> PresentedCredentials:
    """Find the one authentication method the request uses; more than one is an error (§2.3).
    ``certificate``: the TLS client certificate, when the connection had one; it authenticates a
    request that sends only ``client_id`` (RFC 8705 §2), and is otherwise left to token binding."""
    body_id, body_secret = form.get("client_id"), form.get("client_secret")
    assertion_type, assertion = form.get("client_assertion_type"), form.get("client_assertion")
    if assertion_type is not None or assertion is not None:
        if authorization is not None or body_secret is not None:
            raise InvalidRequestError("use one client authentication method, not a secret and an assertion")
        if assertion_type != ASSERTION_TYPE or assertion is None:
            raise InvalidRequestError(f"client_assertion_type must be {ASSERTION_TYPE}, with a client_assertion")
        return PresentedCredentials(PRIVATE_KEY_JWT, body_id, assertion=assertion)
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            raise InvalidClientError("unsupported authentication scheme; use Basic or client_secret_post")
        if body_secret is not None:
            raise InvalidRequestError("use one client authentication method, not both Basic and client_secret")
        client_id, secret = _decode_basic(value.strip())
        if body_id is not None and body_id != client_id:
            raise InvalidRequestError("client_id does not match the Basic credentials")
        return PresentedCredentials(CLIENT_SECRET_BASIC, client_id, secret)
    if body_secret is not None:
        if body_id is None:
            raise InvalidRequestError("client_id is required with client_secret")
        return PresentedCredentials(CLIENT_SECRET_POST, body_id, body_secret)
    if body_id is not None and certificate:
        return PresentedCredentials(MUTUAL_TLS, body_id, certificate=certificate)
    raise InvalidClientError("client authentication is required")


def _decode_basic(value: str) -> tuple[str, str]:
    """§2.3.1: the id and secret are form-encoded, joined by a colon, then base64-encoded."""
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
        encoded_id, colon, encoded_secret = decoded.partition(":")
        client_id = unquote_plus(encoded_id, errors="strict")
        secret = unquote_plus(encoded_secret, errors="strict")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidClientError("malformed Basic credentials") from None
    if not colon or not client_id or not secret:
        raise InvalidClientError("malformed Basic credentials")
    return client_id, secret


def authenticate_client(credentials: PresentedCredentials, clients: ClientStore, now: int,
                        assertions: ClientAssertionVerifier | None = None, audiences: tuple[str, ...] = (),
                        guard: AuthenticationGuard | None = None) -> Client:
    """The registered client the credentials prove, or :class:`InvalidClientError`.

    Unknown client and wrong secret get the same answer and the same store writes; in time they
    differ only by reading the client's record (docs/security.md, "Abuse resistance"). ``audiences`` are the
    values a client assertion's ``aud`` may name (this server's issuer, its endpoints). ``guard``
    (oauth/throttle.py, RFC 6749 §10.10) refuses a source over its limit before anything is read, a
    (client, source) that failed too often right after the client is read, both before any
    credential is checked, and counts failures and refusals by a block alike.
    """
    if guard is None:
        return _authenticate(credentials, clients.get_client, now, assertions, audiences)
    guard.refuse_if_over_limit()
    try:
        return _authenticate(credentials, guard.lookup(clients.get_client), now, assertions, audiences)
    except (InvalidClientError, ThrottledError) as exc:
        raise guard.failed(exc) from None


def _authenticate(credentials: PresentedCredentials, client_for: Callable[[str], Client | None], now: int,
                  assertions: ClientAssertionVerifier | None, audiences: tuple[str, ...]) -> Client:
    if credentials.method == PRIVATE_KEY_JWT:
        if assertions is None:
            raise InvalidClientError("private_key_jwt is not available here")
        return assertions.authenticate(credentials.assertion, credentials.client_id, client_for,
                                       audiences=audiences, now=now)
    assert credentials.client_id is not None
    if credentials.method == MUTUAL_TLS:
        return _authenticate_by_certificate(credentials.client_id, credentials.certificate, client_for, now, assertions)
    client = None
    if len(credentials.client_id) <= MAX_CLIENT_ID_LENGTH and len(credentials.secret) <= MAX_SECRET_LENGTH:
        client = client_for(credentials.client_id)
    hashes = None if client is None else tuple(s.hash for s in client.secrets if s.is_valid_at(now))
    if not verify_secret(credentials.secret[:MAX_SECRET_LENGTH], hashes) or client is None:
        raise InvalidClientError(client_id=client.client_id if client else None)
    if client.auth_method != credentials.method:
        raise InvalidClientError(f"this client must authenticate with {client.auth_method}",
                                 client_id=client.client_id)
    if client.disabled:
        raise InvalidClientError("this client is disabled", client_id=client.client_id)
    return client


def _authenticate_by_certificate(client_id: str, pem: str, client_for: Callable[[str], Client | None], now: int,
                                 assertions: ClientAssertionVerifier | None) -> Client:
    certificate = load_certificate(pem)
    client = client_for(client_id) if len(client_id) <= MAX_CLIENT_ID_LENGTH else None
    if client is None or client.auth_method not in MTLS_AUTH_METHODS:
        raise InvalidClientError(client_id=client.client_id if client else None)
    # A self-signed client's certificates are in its jwks or jwks_uri (x5c), fetched like assertion keys.
    authenticate_certificate(client, certificate, now,
                             client_keys=lambda: assertions.client_keys(client) if assertions else [])
    if client.disabled:
        raise InvalidClientError("this client is disabled", client_id=client.client_id)
    return client
