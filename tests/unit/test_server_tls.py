"""The transport half of mutual TLS (RFC 8705): the embedded server hands the handlers a verified client
certificate exactly where and as API Gateway does (requestContext.authentication.clientCert of the
payload 2.0 event), and handlers read it with http.client_certificate()."""

from __future__ import annotations

import datetime
import shutil
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from support import pki
from tokenmint import cli, server
from tokenmint.config import ConfigError, Settings
from tokenmint.handlers import http

UTC = datetime.timezone.utc
# The subject and dates of AWS's own examples (the HTTP API payload 2.0 documentation and its sample event).
AWS_SUBJECT = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                         x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Washington"),
                         x509.NameAttribute(NameOID.LOCALITY_NAME, "Seattle"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Amazon Web Services"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Security"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "My Client")])
NOT_BEFORE = datetime.datetime(2019, 5, 28, 12, 30, 2, tzinfo=UTC)
NOT_AFTER = datetime.datetime(2121, 8, 5, 9, 36, 4, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> pki.CertificateAuthority:
    return pki.CertificateAuthority(tmp_path_factory.mktemp("pki"), "My Private CA", organization="Amazon Web Services",
                                    country="US")


def der(credential: pki.Credential) -> bytes:
    return credential.certificate.public_bytes(Encoding.DER)


# -- the clientCert block ------------------------------------------------------------------------------
def test_client_cert_block_has_api_gateways_fields_and_formats(ca):
    # Given a CA-issued client certificate with AWS's example subject, dates and serial number
    client = ca.issue_client("My Client", subject=AWS_SUBJECT, not_before=NOT_BEFORE, not_after=NOT_AFTER,
                             serial=int("a1" * 16, 16))

    # When the embedded server describes it for the event
    block = server.client_cert_context(der(client))

    # Then it has exactly API Gateway's fields, in API Gateway's formats
    assert set(block) == {"clientCertPem", "subjectDN", "issuerDN", "serialNumber", "validity"}
    assert block["subjectDN"] == "C=US,ST=Washington,L=Seattle,O=Amazon Web Services,OU=Security,CN=My Client"
    assert block["issuerDN"] == "C=US,O=Amazon Web Services,CN=My Private CA"
    assert block["serialNumber"] == "a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1:a1"
    assert block["validity"] == {"notBefore": "May 28 12:30:02 2019 GMT", "notAfter": "Aug  5 09:36:04 2121 GMT"}
    # And the PEM is the certificate itself, with BEGIN/END lines
    assert block["clientCertPem"].startswith("-----BEGIN CERTIFICATE-----\n")
    assert block["clientCertPem"].endswith("-----END CERTIFICATE-----\n")
    assert x509.load_pem_x509_certificate(block["clientCertPem"].encode()) == client.certificate


@pytest.mark.parametrize("serial, written", [
    (1, "1"),  # AWS's sample event: serial 1 is "1"
    (2**64 - 1, "18446744073709551615"),  # 8 bytes: still decimal, as OpenSSL prints it
    (2**64, "01:00:00:00:00:00:00:00:00"),  # 9 bytes: colon-separated hex
])
def test_serial_numbers_are_written_as_openssl_prints_them(serial, written):
    assert server.serial_number(serial) == written


def openssl(*args: str) -> list[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=10,
                          check=True).stdout.splitlines()


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command")
def test_distinguished_names_are_written_as_openssl_writes_them_in_certificate_order(ca):
    # Given a subject with characters to escape, a multi-valued RDN and an attribute RFC 4514 has no name for
    subject = x509.Name([
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "US")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc."),
                                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Ops")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ops@example.com")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, " #1 <a+b>; \"q\" ")])])
    client = ca.issue_client("escapes", subject=subject)

    # When OpenSSL, independently, prints subject and issuer (RFC 2253 escaping, certificate order)
    printed = openssl("x509", "-noout", "-subject", "-issuer", "-nameopt", "RFC2253,-dn_rev",
                      "-in", str(client.cert_file))

    # Then the event has the same strings
    block = server.client_cert_context(der(client))
    assert printed == [f"subject={block['subjectDN']}", f"issuer={block['issuerDN']}"]
    assert block["subjectDN"].startswith("C=US,OU=Ops+O=Example\\, Inc.,emailAddress=ops@example.com,CN=\\ ")


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command")
def test_validity_dates_match_what_openssl_prints(ca):
    # Given a certificate valid from the 5th of a month (a space-padded day)
    client = ca.issue_client("dates", not_before=datetime.datetime(2024, 3, 5, 7, 8, 9, tzinfo=UTC),
                             not_after=datetime.datetime(2034, 12, 25, 23, 59, 59, tzinfo=UTC))
    # When OpenSSL, independently, prints its dates
    printed = openssl("x509", "-noout", "-startdate", "-enddate", "-in", str(client.cert_file))
    # Then the event has the same strings
    block = server.client_cert_context(der(client))
    assert printed == [f"notBefore={block['validity']['notBefore']}", f"notAfter={block['validity']['notAfter']}"]


# -- the event over a real TLS connection --------------------------------------------------------------
@pytest.fixture
def tls_server(ca, monkeypatch) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The embedded server on 127.0.0.1 over TLS, asking for optional client certificates from ``ca``'s
    truststore; the events it would hand to lambda_handler are recorded instead of handled."""
    events: list[dict[str, Any]] = []

    def record(module: str, function: str, event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}

    monkeypatch.setattr(server, "invoke", record)
    certificate = ca.issue_server()
    embedded = server.make_server("127.0.0.1", 0, server.tls_context(certificate.cert_file, certificate.key_file,
                                                                     ca.cert_file))
    thread = threading.Thread(target=embedded.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{embedded.server_address[1]}", events
    finally:
        embedded.shutdown()
        embedded.server_close()
        thread.join(timeout=5)


def test_a_verified_client_certificate_reaches_the_event_as_api_gateway_sends_it(ca, tls_server):
    base, events = tls_server
    client = ca.issue_client("agent-7", dns=["agent-7.example.com"], uris=["spiffe://example.com/agent-7"],
                             emails=["agent-7@example.com"], ips=["10.1.2.3"])

    # When the client calls over TLS with its certificate
    response = requests.get(base + "/jwks.json", cert=client.pair, verify=str(ca.cert_file), timeout=5)

    # Then the event carries the certificate in requestContext.authentication.clientCert, as described
    assert response.status_code == 200
    (event,) = events
    assert event["requestContext"]["authentication"] == {"clientCert": server.client_cert_context(der(client))}
    assert event["requestContext"]["authentication"]["clientCert"]["subjectDN"] == "C=DE,O=tokenmint tests,CN=agent-7"
    assert event["headers"]["x-forwarded-proto"] == "https"
    # And a handler reads the PEM with client_certificate()
    assert handler_sees(event) == client.pem


def test_without_a_client_certificate_the_event_has_no_authentication(ca, tls_server):
    base, events = tls_server
    assert requests.get(base + "/jwks.json", verify=str(ca.cert_file), timeout=5).status_code == 200
    (event,) = events
    assert "authentication" not in event["requestContext"]
    assert handler_sees(event) is None


def handler_sees(event: dict[str, Any]) -> str | None:
    """What http.client_certificate() returns inside a resolver handling ``event``."""
    app = APIGatewayHttpResolver()
    seen: list[str | None] = []

    @app.route("/jwks.json", method=["GET"])
    def _jwks() -> dict[str, str]:
        seen.append(http.client_certificate(app))
        return {}

    app.resolve(event, server.lambda_context("test"))
    return seen[0]


@pytest.mark.parametrize("authentication", [None, {}, {"clientCert": None}, {"clientCert": {"clientCertPem": ""}},
                                            "garbage"])
def test_client_certificate_is_none_for_anything_but_a_pem(authentication):
    event = server.build_event("GET", "/jwks.json", {}, b"", domain="127.0.0.1:1", source_ip="127.0.0.1")
    if authentication is not None:
        event["requestContext"]["authentication"] = authentication
    assert handler_sees(event) is None


# -- settings and flags ----------------------------------------------------------------------------------
def test_mtls_base_url_is_read_from_the_environment():
    settings = Settings.from_env({"TOKENMINT_MTLS_BASE_URL": "https://mtls.auth.example.com/"})
    assert settings.mtls_base_url == "https://mtls.auth.example.com"
    assert Settings.from_env({}).mtls_base_url is None


@pytest.mark.parametrize("url", ["http://127.0.0.1:8443", "https://mtls.example.com?x=1", "mtls.example.com"])
def test_mtls_base_url_must_be_https(url):
    with pytest.raises(ConfigError, match="TOKENMINT_MTLS_BASE_URL"):
        Settings.from_env({"TOKENMINT_MTLS_BASE_URL": url})


@pytest.mark.parametrize("flags, message", [
    (["--client-ca", "ca.pem"], "--client-ca needs --tls-cert"),
    (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
    (["--tls-cert", "c.pem", "--tls-key", "k.pem", "--mtls-port", "0"], "--mtls-port needs --client-ca"),
    (["--tls-cert", "missing.pem", "--tls-key", "missing.pem"], "cannot use --tls-cert"),
])
def test_serve_refuses_inconsistent_tls_flags_before_listening(tmp_path, capsys, flags, message):
    assert cli.main(["serve", "--port", "0", "--data-dir", str(tmp_path / "d"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # nothing started, nothing written
