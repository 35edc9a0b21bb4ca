"""A throwaway PKI for the mutual-TLS tests (RFC 8705): a CA, client certificates it issues (subject DN
and DNS, URI, email and IP SANs), self-signed client certificates (CA:FALSE, or CA-capable as a plain
`openssl req -x509` makes them), certificates signed by any key, a server certificate for
127.0.0.1/localhost, and truststore bundles, written to PEM files as `openssl` would leave them.

Certificates are well formed enough for strict verifiers (Python 3.13 clients verify with
VERIFY_X509_STRICT): CAs have critical basicConstraints and keyUsage, every certificate has a
subject key identifier, issued ones an authority key identifier. Keys are P-256 unless asked for RSA.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = Any  # ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _valid_from() -> datetime.datetime:
    """Where certificates' validity starts by default: a day ago, so that a test module that took its
    "now" at import, minutes before a long run reaches it, still finds them valid."""
    return _now() - datetime.timedelta(days=1)


def new_key(kind: str = "ec") -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def name(common_name: str, *, organization: str | None = None, country: str | None = None,
         organizational_unit: str | None = None) -> x509.Name:
    """A subject in the usual certificate order: C, O, OU, CN (the order `openssl req -subj` keeps)."""
    attributes = []
    if country:
        attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if organizational_unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, organizational_unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def alternative_names(*, dns: Iterable[str] = (), uris: Iterable[str] = (), emails: Iterable[str] = (),
                      ips: Iterable[str] = ()) -> list[x509.GeneralName]:
    return [*(x509.DNSName(d) for d in dns), *(x509.UniformResourceIdentifier(u) for u in uris),
            *(x509.RFC822Name(e) for e in emails), *(x509.IPAddress(ipaddress.ip_address(i)) for i in ips)]


@dataclass(frozen=True)
class Credential:
    """A certificate, its private key, and the PEM files holding them."""

    certificate: x509.Certificate
    key: PrivateKey
    cert_file: Path
    key_file: Path

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def pair(self) -> tuple[str, str]:
        """(certificate file, key file), as `requests` takes them in ``cert=``."""
        return str(self.cert_file), str(self.key_file)


def _write(directory: Path, stem: str, certificate: x509.Certificate, key: PrivateKey) -> Credential:
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return Credential(certificate, key, cert_file, key_file)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: Any, not_before: datetime.datetime | None,
             not_after: datetime.datetime | None, serial: int | None = None) -> x509.CertificateBuilder:
    start = not_before or _valid_from()
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(serial or x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(not_after or start + datetime.timedelta(days=30))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def _leaf_usage(builder: x509.CertificateBuilder, purpose: x509.ObjectIdentifier) -> x509.CertificateBuilder:
    return (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False))


def _ca_usage(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    return (builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True))


class CertificateAuthority:
    """A root CA writing everything it makes under ``directory``."""

    def __init__(self, directory: Path, common_name: str = "tokenmint test CA", *, organization: str = "tokenmint tests",
                 country: str = "DE", key_kind: str = "ec") -> None:
        self.directory = directory
        key = new_key(key_kind)
        subject = name(common_name, organization=organization, country=country)
        certificate = _ca_usage(_builder(subject, subject, key.public_key(), None,
                                         _now() + datetime.timedelta(days=365))).sign(key, hashes.SHA256())
        self.credential = _write(directory, _stem(common_name), certificate, key)

    @property
    def cert_file(self) -> Path:
        return self.credential.cert_file

    @property
    def certificate(self) -> x509.Certificate:
        return self.credential.certificate

    def issue_client(self, common_name: str, *, subject: x509.Name | None = None, dns: Iterable[str] = (),
                     uris: Iterable[str] = (), emails: Iterable[str] = (), ips: Iterable[str] = (),
                     key_kind: str = "ec", not_before: datetime.datetime | None = None,
                     not_after: datetime.datetime | None = None, serial: int | None = None) -> Credential:
        """A client certificate (extendedKeyUsage clientAuth) for ``common_name`` or ``subject``, with
        the given subject alternative names (RFC 8705 §2.1.2 matches on them); ``serial``: random."""
        key = new_key(key_kind)
        subject = subject or name(common_name, organization="tokenmint tests", country="DE")
        certificate = _issue(self.credential, subject, key,
                             alternative_names(dns=dns, uris=uris, emails=emails, ips=ips),
                             ExtendedKeyUsageOID.CLIENT_AUTH, not_before, not_after, serial)
        return _write(self.directory, _stem(common_name), certificate, key)

    def issue_server(self, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> Credential:
        """A TLS server certificate for ``hosts`` (IP addresses and DNS names, as SANs)."""
        key = new_key()
        ips = [h for h in hosts if _is_ip(h)]
        certificate = _issue(self.credential, name(hosts[0]), key,
                             alternative_names(dns=[h for h in hosts if h not in ips], ips=ips),
                             ExtendedKeyUsageOID.SERVER_AUTH, None, None)
        return _write(self.directory, "server", certificate, key)


def _issue(issuer: Credential, subject: x509.Name, key: PrivateKey, sans: Sequence[x509.GeneralName],
           purpose: x509.ObjectIdentifier, not_before: datetime.datetime | None,
           not_after: datetime.datetime | None, serial: int | None = None, *, ca: bool = False) -> x509.Certificate:
    """A certificate for ``key``, signed by ``issuer``'s key and naming its subject as issuer; a leaf
    unless ``ca``."""
    builder = _builder(subject, issuer.certificate.subject, key.public_key(), not_before, not_after, serial)
    builder = (_ca_usage(builder) if ca else _leaf_usage(builder, purpose)).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer.key, hashes.SHA256())


def self_signed_client(directory: Path, common_name: str, *, dns: Iterable[str] = (), uris: Iterable[str] = (),
                       emails: Iterable[str] = (), ips: Iterable[str] = (), key_kind: str = "ec",
                       not_after: datetime.datetime | None = None, ca: bool = False,
                       key_cert_sign: bool = False) -> Credential:
    """A self-signed client certificate (RFC 8705 §2.2, self_signed_tls_client_auth), as a client
    makes it for itself: basicConstraints CA:FALSE, no keyUsage (so it is its own issuer), clientAuth.

    ``ca``: basicConstraints CA:TRUE instead, what a plain ``openssl req -x509`` makes; in a
    truststore, its holder can issue certificates that verify (see ``issue_with``).
    ``key_cert_sign``: with keyUsage digitalSignature and keyCertSign."""
    key = new_key(key_kind)
    subject = name(common_name)
    builder = (_builder(subject, subject, key.public_key(), None, not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False))
    if key_cert_sign:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=False,
                          encipher_only=False, decipher_only=False), critical=True)
    sans = alternative_names(dns=dns, uris=uris, emails=emails, ips=ips)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return _write(directory, _stem(common_name), builder.sign(key, hashes.SHA256()), key)


def issue_with(issuer: Credential, directory: Path, common_name: str, *, subject: x509.Name | None = None,
               dns: Iterable[str] = (), uris: Iterable[str] = (), emails: Iterable[str] = (),
               ips: Iterable[str] = (), ca: bool = False) -> Credential:
    """A client certificate signed by any certificate and key, ``issuer`` (a CA or not): how the
    holder of a certificate in the truststore would try to make one with another client's subject.
    ``ca``: with basicConstraints CA:TRUE and keyUsage keyCertSign too (a subordinate CA)."""
    key = new_key()
    subject = subject or name(common_name, organization="tokenmint tests", country="DE")
    certificate = _issue(issuer, subject, key, alternative_names(dns=dns, uris=uris, emails=emails, ips=ips),
                         ExtendedKeyUsageOID.CLIENT_AUTH, None, None, ca=ca)
    return _write(directory, _stem(common_name), certificate, key)


def version_1_self_signed(directory: Path, common_name: str) -> Credential:
    """A self-signed X.509 version 1 certificate (no extensions), as ``openssl x509 -req -signkey``
    makes one; OpenSSL accepts such a certificate as a CA. No API here builds version 1, so this
    drops the version field from a version 3 one without extensions and signs it again."""
    key = new_key()
    subject = name(common_name)
    start = _valid_from()
    v3 = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start)
          .not_valid_after(start + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    tbs = _der_content(v3.tbs_certificate_bytes)
    version_3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2
    assert tbs.startswith(version_3)
    tbs_v1 = _der(0x30, tbs[len(version_3):])
    rest = _der_content(v3.public_bytes(serialization.Encoding.DER))[len(v3.tbs_certificate_bytes):]
    algorithm = rest[:2 + rest[1]]  # the signatureAlgorithm SEQUENCE (short form: a few bytes)
    signature = _der(0x03, b"\0" + key.sign(tbs_v1, ec.ECDSA(hashes.SHA256())))
    certificate = x509.load_der_x509_certificate(_der(0x30, tbs_v1 + algorithm + signature))
    return _write(directory, _stem(common_name), certificate, key)


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _der_content(encoded: bytes) -> bytes:
    """The content of a DER TLV (definite length)."""
    first = encoded[1]
    header = 2 if first < 0x80 else 2 + (first & 0x7F)
    return encoded[header:]


def truststore(path: Path, *certificates: x509.Certificate | CertificateAuthority | Credential) -> Path:
    """A PEM bundle of ``certificates``, like the truststore API Gateway reads from S3."""
    pems = []
    for item in certificates:
        certificate = item.certificate if isinstance(item, (CertificateAuthority, Credential)) else item
        pems.append(certificate.public_bytes(serialization.Encoding.PEM))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(pems))
    return path


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _stem(common_name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in common_name.lower()).strip("-") or "cert"
