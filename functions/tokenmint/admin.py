"""Administrative operations on clients, resources, initial access tokens and signing keys, used
by the CLI. Each change is an audit event (actor "cli"), naming the client, never a secret."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from .oauth.credentials import generate_client_id, generate_client_secret, hash_secret
from .oauth.errors import OAuthError
from .oauth.models import (
    MAX_TOKEN_LIFETIME,
    MIN_TOKEN_LIFETIME,
    SECRET_AUTH_METHODS,
    SUPPORTED_AUTH_METHODS,
    Client,
    ClientSecret,
    InitialAccessToken,
    RegistrationPolicy,
    Resource,
)
from .oauth.resource import normalize_resource_identifier
from .oauth.scope import validate_scope_tokens
from .observability import audit
from .ports import ClientStore, ConflictError, RegistrationStore, ResourceStore

SERVE_TOKEN_ID = "iat_serve"
ACTOR = "cli"
_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class AdminError(ValueError):
    """A request an administrator can correct; the message says how."""


def _scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    try:
        return validate_scope_tokens(scopes)
    except OAuthError as exc:
        raise AdminError(exc.description) from None


def create_resource(store: ResourceStore, identifier: str, scopes: list[str], *, now: int,
                    token_lifetime: int | None = None, name: str | None = None) -> Resource:
    try:
        key = normalize_resource_identifier(identifier)
    except OAuthError as exc:
        raise AdminError(f"{identifier!r}: {exc.description}") from None
    if not scopes:
        raise AdminError("a resource defines at least one scope")
    lifetime = token_lifetime if token_lifetime is not None else Resource.token_lifetime
    if not MIN_TOKEN_LIFETIME <= lifetime <= MAX_TOKEN_LIFETIME:
        raise AdminError(f"token lifetime must be {MIN_TOKEN_LIFETIME}..{MAX_TOKEN_LIFETIME} seconds")
    resource = Resource(identifier=identifier, scopes=_scopes(scopes), token_lifetime=lifetime,
                        created_at=now, name=name, key=key)
    try:
        store.create_resource(resource)
    except ConflictError:
        raise AdminError(f"a resource equal to {identifier!r} already exists") from None
    audit("resource.created", "success", actor=ACTOR, resource=identifier, scope=" ".join(resource.scopes),
          token_lifetime=lifetime)
    return resource


def parse_duration(value: str) -> int:
    """``90``, ``45s``, ``15m``, ``1h``, ``30d`` → seconds."""
    match = _DURATION.fullmatch(value.strip().lower())
    if not match:
        raise AdminError(f"{value!r} is not a duration like 30s, 15m, 1h or 30d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def positive_duration(value: str) -> int:
    """A duration that must not be zero (zero would read as "never expires")."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise AdminError(f"{value!r}: the duration must be longer than zero")
    return seconds


def _resource_keys(resources: list[str] | None) -> tuple[str, ...] | None:
    if resources is None:
        return None
    try:
        return tuple(normalize_resource_identifier(r) for r in resources)
    except OAuthError as exc:
        raise AdminError(exc.description) from None


def certificate_jwk(pem: str) -> dict[str, Any]:
    """The public JWK of a self-signed client certificate, with the certificate as ``x5c`` (RFC 8705
    §2.2.2: what self_signed_tls_client_auth compares the TLS client certificate with). A certificate
    that can act as a CA is refused: it would go into the truststore too (oauth/mtls.py ca_problem)."""
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import Encoding

    from .oauth.jwk import public_jwk
    from .oauth.mtls import ca_problem

    try:
        certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise AdminError("the certificate file is not a PEM certificate") from None
    problem = ca_problem(certificate)
    if problem:
        raise AdminError(f"the certificate {problem}; make it with -addext basicConstraints=critical,CA:FALSE "
                         "(docs/deploy.md: Mutual TLS on a laptop)")
    key = certificate.public_key()
    alg = {rsa.RSAPublicKey: "RS256", ec.EllipticCurvePublicKey: "ES256", ed25519.Ed25519PublicKey: "EdDSA"}
    for kind, name in alg.items():
        if isinstance(key, kind):
            try:
                jwk = public_jwk(key, name)
            except ValueError as exc:
                raise AdminError(f"the certificate's key: {exc}") from None
            return {**jwk, "x5c": [base64.b64encode(certificate.public_bytes(Encoding.DER)).decode("ascii")]}
    raise AdminError("the certificate's key must be RSA, EC P-256 or Ed25519")


KEYED_AUTH_METHODS = ("private_key_jwt", "self_signed_tls_client_auth")  # their keys are registered as jwks


def create_client(store: ClientStore, *, scopes: list[str], now: int, auth_method: str = SECRET_AUTH_METHODS[0],
                  name: str | None = None, introspect: bool = False, resources: list[str] | None = None,
                  introspect_resources: list[str] | None = None,
                  jwks: dict | None = None, metadata: dict | None = None) -> tuple[Client, str | None]:
    """A new client and, for secret methods, its secret: returned once, stored only as a hash.
    ``metadata``: further RFC 7591 / RFC 8705 / RFC 9449 members (tls_client_auth_subject_dn, …)."""
    from .oauth.registration import stored_metadata, validate_metadata

    if auth_method not in SUPPORTED_AUTH_METHODS:
        raise AdminError(f"auth method must be one of {', '.join(SUPPORTED_AUTH_METHODS)}")
    if jwks is not None and auth_method not in KEYED_AUTH_METHODS:
        raise AdminError(f"only {' and '.join(KEYED_AUTH_METHODS)} clients take --jwks-file")
    try:  # the same checks as registration (public keys only, one certificate subject, ...)
        validated = validate_metadata(
            {"token_endpoint_auth_method": auth_method, **({"jwks": jwks} if jwks else {}), **(metadata or {})})
    except OAuthError as exc:
        raise AdminError(exc.description) from None
    secret = generate_client_secret() if auth_method in SECRET_AUTH_METHODS else None
    client = Client(
        client_id=generate_client_id(), auth_method=auth_method, scopes=_scopes(scopes), created_at=now,
        secrets=(ClientSecret(hash_secret(secret), created_at=now),) if secret else (),
        name=name, introspect=introspect or bool(introspect_resources), resources=_resource_keys(resources),
        introspect_resources=_resource_keys(introspect_resources), metadata=stored_metadata(validated))
    store.create_client(client)
    audit("client.created", "success", actor=ACTOR, client_id=client.client_id, scope=" ".join(client.scopes),
          auth_method=auth_method, introspect=client.introspect)
    return client, secret


def get_client(store: ClientStore, client_id: str) -> Client:
    client = store.get_client(client_id)
    if client is None:
        raise AdminError(f"no client {client_id!r}")
    return client


def set_client_disabled(store: ClientStore, client_id: str, disabled: bool, *, now: int | None = None) -> Client:
    """Disabling takes effect on the next token request (every request reads the client record)
    and makes every token issued until now inactive, even after the client is enabled again."""
    client = get_client(store, client_id)
    if client.disabled == disabled:
        return client
    changes: dict = {"disabled": disabled}
    if disabled:
        changes["tokens_not_before"] = _not_before(now)
    updated = _update(store, client.with_changes(**changes))
    audit("client.disabled" if disabled else "client.enabled", "success", actor=ACTOR, client_id=client_id)
    return updated


def revoke_client_tokens(store: ClientStore, client_id: str, *, now: int) -> Client:
    """Every token the client was issued until now becomes inactive; later ones are unaffected."""
    client = get_client(store, client_id)
    updated = _update(store, client.with_changes(tokens_not_before=_not_before(now)))
    audit("client.tokens_revoked", "success", actor=ACTOR, client_id=client_id,
          tokens_not_before=updated.tokens_not_before)
    return updated


def _not_before(now: int | None) -> int:
    import time

    return (int(time.time()) if now is None else now) + 1  # tokens of this very second too


def _update(store: ClientStore, updated: Client) -> Client:
    try:
        store.update_client(updated)
    except ConflictError:
        raise AdminError(f"client {updated.client_id!r} changed concurrently; try again") from None
    return updated


def rotate_client_secret(store: ClientStore, client_id: str, *, grace: int, now: int) -> tuple[Client, str]:
    """A new secret; the newest current one keeps working for ``grace`` seconds (0: stops now).

    A client holds at most two secrets, so a fleet can roll to the new one without downtime.
    """
    client = get_client(store, client_id)
    if client.auth_method not in SECRET_AUTH_METHODS:
        raise AdminError(f"client {client_id!r} authenticates with {client.auth_method}, not a secret")
    secret = generate_client_secret()
    lifetime = client.policy.max_secret_lifetime if client.policy else None
    expires_at = now + lifetime if lifetime is not None else None
    secrets = [ClientSecret(hash_secret(secret), created_at=now, expires_at=expires_at)]
    current = [s for s in client.secrets if s.is_valid_at(now)]
    if current and grace > 0:
        newest = max(current, key=lambda s: s.created_at)
        until = now + grace if newest.expires_at is None else min(newest.expires_at, now + grace)
        secrets.insert(0, replace(newest, expires_at=until))
    updated = _update(store, client.with_changes(secrets=tuple(secrets)))
    audit("client.secret_rotated", "success", actor=ACTOR, client_id=client_id, grace=grace)
    return updated, secret


def delete_client(store: ClientStore, client_id: str, *, now: int) -> None:
    from .oauth.registration import delete_client as decommission

    client = get_client(store, client_id)
    try:
        decommission(store, client, now)
    except ConflictError:
        raise AdminError(f"client {client_id!r} changed concurrently; try again") from None
    audit("client.deleted", "success", actor=ACTOR, client_id=client_id)


def unused_clients(store: ClientStore, *, unused_for: int, now: int) -> list[Client]:
    """Clients with no token in ``unused_for`` seconds (never used: counted from creation)."""
    return [c for c in store.list_clients() if (c.last_used_at or c.created_at) <= now - unused_for]


def create_initial_access_token(store: RegistrationStore, *, now: int, scopes: list[str] | None = None,
                                resources: list[str] | None = None, auth_methods: list[str] | None = None,
                                max_secret_lifetime: int | None = None, expires_in: int | None = None,
                                max_uses: int | None = None, description: str | None = None,
                                introspect: bool = False,
                                introspect_resources: list[str] | None = None) -> tuple[InitialAccessToken, str]:
    from .oauth.registration import new_initial_access_token

    if auth_methods and not set(auth_methods) <= set(SUPPORTED_AUTH_METHODS):
        raise AdminError(f"auth methods must be among {', '.join(SUPPORTED_AUTH_METHODS)}")
    if max_uses is not None and max_uses < 1:
        raise AdminError("max uses must be at least 1")
    policy = RegistrationPolicy(scopes=_scopes(scopes) if scopes else None, resources=_resource_keys(resources),
                                auth_methods=tuple(auth_methods) if auth_methods else None,
                                max_secret_lifetime=max_secret_lifetime,
                                introspect=introspect or bool(introspect_resources),
                                introspect_resources=_resource_keys(introspect_resources))
    token, value = new_initial_access_token(now=now, policy=policy, expires_in=expires_in, max_uses=max_uses,
                                            description=description)
    store.create_initial_access_token(token)
    audit("iat.created", "success", actor=ACTOR, token_id=token.token_id, description=description,
          max_uses=max_uses, expires_at=token.expires_at, scope=" ".join(policy.scopes) if policy.scopes else None)
    return token, value


def install_serve_token(store: RegistrationStore, value: str | None, *, now: int) -> str:
    """The unrestricted initial access token of ``tokenmint serve``: ``value`` (from the environment)
    or a new one; it replaces the previous one, so an old printed value stops working."""
    from .oauth.registration import new_initial_access_token

    token, value = new_initial_access_token(now=now, policy=RegistrationPolicy(), value=value,
                                            token_id=SERVE_TOKEN_ID, description="tokenmint serve")
    store.put_initial_access_token(token)
    audit("iat.installed", "success", actor=ACTOR, token_id=SERVE_TOKEN_ID)
    return value


def rotate_keys(key_ring: Any, *, force: bool = False) -> list[str]:
    """One step of the scheduled key rotation, now (what the KeyRotationFunction does each run)."""
    actions = key_ring.rotate(force=force)
    for action in actions:
        audit("keys.rotation", "success", actor=ACTOR, detail=action)
    return actions


def rollover_keys(key_ring: Any, *, compromised: bool = False) -> Any:
    """A new key signs at once; with ``compromised`` the previous one also leaves the JWKS now."""
    new = key_ring.rollover(compromised=compromised)
    audit("keys.rollover", "success", actor=ACTOR, kid=new.kid, compromised=compromised)
    return new
