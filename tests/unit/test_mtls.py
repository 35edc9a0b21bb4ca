"""RFC 8705 §2: which verified certificate authenticates which client (never one that can act as a
CA, §7.4), and §3.1's thumbprint."""

import base64
import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from support import pki
from support.fakes import NOW
from support.pki import CertificateAuthority, name, self_signed_client
from tokenmint.oauth.errors import InvalidClientError
from tokenmint.oauth.models import Client
from tokenmint.oauth.mtls import (
    authenticate_certificate,
    ca_capability,
    certificate_thumbprint,
    load_certificate,
    validate_subject_metadata,
)

LATER = datetime.datetime.now(datetime.timezone.utc)
NOW_TS = int(LATER.timestamp())


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return CertificateAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def agent_cert(ca):
    return ca.issue_client("billing agent", dns=["Agent.Example.com"], uris=["spiffe://example.com/agent"],
                           emails=["agent@example.com"], ips=["10.1.2.3"])


def tls_client(**metadata) -> Client:
    return Client("tmc_tls", "tls_client_auth", ("jobs:run",), created_at=NOW, metadata=metadata)


def x5c(credential) -> dict:
    return {"kty": "EC", "x5c": [base64.b64encode(credential.certificate.public_bytes(Encoding.DER)).decode()]}


@pytest.mark.parametrize("metadata", [
    {"tls_client_auth_subject_dn": "CN=billing agent,O=tokenmint tests,C=DE"},
    {"tls_client_auth_san_dns": "agent.example.com"},
    {"tls_client_auth_san_uri": "spiffe://example.com/agent"},
    {"tls_client_auth_san_email": "agent@example.com"},
    {"tls_client_auth_san_ip": "10.1.2.3"},
])
def test_given_the_registered_subject_or_san_then_the_certificate_authenticates(agent_cert, metadata):
    authenticate_certificate(tls_client(**metadata), load_certificate(agent_cert.pem), NOW_TS)


@pytest.mark.parametrize("metadata", [
    {"tls_client_auth_subject_dn": "CN=billing agent,O=someone else,C=DE"},
    {"tls_client_auth_subject_dn": "CN=billing agent"},
    {"tls_client_auth_san_dns": "other.example.com"},
    {"tls_client_auth_san_uri": "spiffe://example.com/other"},
    {"tls_client_auth_san_email": "other@example.com"},
    {"tls_client_auth_san_ip": "10.1.2.4"},
    {},  # nothing registered authenticates nobody
    {"tls_client_auth_san_dns": "agent.example.com", "tls_client_auth_san_ip": "10.1.2.3"},
])
def test_given_another_subject_then_invalid_client(agent_cert, metadata):
    with pytest.raises(InvalidClientError):
        authenticate_certificate(tls_client(**metadata), load_certificate(agent_cert.pem), NOW_TS)


def test_given_an_expired_certificate_then_invalid_client(ca):
    old = ca.issue_client("old agent", not_before=LATER - datetime.timedelta(days=10),
                          not_after=LATER - datetime.timedelta(days=1))
    with pytest.raises(InvalidClientError, match="not valid now"):
        authenticate_certificate(tls_client(tls_client_auth_subject_dn=old.certificate.subject.rfc4514_string()),
                                 load_certificate(old.pem), NOW_TS)


def test_given_a_self_signed_client_then_only_its_registered_certificate(tmp_path):
    mine, other = self_signed_client(tmp_path, "mine"), self_signed_client(tmp_path, "other")
    client = Client("tmc_self", "self_signed_tls_client_auth", (), created_at=NOW)
    authenticate_certificate(client, load_certificate(mine.pem), NOW_TS, client_keys=lambda: [x5c(mine)])
    for keys in ([x5c(other)], [], [{"kty": "EC", "x5c": ["not base64!"]}], [{"kty": "EC"}]):
        with pytest.raises(InvalidClientError):
            authenticate_certificate(client, load_certificate(mine.pem), NOW_TS, client_keys=lambda k=keys: k)


def test_given_a_secret_client_then_a_certificate_does_not_authenticate_it(agent_cert):
    client = Client("tmc_secret", "client_secret_basic", (), created_at=NOW)
    with pytest.raises(InvalidClientError, match="client_secret_basic"):
        authenticate_certificate(client, load_certificate(agent_cert.pem), NOW_TS)


@pytest.mark.parametrize("pem", ["", "garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                                 "x" * 20000, "é"])
def test_given_an_unreadable_certificate_then_invalid_client(pem):
    with pytest.raises(InvalidClientError):
        load_certificate(pem)


def test_thumbprint_is_sha256_of_the_der(agent_cert):
    digest = hashlib.sha256(agent_cert.certificate.public_bytes(Encoding.DER)).digest()
    assert certificate_thumbprint(load_certificate(agent_cert.pem)) == \
        base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.mark.parametrize("metadata, problem", [
    ({"tls_client_auth_subject_dn": "CN=a,O=b"}, None),
    ({"tls_client_auth_san_ip": "2001:db8::1"}, None),
    ({}, "exactly one"),
    ({"tls_client_auth_san_dns": "a", "tls_client_auth_san_uri": "b"}, "exactly one"),
    ({"tls_client_auth_subject_dn": "not a dn"}, "RFC 4514"),
    ({"tls_client_auth_san_ip": "10.0.0.300"}, "IPv4"),
    ({"tls_client_auth_san_dns": ""}, "non-empty"),
    ({"tls_client_auth_san_dns": "a", "tokenmint_tls_client_auth_issuer_dn": "CN=dev CA,O=Example"}, None),
    ({"tls_client_auth_san_dns": "a", "tokenmint_tls_client_auth_issuer_dn": "dev CA"}, "RFC 4514"),
    ({"tls_client_auth_san_dns": "a", "tokenmint_tls_client_auth_issuer_dn": ""}, "non-empty"),
    ({"tokenmint_tls_client_auth_issuer_dn": "CN=dev CA"}, "exactly one"),  # an issuer is no subject
])
def test_registration_checks_the_subject_metadata(metadata, problem):
    found = validate_subject_metadata(metadata)
    assert (found is None) if problem is None else (problem in found)


def test_the_subject_dn_compares_as_a_name_not_as_text(ca):
    cert = ca.issue_client("x", subject=name("svc", organization="Acme, Inc.", country="US"))
    client = tls_client(tls_client_auth_subject_dn=cert.certificate.subject.rfc4514_string())
    authenticate_certificate(client, load_certificate(cert.pem), NOW_TS)


# -- certificates that can act as a CA (RFC 8705 §7.4) ----------------------------------------------
# A truststore treats each of its certificates as a trust anchor: the holder of a CA-capable one can
# issue a certificate with any client's subject. A plain `openssl req -x509` makes such a certificate.
VICTIM_DNS = "victim.example.com"


def netscape_typed(directory) -> pki.Credential:
    """Self-signed, no basicConstraints, a Netscape certificate type with the SSL CA bit (OpenSSL
    still accepts such a certificate as an issuer)."""
    key = pki.new_key()
    subject = name("netscape")
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                   .serial_number(1).not_valid_before(LATER - datetime.timedelta(days=1))
                   .not_valid_after(LATER + datetime.timedelta(days=1))
                   .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("2.16.840.1.113730.1.1"),
                                                             bytes.fromhex("03020204")), critical=False)
                   .sign(key, hashes.SHA256()))
    return pki.Credential(certificate, key, directory / "netscape.pem", directory / "netscape-key.pem")


CA_CAPABLE = {
    "basicConstraints CA:TRUE": lambda d: self_signed_client(d, "openssl default", dns=[VICTIM_DNS], ca=True),
    "keyUsage keyCertSign": lambda d: self_signed_client(d, "signer", dns=[VICTIM_DNS], key_cert_sign=True),
    "X.509 v1": lambda d: pki.version_1_self_signed(d, "version one"),
    "Netscape certificate type": netscape_typed,
}


@pytest.mark.parametrize("kind", CA_CAPABLE)
def test_given_a_registered_self_signed_certificate_that_can_act_as_a_ca_then_invalid_client(tmp_path, kind):
    # Given a self-signed client whose registered certificate can act as a CA (registered before
    # registration refused such certificates, or served by its jwks_uri)
    ca_capable = CA_CAPABLE[kind](tmp_path)
    client = Client("tmc_self", "self_signed_tls_client_auth", (), created_at=NOW)

    # When it presents that very certificate, then it is refused, saying why
    with pytest.raises(InvalidClientError, match="can act as a CA") as refused:
        authenticate_certificate(client, load_certificate(ca_capable.pem), NOW_TS,
                                 client_keys=lambda: [x5c(ca_capable)])
    assert "CA:FALSE" in refused.value.description


def test_given_a_ca_issued_certificate_that_can_act_as_a_ca_then_no_tls_client_auth_client_accepts_it(ca, tmp_path):
    # Given a subordinate CA certificate from the trusted CA that also carries a client's SAN
    subordinate = pki.issue_with(ca.credential, tmp_path, "subordinate", dns=[VICTIM_DNS], ca=True)

    # When it is presented for that client, then it is refused: a client certificate is never a CA
    with pytest.raises(InvalidClientError, match=r"can act as a CA \(basicConstraints CA:TRUE\)"):
        authenticate_certificate(tls_client(tls_client_auth_san_dns=VICTIM_DNS), load_certificate(subordinate.pem),
                                 NOW_TS)


def test_given_a_self_signed_certificate_with_a_clients_san_then_tls_client_auth_refuses_it(tmp_path):
    # Given a CA:FALSE self-signed certificate in the truststore whose holder chose a tls_client_auth
    # client's SAN as its own
    lookalike = self_signed_client(tmp_path, "lookalike", dns=[VICTIM_DNS])

    # When it is presented for that client, then it is refused: no CA vouched for that name
    with pytest.raises(InvalidClientError, match="self-signed"):
        authenticate_certificate(tls_client(tls_client_auth_san_dns=VICTIM_DNS), load_certificate(lookalike.pem),
                                 NOW_TS)


@pytest.mark.parametrize("make", [
    lambda d, ca: self_signed_client(d, "self-signed"),
    lambda d, ca: ca.issue_client("issued"),
    lambda d, ca: pki.issue_with(ca.credential, d, "no extensions"),
], ids=["self-signed CA:FALSE", "CA-issued client", "CA-issued"])
def test_client_certificates_cannot_act_as_a_ca(tmp_path, ca, make):
    assert ca_capability(make(tmp_path, ca).certificate) is None


def test_given_a_registered_issuer_then_only_that_cas_certificates_authenticate(ca, tmp_path):
    # Given a tls_client_auth client bound to the CA that issues its certificates, and a second CA in
    # the truststore that issues a certificate with the same SAN (RFC 8705 §7.4)
    mine = ca.issue_client("victim", dns=[VICTIM_DNS])
    other_ca = CertificateAuthority(tmp_path / "other", "other CA")
    spoofed = other_ca.issue_client("spoofed", dns=[VICTIM_DNS])
    client = tls_client(tls_client_auth_san_dns=VICTIM_DNS,
                        tokenmint_tls_client_auth_issuer_dn=ca.certificate.subject.rfc4514_string())

    # When each presents its certificate, then only the registered CA's authenticates
    authenticate_certificate(client, load_certificate(mine.pem), NOW_TS)
    with pytest.raises(InvalidClientError, match="registered issuer"):
        authenticate_certificate(client, load_certificate(spoofed.pem), NOW_TS)
    # And without the binding the same certificate is accepted (§2.1 matches the subject alone)
    authenticate_certificate(tls_client(tls_client_auth_san_dns=VICTIM_DNS), load_certificate(spoofed.pem), NOW_TS)
