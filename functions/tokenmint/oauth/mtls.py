"""Mutual TLS (RFC 8705): client authentication by certificate (§2) and certificate-bound access
tokens (§3).

The TLS layer (API Gateway's custom domain with a truststore, or ``tokenmint serve --client-ca``)
has already verified the certificate's chain and validity; this module decides whether the
verified certificate is *this client's*:

- ``tls_client_auth`` (§2.1): the certificate's subject DN, or one of its subject alternative
  names, equals the one value the client registered (``tls_client_auth_subject_dn``,
  ``tls_client_auth_san_dns|uri|ip|email``);
- ``self_signed_tls_client_auth`` (§2.2): the certificate is one the client registered, as the
  first ``x5c`` entry of a key in its ``jwks`` / ``jwks_uri``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .errors import InvalidClientError
from .jwk import b64url
from .models import SELF_SIGNED_TLS_CLIENT_AUTH, TLS_CLIENT_AUTH

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

    from .models import Client

# §2.1.2: the registered value a tls_client_auth client's certificate must carry (exactly one).
SUBJECT_METADATA = ("tls_client_auth_subject_dn", "tls_client_auth_san_dns", "tls_client_auth_san_uri",
                    "tls_client_auth_san_ip", "tls_client_auth_san_email")
CERTIFICATE_BOUND = "tls_client_certificate_bound_access_tokens"  # §3.4 client metadata
MAX_CERTIFICATE_PEM = 16 * 1024


def load_certificate(pem: str) -> Certificate:
    """The certificate API Gateway (or the embedded server) passed on; InvalidClientError if unusable."""
    from cryptography import x509

    if len(pem) > MAX_CERTIFICATE_PEM:
        raise InvalidClientError("the client certificate is too large")
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except Exception:  # noqa: BLE001 - a parser of untrusted input (an X.509 v2 certificate raised InvalidVersion)
        raise InvalidClientError("the client certificate cannot be read") from None


def certificate_thumbprint(certificate: Certificate) -> str:
    """§3.1 ``x5t#S256``: base64url(SHA-256(DER of the certificate))."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return b64url(hashlib.sha256(certificate.public_bytes(Encoding.DER)).digest())


def authenticate_certificate(client: Client, certificate: Certificate, now: int,
                             client_keys: Any = None) -> None:
    """Raise InvalidClientError unless ``certificate`` authenticates ``client`` by its registered
    mTLS method. ``client_keys()`` gives a self-signed client's JWKs (``jwks`` or ``jwks_uri``)."""
    if not certificate.not_valid_before_utc <= datetime.fromtimestamp(now, timezone.utc) <= \
            certificate.not_valid_after_utc:
        raise InvalidClientError("the client certificate is not valid now", client_id=client.client_id)
    if client.auth_method == TLS_CLIENT_AUTH:
        if not _carries_registered_subject(certificate, client.metadata):
            raise InvalidClientError("the client certificate does not carry this client's registered subject",
                                     client_id=client.client_id)
    elif client.auth_method == SELF_SIGNED_TLS_CLIENT_AUTH:
        from cryptography.hazmat.primitives.serialization import Encoding

        presented = certificate.public_bytes(Encoding.DER)
        if presented not in _registered_certificates(client_keys() if client_keys else []):
            raise InvalidClientError("the client certificate is not one this client registered",
                                     client_id=client.client_id)
    else:
        raise InvalidClientError(f"this client must authenticate with {client.auth_method}",
                                 client_id=client.client_id)


def _registered_certificates(keys: list[Any]) -> set[bytes]:
    """§2.2.2: each key's ``x5c`` leaf."""
    return {leaf for key in keys if (leaf := x5c_leaf(key)) is not None}


def x5c_leaf(key: Any) -> bytes | None:
    """The DER of a JWK's first ``x5c`` certificate (standard base64, RFC 7517 §4.7), if it has one."""
    chain = key.get("x5c") if isinstance(key, dict) else None
    if isinstance(chain, list) and chain and isinstance(chain[0], str):
        try:
            return base64.b64decode(chain[0], validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def _carries_registered_subject(certificate: Certificate, metadata: dict[str, Any]) -> bool:
    from cryptography import x509

    registered = {name: metadata[name] for name in SUBJECT_METADATA if metadata.get(name)}
    if len(registered) != 1:
        return False  # registration enforces exactly one; anything else authenticates nobody
    (name, expected), = registered.items()
    if name == "tls_client_auth_subject_dn":
        try:
            return certificate.subject == x509.Name.from_rfc4514_string(expected)
        except ValueError:
            return False
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    if name == "tls_client_auth_san_dns":
        return expected.lower() in {dns.lower() for dns in names.get_values_for_type(x509.DNSName)}
    if name == "tls_client_auth_san_uri":
        return expected in names.get_values_for_type(x509.UniformResourceIdentifier)
    if name == "tls_client_auth_san_email":
        return expected.lower() in {email.lower() for email in names.get_values_for_type(x509.RFC822Name)}
    try:
        return ipaddress.ip_address(expected) in names.get_values_for_type(x509.IPAddress)
    except ValueError:
        return False


def validate_subject_metadata(metadata: dict[str, Any]) -> str | None:
    """For registration (§2.1.2): the problem with a tls_client_auth client's subject metadata, if any."""
    from cryptography import x509

    given = [name for name in SUBJECT_METADATA if metadata.get(name) is not None]
    if len(given) != 1:
        return f"tls_client_auth needs exactly one of {', '.join(SUBJECT_METADATA)}"
    value = metadata[given[0]]
    if not isinstance(value, str) or not 0 < len(value) <= 1024:
        return f"{given[0]} must be a non-empty string"
    if given[0] == "tls_client_auth_subject_dn":
        try:
            x509.Name.from_rfc4514_string(value)
        except ValueError:
            return "tls_client_auth_subject_dn must be an RFC 4514 distinguished name"
    if given[0] == "tls_client_auth_san_ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return "tls_client_auth_san_ip must be an IPv4 or IPv6 address"
    return None
