"""`tokenmint serve` over HTTPS with a client-certificate truststore (RFC 8705's transport), as a user runs it:
the real process on 127.0.0.1, real TLS clients (requests/urllib3 with client certificates, raw sockets).

Like an API Gateway custom domain with mutual TLS, the server verifies a client certificate against the
truststore in the handshake and refuses one it cannot verify; clients without a certificate still work
where certificates are optional. With --mtls-port, a second listener requires one (the mTLS alias)."""

from __future__ import annotations

import datetime
import re
import socket

import jwt
import pytest
import requests

from support import pki
from support.server import read_banner, start_server, stop

METADATA = "/.well-known/oauth-authorization-server"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """The CA behind the server and the clients, the clients the truststore lets in, and those it does not."""
    directory = tmp_path_factory.mktemp("pki")
    ca = pki.CertificateAuthority(directory / "ca")
    yesterday = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    trusted_self_signed = pki.self_signed_client(directory / "self", "self-signed agent", dns=["agent.example.com"])
    return {
        "ca": ca,
        "server": ca.issue_server(),
        "client": ca.issue_client("agent-1", dns=["agent-1.example.com"], uris=["spiffe://example.com/agent-1"]),
        "trusted_self_signed": trusted_self_signed,
        # refused: a self-signed certificate not in the truststore, another CA's, an expired one
        "stranger": pki.self_signed_client(directory / "stranger", "stranger"),
        "foreign": pki.CertificateAuthority(directory / "other", "other CA").issue_client("foreign"),
        "expired": ca.issue_client("expired", not_before=yesterday - datetime.timedelta(days=30), not_after=yesterday),
        "truststore": pki.truststore(directory / "truststore.pem", ca, trusted_self_signed),
    }


def tls_flags(certs) -> tuple[str, ...]:
    return ("--tls-cert", str(certs["server"].cert_file), "--tls-key", str(certs["server"].key_file),
            "--client-ca", str(certs["truststore"]))


@pytest.fixture(scope="module")
def https_server(tmp_path_factory, certs):
    process, server = start_server(tmp_path_factory.mktemp("tokenmint"), *tls_flags(certs),
                                   ca_bundle=certs["ca"].cert_file)
    read_banner(process, server, "/token")
    yield server
    stop(process)


def get(url: str, certs, client: str | None = None) -> requests.Response:
    return requests.get(url, cert=certs[client].pair if client else None, verify=str(certs["ca"].cert_file),
                        timeout=5)


def test_https_issuer_and_metadata_with_and_without_a_client_certificate(https_server, certs):
    # Given the server started with a certificate, a key and a truststore: its issuer is https
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", https_server.issuer)
    assert "client certificates: optional" in "".join(https_server.output)

    # When clients fetch the metadata without a certificate, with a CA-issued one and with a trusted
    # self-signed one
    answers = [get(https_server.issuer + METADATA, certs, client)
               for client in (None, "client", "trusted_self_signed")]

    # Then every one gets the same metadata, whose endpoints are https
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert answers[0].json()["issuer"] == https_server.issuer
    assert answers[0].json()["token_endpoint"] == https_server.issuer + "/token"


@pytest.mark.parametrize("client", ["stranger", "foreign", "expired"])
def test_a_client_certificate_the_truststore_does_not_verify_fails_the_handshake(https_server, certs, client):
    # When a client presents a certificate the truststore does not verify, the TLS handshake fails
    # (as at API Gateway: no HTTP answer at all)
    with pytest.raises(requests.exceptions.ConnectionError, match="(?i)alert|certificate|ssl"):
        get(https_server.issuer + METADATA, certs, client)

    # And the server goes on serving everyone else
    assert get(https_server.issuer + METADATA, certs, "client").status_code == 200


def test_a_secret_client_gets_a_token_over_https(https_server, certs):
    # Given the demo client the first start printed (its curl names the https token endpoint)
    banner = "".join(https_server.output)
    client_id, secret = re.search(r"-u '([^:]+):([^']+)'", banner).groups()
    assert f"{https_server.issuer}/token" in banner

    # When it asks for a token over https, without a client certificate
    response = requests.post(https_server.issuer + "/token", auth=(client_id, secret), timeout=10,
                             data={"grant_type": "client_credentials", "resource": "https://api.example.com/demo"},
                             verify=str(certs["ca"].cert_file))

    # Then it gets one, issued by the https issuer (verified with PyJWT against the JWKS fetched over https)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    jwks = jwt.PyJWKSet.from_dict(get(https_server.metadata["jwks_uri"], certs).json())
    key = next(k for k in jwks.keys if k.key_id == jwt.get_unverified_header(token)["kid"])
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience="https://api.example.com/demo",
                        issuer=https_server.issuer)
    assert claims["client_id"] == client_id


def test_stalled_and_plaintext_clients_do_not_hold_up_anyone_else(https_server, certs):
    port = int(https_server.issuer.rsplit(":", 1)[1])
    # Given clients that connect and never start the TLS handshake
    stalled = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        # And a client speaking plain HTTP to the HTTPS port, which gets no HTTP answer
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(https_server.issuer.replace("https://", "http://") + METADATA, timeout=5)

        # When a well-behaved client calls meanwhile, it is served at once: handshakes happen in
        # each connection's own thread, so the stalled ones (5 s handshake timeout) block nobody
        assert requests.get(https_server.issuer + METADATA, verify=str(certs["ca"].cert_file),
                            timeout=2.5).status_code == 200
    finally:
        for connection in stalled:
            connection.close()


# -- the mutual-TLS alias: a second listener that requires a client certificate ---------------------------
@pytest.fixture(scope="module")
def alias_server(tmp_path_factory, certs):
    process, server = start_server(tmp_path_factory.mktemp("tokenmint"), *tls_flags(certs), "--mtls-port", "0",
                                   ca_bundle=certs["ca"].cert_file)
    banner = read_banner(process, server, "/token")
    alias = re.search(r"mutual TLS \(client certificate required\): (https://\S+)", banner).group(1)
    yield server, alias
    stop(process)


def test_the_mtls_alias_requires_a_verified_certificate_and_the_main_port_none(alias_server, certs):
    server, alias = alias_server
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", alias) and alias != server.issuer

    # The main port serves clients without a certificate, as API Gateway's default endpoint does
    assert get(server.issuer + METADATA, certs).status_code == 200
    # The alias serves the same authorization server (same issuer) to a client with a certificate
    with_certificate = get(alias + METADATA, certs, "client")
    assert with_certificate.status_code == 200
    assert with_certificate.json()["issuer"] == server.issuer
    # and refuses, in the handshake, a client without one or with one the truststore does not verify
    for client in (None, "stranger"):
        with pytest.raises(requests.exceptions.ConnectionError):
            get(alias + METADATA, certs, client)

