"""Dynamic client registration (RFC 7591) and its management protocol (RFC 7592).

Registration is never open: every request carries an initial access token (RFC 7591 §3) whose
policy bounds what the client may obtain; the policy is kept on the client so that updates stay
within it. Management requests carry the client's registration access token, which every update
rotates. This server has no user-facing flows, so redirect URIs and other user-facing metadata
are refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..ports import ConflictError, InitialAccessTokenSpentError
from .credentials import (
    INITIAL_ACCESS_TOKEN_PREFIX,
    REGISTRATION_ACCESS_TOKEN_PREFIX,
    generate_client_id,
    generate_client_secret,
    generate_token,
    hash_secret,
    verify_secret,
)
from .errors import (
    ConcurrentUpdateError,
    InvalidClientMetadataError,
    InvalidScopeError,
    InvalidSoftwareStatementError,
    InvalidTokenError,
    OAuthError,
    PayloadTooLargeError,
    UnapprovedSoftwareStatementError,
)
from .json_text import parse_json, unverified_jwt
from .jwk import CLOCK_SKEW, PRIVATE_JWK_MEMBERS, SIGNING_ALGORITHMS
from .metadata import REGISTRATION_PATH
from .models import (
    CLIENT_SECRET_BASIC,
    MAX_TOKEN_LIFETIME,
    PRIVATE_KEY_JWT,
    SECRET_AUTH_METHODS,
    SELF_SIGNED_TLS_CLIENT_AUTH,
    SUPPORTED_AUTH_METHODS,
    TLS_CLIENT_AUTH,
    Client,
    ClientSecret,
    InitialAccessToken,
    RegistrationPolicy,
)
from .mtls import (
    CERTIFICATE_BOUND,
    ISSUER_METADATA,
    SUBJECT_METADATA,
    ca_problem,
    validate_subject_metadata,
    x5c_certificate,
    x5c_leaf,
)
from .scope import parse_scope
from .text import UNREADABLE

if TYPE_CHECKING:
    from ..ports import ClientStore, Clock, RegistrationStore
    from .throttle import AuthenticationThrottle

JSON_MEDIA_TYPE = "application/json"
MAX_METADATA_BYTES = 32 * 1024
MAX_JWKS_KEYS = 10
MIN_RSA_BITS = 2048
# Tokens issued in the second of a deletion are invalid too; marks outlive every token.
# User-facing metadata (RFC 7591 §2, OpenID Connect Registration): meaningless without a user.
USER_FACING_METADATA = (
    "redirect_uris", "logo_uri", "client_uri", "policy_uri", "tos_uri", "post_logout_redirect_uris",
    "initiate_login_uri", "frontchannel_logout_uri", "backchannel_logout_uri", "request_uris",
    "sector_identifier_uri", "default_max_age", "require_auth_time", "default_acr_values",
)
# RFC 7592 §2.2: these are the server's to set; an update must not send them.
SERVER_SET_FIELDS = ("registration_access_token", "registration_client_uri", "client_secret_expires_at",
                     "client_id_issued_at")
# Claims of a software statement that describe the statement itself, not the client.
_STATEMENT_ONLY_CLAIMS = frozenset({"iss", "sub", "aud", "iat", "nbf", "exp", "jti"})
STATEMENT_ALGORITHMS = tuple(SIGNING_ALGORITHMS)  # asymmetric only


@dataclass(frozen=True)
class ClientMetadata:
    """The RFC 7591 §2 metadata this server understands, validated. Unknown members are ignored (§2)."""

    token_endpoint_auth_method: str = CLIENT_SECRET_BASIC
    grant_types: list[str] = field(default_factory=lambda: ["client_credentials"])
    scope: str | None = None
    client_name: str | None = None
    contacts: list[str] | None = None
    software_id: str | None = None
    software_version: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    # RFC 9449 §5.2: every token request of this client must carry a DPoP proof.
    dpop_bound_access_tokens: bool | None = None
    # RFC 8705 §2.1.2: the one subject a tls_client_auth client's certificate carries; §3.4: bound tokens.
    tls_client_auth_subject_dn: str | None = None
    tls_client_auth_san_dns: str | None = None
    tls_client_auth_san_uri: str | None = None
    tls_client_auth_san_ip: str | None = None
    tls_client_auth_san_email: str | None = None
    tls_client_certificate_bound_access_tokens: bool | None = None
    # tokenmint extension (oauth/mtls.py): the CA that must have issued a tls_client_auth client's certificate.
    tokenmint_tls_client_auth_issuer_dn: str | None = None


# RFC 8705 §2.1.2's members and tokenmint's issuer: for tls_client_auth clients only.
TLS_CLIENT_AUTH_METADATA = (*SUBJECT_METADATA, ISSUER_METADATA)
# What a client's record keeps of its validated metadata (the rest has fields of its own).
STORED_METADATA = ("contacts", "software_id", "software_version", "jwks", "jwks_uri", "dpop_bound_access_tokens",
                   CERTIFICATE_BOUND, *TLS_CLIENT_AUTH_METADATA)


def _text(min_length: int, max_length: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, str) or not min_length <= len(value) <= max_length:
            return f"must be a string of {min_length} to {max_length} characters"
        if UNREADABLE.search(value):  # people read it: in `client list`, the console, the audit trail
            return "must not contain control characters"
        return None
    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _auth_method(value: Any) -> str | None:
    return None if value in SUPPORTED_AUTH_METHODS else f"must be one of {', '.join(SUPPORTED_AUTH_METHODS)}"


def _grant_types(value: Any) -> str | None:
    if not isinstance(value, list) or not value or any(grant != "client_credentials" for grant in value):
        return 'must be ["client_credentials"]: the only grant this server issues'
    return None


def _contacts(value: Any) -> str | None:
    address = _text(3, 254)
    if not isinstance(value, list) or len(value) > 10 or any(address(item) for item in value):
        return "must be a list of at most 10 strings of 3 to 254 characters"
    return None


def _scope(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string of space-separated scopes"
    try:
        parse_scope(value)
    except InvalidScopeError as exc:
        return exc.description
    return None


def _jwk_set(value: Any) -> str | None:
    keys = value.get("keys") if isinstance(value, dict) else None
    if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_JWKS_KEYS:
        return f"must be a JWK Set with 1 to {MAX_JWKS_KEYS} keys"
    for key in keys:
        # A tuple, not a dict or set: kty may be unhashable.
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC", "OKP"):
            return "each key must be an RSA, EC or OKP JWK"
        if PRIVATE_JWK_MEMBERS.intersection(key):
            return "must hold public keys only"
        for member in key.values():  # RFC 7517 §4: strings, or lists of strings (key_ops, x5c)
            if not (isinstance(member, str) or (isinstance(member, list) and all(isinstance(v, str) for v in member))):
                return "JWK members must be strings or lists of strings"
    import jwt  # here, not at import: only registrations that carry keys need it

    for index, key in enumerate(keys):  # the key material itself (an empty n, a point off the curve, ...)
        curves = _JWK_ALGORITHM[key["kty"]]
        crv = None if key["kty"] == "RSA" else key.get("crv")
        algorithm = curves.get(crv) if crv is None or isinstance(crv, str) else None
        if algorithm is None:
            return f"key {index}: {key['kty']} keys must be on {', '.join(map(str, curves))}"
        try:
            public_key = jwt.PyJWK(key, algorithm=algorithm).key  # whatever its alg member says
        except Exception:  # noqa: BLE001 - a parser of untrusted input: any failure means unusable
            return f"key {index} is not a usable {key['kty']} public key"
        if key["kty"] == "RSA" and public_key.key_size < MIN_RSA_BITS:
            return f"key {index}: RSA keys must have at least {MIN_RSA_BITS} bits (RFC 7518 §3.3)"
        if "x5c" in key and not _certifies(x5c_leaf(key), public_key):
            return f"key {index}: x5c must start with a base64 DER certificate of this key (RFC 7517 §4.7)"
    return None


def _certifies(leaf: bytes | None, public_key: Any) -> bool:
    """Whether ``leaf`` (DER) is a certificate of ``public_key``."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if leaf is None:
        return False
    try:
        certified = x509.load_der_x509_certificate(leaf).public_key()
        return (certified.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
                == public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
    except Exception:  # noqa: BLE001 - a parser of untrusted input: any failure means no
        return False


# The algorithm each JWK's material is loaded with, by curve: what it is, not what it may sign.
_JWK_ALGORITHM: dict[str, dict[str | None, str]] = {
    "RSA": {None: "RS256"}, "EC": {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"},
    "OKP": {"Ed25519": "EdDSA", "Ed448": "EdDSA"},
}


def _https_url(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 2048:
        return "must be an https URL of at most 2048 characters"
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.fragment:
        return "must be an https URL without a fragment"
    return None


# Each member's check: None when the value is fine, else what is wrong with it.
_MEMBER_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "token_endpoint_auth_method": _auth_method,
    "grant_types": _grant_types,
    "scope": _scope,
    "client_name": _text(1, 200),
    "contacts": _contacts,
    "software_id": _text(1, 200),
    "software_version": _text(1, 200),
    "jwks": _jwk_set,
    "jwks_uri": _https_url,
    "dpop_bound_access_tokens": _boolean,
    "tls_client_auth_subject_dn": _text(1, 1024),
    "tls_client_auth_san_dns": _text(1, 253),
    "tls_client_auth_san_uri": _text(1, 2048),
    "tls_client_auth_san_ip": _text(1, 64),
    "tls_client_auth_san_email": _text(3, 254),
    ISSUER_METADATA: _text(1, 1024),
    CERTIFICATE_BOUND: _boolean,
}


def _consistency(metadata: ClientMetadata) -> str | None:
    """What is wrong with the members together, if anything."""
    if metadata.jwks is not None and metadata.jwks_uri is not None:
        return "jwks and jwks_uri must not both be present (RFC 7591 §2)"
    method = metadata.token_endpoint_auth_method
    if method in (PRIVATE_KEY_JWT, SELF_SIGNED_TLS_CLIENT_AUTH) and metadata.jwks is None and metadata.jwks_uri is None:
        return f"{method} needs the client's public keys in jwks or jwks_uri"
    if method == SELF_SIGNED_TLS_CLIENT_AUTH and metadata.jwks is not None and not any(
            key.get("x5c") for key in metadata.jwks["keys"]):
        return "self_signed_tls_client_auth needs its certificate as x5c in a jwks key (RFC 8705 §2.2.2)"
    if method == SELF_SIGNED_TLS_CLIENT_AUTH and metadata.jwks is not None:
        for index, key in enumerate(metadata.jwks["keys"]):
            certificate = x5c_certificate(key)
            problem = ca_problem(certificate) if certificate is not None else None
            if problem:
                return f"jwks: key {index}: the x5c certificate {problem}"
    subject = {name: getattr(metadata, name) for name in TLS_CLIENT_AUTH_METADATA}
    if method == TLS_CLIENT_AUTH:
        return validate_subject_metadata(subject)
    given = [name for name, value in subject.items() if value is not None]
    if given:
        return f"{', '.join(given)}: only for token_endpoint_auth_method tls_client_auth"
    return None


def stored_metadata(metadata: ClientMetadata) -> dict[str, Any]:
    """What a client's record keeps of its validated metadata."""
    return {name: value for name in STORED_METADATA if (value := getattr(metadata, name)) is not None}


def parse_metadata_document(body: bytes, content_type: str | None) -> dict[str, Any]:
    """A JSON object body (RFC 7591 §3.1); duplicate members are refused, not silently merged."""
    if (content_type or "").partition(";")[0].strip().lower() != JSON_MEDIA_TYPE:
        raise InvalidClientMetadataError(f"Content-Type must be {JSON_MEDIA_TYPE}")
    if len(body) > MAX_METADATA_BYTES:
        raise PayloadTooLargeError(f"the request body exceeds {MAX_METADATA_BYTES} bytes")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        document = dict(pairs)
        if len(document) != len(pairs):
            raise InvalidClientMetadataError("the JSON object repeats a member")
        return document

    try:
        document = parse_json(body, object_pairs_hook=no_duplicates)
    except ValueError:  # UnicodeDecodeError too
        raise InvalidClientMetadataError("the body is not a valid UTF-8 JSON document") from None
    if not isinstance(document, dict):
        raise InvalidClientMetadataError("the body must be a JSON object")
    return document


def validate_metadata(document: dict[str, Any]) -> ClientMetadata:
    """``document``'s metadata, each member checked, then the members together (RFC 7591 §2). A
    member that is null counts as absent."""
    refused = [name for name in (*USER_FACING_METADATA, "response_types") if document.get(name) not in (None, [], "")]
    if refused:
        raise InvalidClientMetadataError(
            f"{', '.join(refused)}: this server has no user-facing flows; only client_credentials clients register")
    members = {name: document[name] for name in _MEMBER_CHECKS if document.get(name) is not None}
    for name, value in members.items():
        problem = _MEMBER_CHECKS[name](value)
        if problem:
            raise InvalidClientMetadataError(f"{name}: {problem}")
    metadata = ClientMetadata(**members)
    problem = _consistency(metadata)
    if problem:
        raise InvalidClientMetadataError(problem)
    return metadata


@dataclass(frozen=True)
class SoftwareStatementVerifier:
    """Checks software statements (RFC 7591 §2.3) against the JWKS of each trusted issuer."""

    trusted_issuers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def verify(self, statement: Any, now: int) -> dict[str, Any]:
        import jwt

        if not isinstance(statement, str) or len(statement) > MAX_METADATA_BYTES:
            raise InvalidSoftwareStatementError("software_statement must be a signed JWT")
        try:
            header, unverified = unverified_jwt(statement)
        except ValueError:
            raise InvalidSoftwareStatementError("software_statement is not a well-formed JWT") from None
        issuer = unverified.get("iss")
        jwks = self.trusted_issuers.get(issuer) if isinstance(issuer, str) else None
        if jwks is None:
            raise UnapprovedSoftwareStatementError("the software statement's issuer is not trusted here")
        if header.get("alg") not in STATEMENT_ALGORITHMS:
            raise InvalidSoftwareStatementError(
                f"software statements must be signed with {', '.join(STATEMENT_ALGORITHMS)}")
        alg = header["alg"]
        key_type = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}[alg]
        try:
            keys = [key for key in jwt.PyJWKSet.from_dict(jwks).keys
                    if header.get("kid") in (None, key.key_id) and key.key_type == key_type]
        except (jwt.PyJWTError, TypeError, ValueError):
            raise UnapprovedSoftwareStatementError("the trusted issuer's keys cannot be used") from None
        for key in keys:
            try:
                return jwt.decode(statement, key.key, algorithms=[alg], issuer=issuer,
                                  options={"verify_aud": False, "require": ["iss"]}, leeway=CLOCK_SKEW)
            except (jwt.InvalidSignatureError, TypeError, ValueError):
                continue
            except jwt.PyJWTError as exc:
                raise InvalidSoftwareStatementError(f"software statement rejected: {exc}") from None
        raise InvalidSoftwareStatementError("the software statement's signature does not verify")


@dataclass(frozen=True)
class RegistrationResponse:
    status: int
    body: dict[str, Any] | None
    client: Client


def bearer_token(authorization: str | None) -> str:
    """RFC 6750 §2.1: ``Authorization: Bearer <token>``; anything else is invalid_token (401)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidTokenError("a Bearer token is required", token_presented=False)
    if len(token) > 512:
        raise InvalidTokenError("the Bearer token is invalid")
    return token.strip()


class ClientRegistrationEndpoint:
    """RFC 7591 §3 (POST) and RFC 7592 §2 (GET, PUT, DELETE on the client configuration URI)."""

    def __init__(self, clients: ClientStore, registrations: RegistrationStore, clock: Clock,
                 statements: SoftwareStatementVerifier | None = None,
                 throttle: AuthenticationThrottle | None = None) -> None:
        self._clients = clients
        self._registrations = registrations
        self._clock = clock
        self._statements = statements or SoftwareStatementVerifier()
        # Wrong bearer tokens count as failed authentications of their source; registrations are
        # limited per source (oauth/throttle.py). None: neither.
        self._throttle = throttle

    # -- RFC 7591 ------------------------------------------------------------------------------
    def register(self, body: bytes, content_type: str | None, authorization: str | None,
                 issuer: str, *, source_ip: str | None = None) -> RegistrationResponse:
        now = int(self._clock())
        initial_token = self._initial_access_token(authorization, now, source_ip)  # before reading the body
        if self._throttle is not None:  # attempts with a valid initial access token, per source
            self._throttle.registration(source_ip, now)
        metadata, extra = self._metadata(parse_metadata_document(body, content_type), now)
        policy = initial_token.policy
        client_id = generate_client_id()
        secret = generate_client_secret() if metadata.token_endpoint_auth_method in SECRET_AUTH_METHODS else None
        registration_token = generate_token(REGISTRATION_ACCESS_TOKEN_PREFIX)
        client = self._apply(metadata, extra, policy, Client(
            client_id=client_id, auth_method=metadata.token_endpoint_auth_method, scopes=(), created_at=now,
            secrets=(self._new_secret(secret, policy, now),) if secret else (), policy=policy,
            registration_access_token_hash=hash_secret(registration_token)))
        try:
            self._registrations.register_client(client, initial_token.hash, now)
        except InitialAccessTokenSpentError:
            raise InvalidTokenError("the initial access token is expired or used up") from None
        information = self.client_information(client, issuer)
        information["registration_access_token"] = registration_token
        if secret is not None:
            information["client_secret"] = secret
        return RegistrationResponse(201, information, client)

    # -- RFC 7592 ------------------------------------------------------------------------------
    def read(self, client_id: str, authorization: str | None, issuer: str, *,
             source_ip: str | None = None) -> RegistrationResponse:
        client = self._registered_client(client_id, authorization, source_ip)
        return RegistrationResponse(200, self.client_information(client, issuer), client)

    def update(self, client_id: str, body: bytes, content_type: str | None, authorization: str | None,
               issuer: str, *, source_ip: str | None = None) -> RegistrationResponse:
        client = self._registered_client(client_id, authorization, source_ip)  # before reading the body
        document = parse_metadata_document(body, content_type)
        sent = [name for name in SERVER_SET_FIELDS if name in document]
        if sent:
            raise InvalidClientMetadataError(f"{', '.join(sent)} must not be sent in an update (RFC 7592 §2.2)",
                                             client_id=client_id)
        if document.get("client_id") != client_id:
            raise InvalidClientMetadataError("client_id must be present and equal to this client's",
                                             client_id=client_id)
        now = int(self._clock())
        if "client_secret" in document:
            valid = tuple(s.hash for s in client.secrets if s.is_valid_at(now))
            if not isinstance(document["client_secret"], str) or not verify_secret(document["client_secret"], valid):
                raise InvalidClientMetadataError("client_secret does not match the current secret",
                                                 client_id=client_id)
        metadata, extra = self._metadata(document, now)
        registration_token = generate_token(REGISTRATION_ACCESS_TOKEN_PREFIX)
        policy = client.policy or RegistrationPolicy()
        # Switching methods: no secret for private_key_jwt; a new one (returned once) for a client
        # that moves to a secret method without a current secret (RFC 7592 §2.2 allows a new one).
        secrets, new_secret = client.secrets, None
        if metadata.token_endpoint_auth_method not in SECRET_AUTH_METHODS:
            secrets = ()
        elif not any(s.is_valid_at(now) for s in client.secrets):
            new_secret = generate_client_secret()
            secrets = (self._new_secret(new_secret, policy, now),)
        updated = self._apply(metadata, extra, policy, client.with_changes(
            auth_method=metadata.token_endpoint_auth_method, secrets=secrets,
            registration_access_token_hash=hash_secret(registration_token)))
        try:
            self._clients.update_client(updated)
        except ConflictError:
            raise ConcurrentUpdateError("the registration was changed by another request; nothing was written",
                                        client_id=client_id) from None
        information = self.client_information(updated, issuer)
        information["registration_access_token"] = registration_token
        if new_secret is not None:
            information["client_secret"] = new_secret
        return RegistrationResponse(200, information, updated)

    def delete(self, client_id: str, authorization: str | None, *,
               source_ip: str | None = None) -> RegistrationResponse:
        client = self._registered_client(client_id, authorization, source_ip)
        try:
            delete_client(self._clients, client, int(self._clock()))
        except ConflictError:
            raise ConcurrentUpdateError("the registration was changed by another request; nothing was deleted",
                                        client_id=client_id) from None
        return RegistrationResponse(204, None, client)

    # -- shared --------------------------------------------------------------------------------
    def _initial_access_token(self, authorization: str | None, now: int, source_ip: str | None) -> InitialAccessToken:
        token = bearer_token(authorization)
        self._refuse_if_over_limit(source_ip, now)
        stored = self._registrations.get_initial_access_token(hash_secret(token))
        if stored is None or not stored.usable_at(now):
            raise self._failed(InvalidTokenError("the initial access token is unknown, expired or used up"),
                               source_ip, now)
        return stored

    def _registered_client(self, client_id: str, authorization: str | None, source_ip: str | None) -> Client:
        """The client whose registration access token is presented (unknown ids cost the same)."""
        token = bearer_token(authorization)
        self._refuse_if_over_limit(source_ip, int(self._clock()))
        client = self._clients.get_client(client_id) if len(client_id) <= 128 else None
        stored = client.registration_access_token_hash if client else None
        if not verify_secret(token, (stored,) if stored else None) or client is None:
            raise self._failed(InvalidTokenError("the registration access token is invalid"), source_ip,
                               int(self._clock()))
        return client

    def _refuse_if_over_limit(self, source_ip: str | None, now: int) -> None:
        """A source over its failure limit gets a 429 before its bearer token is even looked up, so a
        correct guess past the limit gains nothing (RFC 6749 §10.10)."""
        if self._throttle is not None:
            self._throttle.bearer_check(source_ip, now)

    def _failed(self, error: InvalidTokenError, source_ip: str | None, now: int) -> OAuthError:
        """A presented bearer token that is wrong: counted against its source (a missing one is not:
        it guessed nothing and cost no read)."""
        return error if self._throttle is None else self._throttle.bearer_failure(error, source_ip, now)

    def _metadata(self, document: dict[str, Any], now: int) -> tuple[ClientMetadata, dict[str, Any]]:
        """Validated metadata; a software statement's claims win over the request's (RFC 7591 §2.3)."""
        statement = document.get("software_statement")
        extra: dict[str, Any] = {}
        if statement is not None:
            claims = self._statements.verify(statement, now)
            document = {**document, **{k: v for k, v in claims.items() if k not in _STATEMENT_ONLY_CLAIMS}}
            extra["software_statement"] = statement
        return validate_metadata(document), extra

    @staticmethod
    def _new_secret(secret: str, policy: RegistrationPolicy, now: int) -> ClientSecret:
        lifetime = policy.max_secret_lifetime
        return ClientSecret(hash_secret(secret), created_at=now,
                            expires_at=now + lifetime if lifetime is not None else None)

    @staticmethod
    def _apply(metadata: ClientMetadata, extra: dict[str, Any], policy: RegistrationPolicy, client: Client) -> Client:
        """``client`` with ``metadata``, refusing whatever the policy does not allow."""
        if policy.auth_methods is not None and metadata.token_endpoint_auth_method not in policy.auth_methods:
            raise InvalidClientMetadataError(
                f"token_endpoint_auth_method must be one of {', '.join(policy.auth_methods)} under this policy")
        if metadata.scope is not None:
            scopes = parse_scope(metadata.scope)
        elif policy.scopes is not None:
            scopes = policy.scopes
        else:
            raise InvalidClientMetadataError("scope is required: name the scopes this client needs")
        outside = [s for s in scopes if policy.scopes is not None and s not in policy.scopes]
        if outside:
            raise InvalidClientMetadataError(f"scope {' '.join(outside)} is not allowed under this policy")
        return replace(client, scopes=scopes, name=metadata.client_name, resources=policy.resources,
                       introspect=policy.introspect, introspect_resources=policy.introspect_resources,
                       metadata={**stored_metadata(metadata), **extra})

    @staticmethod
    def client_information(client: Client, issuer: str) -> dict[str, Any]:
        """RFC 7591 §3.2.1 / RFC 7592 §3 client information, without any secret."""
        body: dict[str, Any] = {
            "client_id": client.client_id,
            "client_id_issued_at": client.created_at,
            "token_endpoint_auth_method": client.auth_method,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "scope": " ".join(client.scopes),
            "registration_client_uri": f"{issuer}{REGISTRATION_PATH}/{client.client_id}",
            **client.metadata,
        }
        if client.name is not None:
            body["client_name"] = client.name
        if client.auth_method in SECRET_AUTH_METHODS:
            body["client_secret_expires_at"] = client.secret_expires_at()
        return body


def delete_client(clients: ClientStore, client: Client, now: int) -> None:
    """Remove ``client`` and mark every token it was issued up to now invalid, for as long as any
    of them could still be unexpired. ConflictError if the client changed since it was read."""
    clients.delete_client(client.client_id, version=client.version, not_before=now + 1,
                          mark_expires_at=now + MAX_TOKEN_LIFETIME + CLOCK_SKEW)


def new_initial_access_token(*, now: int, policy: RegistrationPolicy, expires_in: int | None = None,
                             max_uses: int | None = None, description: str | None = None,
                             value: str | None = None, token_id: str | None = None) -> tuple[InitialAccessToken, str]:
    """A new initial access token record and its value (shown once; only the hash is stored)."""
    value = value or generate_token(INITIAL_ACCESS_TOKEN_PREFIX)
    token = InitialAccessToken(token_id=token_id or "iat_" + secrets.token_hex(6), hash=hash_secret(value),
                               created_at=now, policy=policy, max_uses=max_uses, description=description,
                               expires_at=now + expires_in if expires_in is not None else None)
    return token, value
