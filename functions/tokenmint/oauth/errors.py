"""OAuth error responses (RFC 6749 §5.2, RFC 8707 §2, RFC 6750 §3.1): one hierarchy, rendered in one place."""

from __future__ import annotations

import re

# RFC 6750 §3: error_description, error and scope values are NQSCHAR (%x20-21 / %x23-5B / %x5D-7E),
# which is also safe inside an RFC 9110 §5.6.4 quoted-string. Anything else, CR and LF first, never
# reaches a header: a double quote becomes a single one, every other character a "?".
_NOT_NQSCHAR = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')


def challenge(scheme: str, **params: str | None) -> str:
    """A ``WWW-Authenticate`` challenge (RFC 9110 §11.6.1): ``scheme`` and its auth-params as quoted
    strings, in the order given (None: left out). The one place challenges are written, so that no
    client-controlled text (a DPoP proof's ``htm``, a description naming what a client sent) can end
    a header or start another."""
    rendered = [f'{name}="{_NOT_NQSCHAR.sub("?", value.replace(chr(34), chr(39)))}"'
                for name, value in params.items() if value is not None]
    return f"{scheme} {', '.join(rendered)}" if rendered else scheme


class OAuthError(Exception):
    """An error the client caused and can read: rendered as ``{"error", "error_description"}``.

    ``description`` is shown to the client, so it must never contain a secret or a token.
    ``detail`` never reaches the client: it says what went wrong inside (why a client's
    ``jwks_uri`` could not be fetched), for the audit trail.
    """

    error = "invalid_request"
    status_code = 400
    detail: str | None = None

    def __init__(self, description: str, *, client_id: str | None = None, detail: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        # For the audit trail only: who the failing request was about, when known, and what failed.
        self.client_id = client_id
        self.detail = detail

    @property
    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class InvalidRequestError(OAuthError):
    error = "invalid_request"


class MethodNotAllowedError(InvalidRequestError):
    status_code = 405

    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"method {method} is not allowed here; use {', '.join(allowed)}")
        self.allowed = allowed

    @property
    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class PayloadTooLargeError(InvalidRequestError):
    status_code = 413


class NotFoundError(InvalidRequestError):
    status_code = 404


class InvalidClientError(OAuthError):
    """401 with a Basic challenge (RFC 6749 §5.2; RFC 9110 §15.5.2 wants a challenge on every 401)."""

    error = "invalid_client"
    status_code = 401

    def __init__(self, description: str = "client authentication failed", *,
                 client_id: str | None = None, detail: str | None = None) -> None:
        super().__init__(description, client_id=client_id, detail=detail)

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": challenge("Basic", realm="tokenmint", charset="UTF-8")}


class UnauthorizedClientError(OAuthError):
    """An authenticated client asked for something it may not do (RFC 6749 §5.2; 403, since it is
    authenticated: calling the introspection endpoint without the permission, RFC 7662 §2.1)."""

    error = "unauthorized_client"
    status_code = 403


class UnsupportedGrantTypeError(OAuthError):
    error = "unsupported_grant_type"


class InvalidScopeError(OAuthError):
    error = "invalid_scope"


class InvalidTargetError(OAuthError):
    """RFC 8707 §2: the requested resource is invalid, unknown or malformed."""

    error = "invalid_target"


class ServerError(OAuthError):
    error = "server_error"
    status_code = 500


class TemporarilyUnavailableError(OAuthError):
    """A dependency (KMS, DynamoDB) is throttled or down: the client should retry later."""

    error = "temporarily_unavailable"
    status_code = 503

    def __init__(self, description: str = "the service is temporarily unavailable; retry later",
                 *, retry_after: int = 1) -> None:
        super().__init__(description)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class InvalidTokenError(OAuthError):
    """RFC 6750 §3.1: a missing, unknown, expired or used-up bearer token (401, Bearer challenge).

    The challenge names the error only when a token was presented (§3.1: a request without
    authentication gets no error code in the challenge).
    """

    error = "invalid_token"
    status_code = 401

    def __init__(self, description: str, *, token_presented: bool = True, client_id: str | None = None) -> None:
        super().__init__(description, client_id=client_id)
        self.token_presented = token_presented

    @property
    def headers(self) -> dict[str, str]:
        if not self.token_presented:
            return {"WWW-Authenticate": challenge("Bearer", realm="tokenmint")}
        return {"WWW-Authenticate": challenge("Bearer", realm="tokenmint", error=self.error,
                                              error_description=self.description)}


class InvalidClientMetadataError(OAuthError):
    """RFC 7591 §3.2.2: a metadata value is invalid or outside what this server or policy allows."""

    error = "invalid_client_metadata"


class InvalidSoftwareStatementError(OAuthError):
    error = "invalid_software_statement"


class UnapprovedSoftwareStatementError(OAuthError):
    error = "unapproved_software_statement"


class ConcurrentUpdateError(InvalidRequestError):
    """Another update won the race (optimistic concurrency): nothing was written."""

    status_code = 409
