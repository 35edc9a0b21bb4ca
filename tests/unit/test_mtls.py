"""RFC 8705 §2: which verified certificate authenticates which client, and §3.1's thumbprint."""

import base64
import datetime
import hashlib

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from support.fakes import NOW
from support.pki import CertificateAuthority, name, self_signed_client
from tokenmint.oauth.errors import InvalidClientError
from tokenmint.oauth.models import Client
from tokenmint.oauth.mtls import (
    authenticate_certificate,
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
])
def test_registration_checks_the_subject_metadata(metadata, problem):
    found = validate_subject_metadata(metadata)
    assert (found is None) if problem is None else (problem in found)


def test_the_subject_dn_compares_as_a_name_not_as_text(ca):
    cert = ca.issue_client("x", subject=name("svc", organization="Acme, Inc.", country="US"))
    client = tls_client(tls_client_auth_subject_dn=cert.certificate.subject.rfc4514_string())
    authenticate_certificate(client, load_certificate(cert.pem), NOW_TS)
