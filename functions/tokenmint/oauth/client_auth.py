"""Client authentication (RFC 6749 §2.3): client_secret_basic and client_secret_post (§2.3.1), and
private_key_jwt (RFC 7523 §2.2, in client_assertion.py)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from .credentials import MAX_CLIENT_ID_LENGTH, MAX_SECRET_LENGTH, verify_secret
from .errors import InvalidClientError, InvalidRequestError
from .client_assertion import ASSERTION_TYPE, ClientAssertionVerifier
from .models import CLIENT_SECRET_BASIC, CLIENT_SECRET_POST, PRIVATE_KEY_JWT

if TYPE_CHECKING:
    from ..ports import ClientStore
    from .form import Form
    from .models import Client


@dataclass(frozen=True)
class PresentedCredentials:
    """What the request claims: a client id, the method it used and the secret it sent."""

    method: str
    client_id: str | None  # for private_key_jwt: the body's client_id, optional (RFC 7521 §4.2)
    secret: str = ""
    assertion: str = ""

    def __repr__(self) -> str:  # never let the secret reach a log or a traceback
        return f"PresentedCredentials(method={self.method!r}, client_id={self.client_id!r})"


def extract_credentials(form: Form, authorization: str | None) -> PresentedCredentials:
    """Find the one authentication method the request uses; more than one is an error (§2.3)."""
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
                        assertions: ClientAssertionVerifier | None = None, audiences: tuple[str, ...] = ()) -> Client:
    """The registered client the credentials prove, or :class:`InvalidClientError`.

    Unknown client and wrong secret are indistinguishable, in answer and in time. ``audiences``
    are the values a client assertion's ``aud`` may name (this server's issuer, its endpoints).
    """
    if credentials.method == PRIVATE_KEY_JWT:
        if assertions is None:
            raise InvalidClientError("private_key_jwt is not available here")
        return assertions.authenticate(credentials.assertion, credentials.client_id, clients.get_client,
                                       audiences=audiences, now=now)
    assert credentials.client_id is not None
    client = None
    if len(credentials.client_id) <= MAX_CLIENT_ID_LENGTH and len(credentials.secret) <= MAX_SECRET_LENGTH:
        client = clients.get_client(credentials.client_id)
    hashes = None if client is None else tuple(s.hash for s in client.secrets if s.is_valid_at(now))
    if not verify_secret(credentials.secret[:MAX_SECRET_LENGTH], hashes) or client is None:
        raise InvalidClientError(client_id=client.client_id if client else None)
    if client.auth_method != credentials.method:
        raise InvalidClientError(f"this client must authenticate with {client.auth_method}",
                                 client_id=client.client_id)
    if client.disabled:
        raise InvalidClientError("this client is disabled", client_id=client.client_id)
    return client
