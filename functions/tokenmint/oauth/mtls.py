"""Mutual TLS (RFC 8705): client authentication by certificate (§2) and certificate-bound access
tokens (§3).

The TLS layer (API Gateway's custom domain with a truststore, or ``tokenmint serve --client-ca``)
has already verified the certificate's chain and validity; this module decides whether the
verified certificate is *this client's*:

- ``tls_client_auth`` (§2.1): the certificate's subject DN, or one of its subject alternative
  names, equals the one value the client registered (``tls_client_auth_subject_dn``,
  ``tls_client_auth_san_dns|uri|ip|email``), and, if the client registered one, its issuer DN is
  ``tokenmint_tls_client_auth_issuer_dn``; a self-signed certificate never qualifies, whatever it
  names (its holder chose that subject, no CA vouched for it);
- ``self_signed_tls_client_auth`` (§2.2): the certificate is one the client registered, as the
  first ``x5c`` entry of a key in its ``jwks`` / ``jwks_uri``.

Neither accepts a certificate that can act as a CA (``ca_capability``): a truststore treats each of
its certificates as a trust anchor, so the holder of a CA-capable client certificate in it could
issue a certificate with any other client's subject (§7.4).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
from datetime import UTC, datetime
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
# A tokenmint extension (a vendor-prefixed name, RFC 6749 §8.2), optional: the issuer DN a
# tls_client_auth client's certificate must carry, so that of several CAs in the truststore only
# this one vouches for the client (§7.4). It names the CA, it does not pin its key: a trusted CA
# that issues a subordinate CA of the same name can still vouch for it.
ISSUER_METADATA = "tokenmint_tls_client_auth_issuer_dn"
CERTIFICATE_BOUND = "tls_client_certificate_bound_access_tokens"  # §3.4 client metadata
# Netscape certificate type (OpenSSL still honours its CA bits when basicConstraints is absent).
_NETSCAPE_CERT_TYPE = "2.16.840.1.113730.1.1"
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


def ca_capability(certificate: Certificate) -> str | None:
    """Why ``certificate`` could act as a CA, that is, sign certificates a chain verifier accepts,
    or None if it cannot. A client certificate must not: in a truststore, its holder could issue a
    certificate with any client's subject (RFC 8705 §7.4).

    RFC 5280: basicConstraints cA (§4.2.1.9) or keyUsage keyCertSign (§4.2.1.3). Also what OpenSSL
    accepts as an issuer: a version 1 certificate (no extension says otherwise, §6.1.4 (k)) and,
    without basicConstraints, a Netscape certificate type. Extensions that cannot be read count as
    CA-capable: nothing shows they are not."""
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID

    if certificate.version != x509.Version.v3:
        return f"an X.509 {certificate.version.name} certificate, which verifiers may accept as a CA"
    try:
        extensions = {extension.oid.dotted_string: extension.value for extension in certificate.extensions}
    except ValueError:
        return "its extensions cannot be read"
    constraints = extensions.get(ExtensionOID.BASIC_CONSTRAINTS.dotted_string)
    if constraints is not None and constraints.ca:
        return "basicConstraints CA:TRUE"
    usage = extensions.get(ExtensionOID.KEY_USAGE.dotted_string)
    if usage is not None and usage.key_cert_sign:
        return "keyUsage keyCertSign"
    if constraints is None and _NETSCAPE_CERT_TYPE in extensions:
        return "a Netscape certificate type without basicConstraints"
    return None


def ca_problem(certificate: Certificate) -> str | None:
    """What registration, the CLI and authentication say about a CA-capable client certificate."""
    reason = ca_capability(certificate)
    if reason is None:
        return None
    return (f"can act as a CA ({reason}); a client certificate must be CA:FALSE without keyCertSign, "
            "or its holder could issue a certificate for any client (RFC 8705 §7.4)")


def authenticate_certificate(client: Client, certificate: Certificate, now: int,
                             client_keys: Any = None) -> None:
    """Raise InvalidClientError unless ``certificate`` authenticates ``client`` by its registered
    mTLS method. ``client_keys()`` gives a self-signed client's JWKs (``jwks`` or ``jwks_uri``)."""
    if not certificate.not_valid_before_utc <= datetime.fromtimestamp(now, UTC) <= \
            certificate.not_valid_after_utc:
        raise InvalidClientError("the client certificate is not valid now", client_id=client.client_id)
    # Before anything is matched: a self-signed client's registered certificate may predate the
    # registration check, or come from its jwks_uri, which is read only now.
    problem = ca_problem(certificate)
    if problem is not None:
        raise InvalidClientError(f"the client certificate {problem}", client_id=client.client_id)
    if client.auth_method == TLS_CLIENT_AUTH:
        if certificate.issuer == certificate.subject:  # self-issued (RFC 5280 §6.1), so nobody vouched for its names
            raise InvalidClientError("the client certificate is self-signed: it authenticates only a "
                                     "self_signed_tls_client_auth client that registered it",
                                     client_id=client.client_id)
        if not _carries_registered_subject(certificate, client.metadata):
            raise InvalidClientError("the client certificate does not carry this client's registered subject",
                                     client_id=client.client_id)
        if not _issued_by_registered_issuer(certificate, client.metadata):
            raise InvalidClientError("the client certificate was not issued by this client's registered issuer",
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


def x5c_certificate(key: Any) -> Certificate | None:
    """A JWK's first ``x5c`` certificate, if it has a readable one."""
    from cryptography import x509

    leaf = x5c_leaf(key)
    if leaf is None:
        return None
    try:
        return x509.load_der_x509_certificate(leaf)
    except ValueError:
        return None


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
        return _is_name(certificate.subject, expected)
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


def _issued_by_registered_issuer(certificate: Certificate, metadata: dict[str, Any]) -> bool:
    """The issuer field of a verified chain's leaf is the name of the CA whose key signed it."""
    expected = metadata.get(ISSUER_METADATA)
    return expected is None or _is_name(certificate.issuer, expected)


def _is_name(name: Any, expected: str) -> bool:
    """Compared as parsed X.500 names, not as text (RFC 4514 strings list the RDNs in reverse)."""
    from cryptography import x509

    try:
        return bool(name == x509.Name.from_rfc4514_string(expected))
    except ValueError:
        return False


def validate_subject_metadata(metadata: dict[str, Any]) -> str | None:
    """For registration (§2.1.2): the problem with a tls_client_auth client's subject metadata, and
    its optional issuer (``ISSUER_METADATA``), if any."""
    from cryptography import x509

    issuer = metadata.get(ISSUER_METADATA)
    if issuer is not None:
        if not isinstance(issuer, str) or not 0 < len(issuer) <= 1024:
            return f"{ISSUER_METADATA} must be a non-empty string"
        try:
            x509.Name.from_rfc4514_string(issuer)
        except ValueError:
            return f"{ISSUER_METADATA} must be an RFC 4514 distinguished name"
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
