"""Mutual TLS (RFC 8705) end to end: `tokenmint serve` with a truststore and an mTLS listener (the
stand-in for API Gateway's custom domain), clients that authenticate with certificates (§2), and
certificate-bound tokens (§3) used at the tools API. TLS clients are requests/urllib3; tokens are
read with PyJWT and thumbprints computed with hashlib, not with tokenmint's code."""

from __future__ import annotations

import base64
import hashlib
import json

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.serialization import Encoding

from support import pki
from support.server import read_banner, start_server, stop
from tokenmint.adapters.embedded.sqlite import SqliteDatabase, SqliteStore
from tokenmint.oauth.jwk import public_jwk
from tokenmint.oauth.models import Client


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca = pki.CertificateAuthority(directory / "ca")
    mine = pki.self_signed_client(directory / "mine", "self-signed agent")
    unregistered = pki.self_signed_client(directory / "other", "unregistered agent")
    # What a plain `openssl req -x509` makes (the old README did): CA:TRUE. In the truststore anyway,
    # its holder can issue certificates that verify, with any client's subject.
    ca_capable = pki.self_signed_client(directory / "legacy", "legacy agent", ca=True)
    partner_ca = pki.CertificateAuthority(directory / "partner", "partner CA")  # a second CA (RFC 8705 §7.4)
    return {
        "ca": ca, "server": ca.issue_server(),
        "agent": ca.issue_client("billing agent", dns=["billing.agents.example.com"]),
        "impostor": ca.issue_client("impostor", dns=["impostor.agents.example.com"]),
        "self_signed": mine, "unregistered": unregistered, "ca_capable": ca_capable,
        "partner_agent": partner_ca.issue_client("partner agent", dns=["billing.agents.example.com"]),
        # signed by the CA-capable certificate's key, with the billing agent's SAN
        "minted": pki.issue_with(ca_capable, directory / "minted", "minted", dns=["billing.agents.example.com"]),
        "truststore": pki.truststore(directory / "truststore.pem", ca, mine, unregistered, ca_capable, partner_ca),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory, certs):
    process, server = start_server(
        tmp_path_factory.mktemp("tokenmint"), "--tls-cert", str(certs["server"].cert_file),
        "--tls-key", str(certs["server"].key_file), "--client-ca", str(certs["truststore"]), "--mtls-port", "0",
        ca_bundle=certs["ca"].cert_file)
    read_banner(process, server, "/token")
    yield server
    stop(process)


@pytest.fixture(scope="module")
def clients(server, certs, tmp_path_factory):
    def create(*args: str) -> dict:
        return json.loads(server.cli("client", "create", "--scope", "tools:echo", "--json", *args).stdout)

    return {
        "tls": create("--auth-method", "tls_client_auth", "--tls-san-dns", "billing.agents.example.com"),
        "dn": create("--auth-method", "tls_client_auth", "--tls-subject-dn",
                     certs["agent"].certificate.subject.rfc4514_string()),
        "self_signed": create("--auth-method", "self_signed_tls_client_auth",
                              "--certificate-file", str(certs["self_signed"].cert_file)),
        "bound": create("--auth-method", "tls_client_auth", "--tls-san-dns", "billing.agents.example.com",
                        "--certificate-bound"),
        "issuer_bound": create("--auth-method", "tls_client_auth", "--tls-san-dns", "billing.agents.example.com",
                               "--tls-issuer-dn", certs["ca"].certificate.subject.rfc4514_string()),
        "secret": create(),
    }


def aliases(server) -> dict:
    return server.metadata["mtls_endpoint_aliases"]


def post(server, url: str, data: dict, certs, cert: str | None = None, **kwargs) -> requests.Response:
    return requests.post(url, data=data, cert=certs[cert].pair if cert else None, verify=server.verify, timeout=10,
                         **kwargs)


def token_request(server, certs, client_id: str, cert: str | None, endpoint: str | None = None) -> requests.Response:
    return post(server, endpoint or aliases(server)["token_endpoint"],
                {"grant_type": "client_credentials", "client_id": client_id, "resource": server.issuer + "/tools"},
                certs, cert)


def thumbprint(credential) -> str:
    digest = hashlib.sha256(credential.certificate.public_bytes(Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_metadata_publishes_the_mtls_methods_and_aliases(server):
    metadata = server.metadata
    assert {"tls_client_auth", "self_signed_tls_client_auth"} <= set(metadata["token_endpoint_auth_methods_supported"])
    assert metadata["tls_client_certificate_bound_access_tokens"] is True
    mtls = aliases(server)
    assert mtls["token_endpoint"].startswith("https://127.0.0.1:") and mtls["token_endpoint"].endswith("/token")
    assert mtls["token_endpoint"] != metadata["token_endpoint"]
    assert set(mtls) == {"token_endpoint", "revocation_endpoint", "introspection_endpoint"}


@pytest.mark.parametrize("client, cert", [("tls", "agent"), ("dn", "agent"), ("self_signed", "self_signed")])
def test_a_client_authenticates_with_its_certificate(server, certs, clients, client, cert):
    response = token_request(server, certs, clients[client]["client_id"], cert)
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["client_id"] == clients[client]["client_id"] and "cnf" not in claims
    assert "client_secret" not in clients[client]


@pytest.mark.parametrize("client, cert", [
    ("tls", "impostor"),  # a certificate from the trusted CA, but another subject
    ("tls", "self_signed"),  # trusted by the TLS layer, not this client's subject
    ("self_signed", "unregistered"),  # trusted by the TLS layer, but not the certificate it registered
    ("self_signed", "agent"),
    ("secret", "agent"),  # a secret client cannot skip its secret with a certificate
])
def test_a_certificate_that_is_not_the_clients_gets_invalid_client(server, certs, clients, client, cert):
    response = token_request(server, certs, clients[client]["client_id"], cert)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_without_a_certificate_an_mtls_client_cannot_authenticate(server, certs, clients):
    # the main listener asks for no certificate: an mTLS client must use the alias
    response = token_request(server, certs, clients["tls"]["client_id"], None, server.metadata["token_endpoint"])
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_certificate_bound_tokens_work_only_with_their_certificate(server, certs, clients):
    response = token_request(server, certs, clients["bound"]["client_id"], "agent")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"  # RFC 8705 §3: still a bearer token, bound by cnf
    token = body["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["cnf"] == {"x5t#S256": thumbprint(certs["agent"])}

    mtls_base = aliases(server)["token_endpoint"].removesuffix("/token")
    bearer = {"Authorization": f"Bearer {token}"}
    with_cert = post(server, mtls_base + "/tools/echo", {}, certs, "agent", headers=bearer)
    assert with_cert.status_code == 200, with_cert.text
    for name, answer in {
        "no certificate": post(server, server.issuer + "/tools/echo", {}, certs, None, headers=bearer),
        "another certificate": post(server, mtls_base + "/tools/echo", {}, certs, "impostor", headers=bearer),
    }.items():
        assert answer.status_code == 401, name
        assert answer.json()["error"] == "invalid_token", name

    # introspection tells a resource server the certificate it must check (RFC 8705 §3.2)
    secret = clients["secret"]
    introspector = json.loads(server.cli("client", "create", "--introspect", "--json").stdout)
    info = requests.post(server.metadata["introspection_endpoint"], data={"token": token}, verify=server.verify,
                         auth=(introspector["client_id"], introspector["client_secret"]), timeout=10).json()
    assert info["active"] and info["cnf"] == {"x5t#S256": thumbprint(certs["agent"])}
    assert secret["client_id"] != introspector["client_id"]


def test_a_bound_client_without_its_certificate_gets_no_token(server, certs, clients):
    # authenticated by certificate at the alias, but the secret client asking for binding is refused
    # without a certificate; here: the bound client on the main listener has no certificate at all
    response = token_request(server, certs, clients["bound"]["client_id"], None, server.metadata["token_endpoint"])
    assert response.status_code == 401


def test_an_mtls_client_revokes_its_token_with_its_certificate(server, certs, clients):
    token = token_request(server, certs, clients["tls"]["client_id"], "agent").json()["access_token"]
    revoke = aliases(server)["revocation_endpoint"]
    refused = post(server, revoke, {"token": token, "client_id": clients["tls"]["client_id"]}, certs, "impostor")
    assert refused.status_code == 401
    accepted = post(server, revoke, {"token": token, "client_id": clients["tls"]["client_id"]}, certs, "agent")
    assert accepted.status_code == 200
    introspector = json.loads(server.cli("client", "create", "--introspect", "--json").stdout)
    info = requests.post(server.metadata["introspection_endpoint"], data={"token": token}, verify=server.verify,
                         auth=(introspector["client_id"], introspector["client_secret"]), timeout=10).json()
    assert info == {"active": False}


def test_registration_validates_mtls_metadata(server):
    initial = json.loads(server.cli("iat", "create", "--scope", "tools:echo", "--json").stdout)["initial_access_token"]

    def register(document: dict) -> requests.Response:
        return requests.post(server.metadata["registration_endpoint"], json={"scope": "tools:echo", **document},
                             headers={"Authorization": f"Bearer {initial}"}, verify=server.verify, timeout=10)

    ok = register({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_uri": "spiffe://x/y",
                   "tls_client_certificate_bound_access_tokens": True})
    assert ok.status_code == 201, ok.text
    assert ok.json()["tls_client_auth_san_uri"] == "spiffe://x/y" and "client_secret" not in ok.json()
    for bad in ({"token_endpoint_auth_method": "tls_client_auth"},
                {"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": "a",
                 "tls_client_auth_san_ip": "10.0.0.1"},
                {"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "garbage"},
                {"token_endpoint_auth_method": "self_signed_tls_client_auth"},
                {"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks": {"keys": [{"kty": "EC"}]}},
                {"tls_client_auth_san_dns": "a.example.com"}):
        answer = register(bad)
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["error"] == "invalid_client_metadata"


def self_signed_jwk(credential) -> dict:
    return {**public_jwk(credential.key.public_key(), "ES256"),
            "x5c": [base64.b64encode(credential.certificate.public_bytes(Encoding.DER)).decode()]}


def test_the_cli_refuses_a_self_signed_certificate_that_can_act_as_a_ca(server, certs):
    # Given a CA:TRUE self-signed certificate, as a plain `openssl req -x509` makes it
    # When an admin creates a self_signed_tls_client_auth client with it
    result = server.cli("client", "create", "--scope", "tools:echo", "--auth-method", "self_signed_tls_client_auth",
                        "--certificate-file", str(certs["ca_capable"].cert_file), check=False)

    # Then the command fails, says why and how to make a usable one, and creates nothing
    assert result.returncode != 0 and result.stdout == ""
    assert "can act as a CA (basicConstraints CA:TRUE)" in result.stderr
    assert "basicConstraints=critical,CA:FALSE" in result.stderr


def test_registration_refuses_a_self_signed_certificate_that_can_act_as_a_ca(server, certs):
    # Given a client registering a CA:TRUE self-signed certificate as its x5c (RFC 7591)
    initial = json.loads(server.cli("iat", "create", "--scope", "tools:echo", "--json").stdout)["initial_access_token"]
    document = {"scope": "tools:echo", "token_endpoint_auth_method": "self_signed_tls_client_auth",
                "jwks": {"keys": [self_signed_jwk(certs["ca_capable"])]}}

    # When it registers
    answer = requests.post(server.metadata["registration_endpoint"], json=document, verify=server.verify, timeout=10,
                           headers={"Authorization": f"Bearer {initial}"})

    # Then it gets invalid_client_metadata saying why
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_client_metadata"
    assert "can act as a CA (basicConstraints CA:TRUE)" in answer.json()["error_description"]


def test_a_ca_capable_certificate_in_the_truststore_does_not_authenticate_its_self_signed_client(server, certs):
    # Given a self-signed client registered with a CA:TRUE certificate before such certificates were
    # refused (written straight to the store), and that certificate in the truststore: the handshake passes
    client = Client("tmc_legacy_self_signed", "self_signed_tls_client_auth", ("tools:echo",), created_at=0,
                    metadata={"jwks": {"keys": [self_signed_jwk(certs["ca_capable"])]}})
    SqliteStore(SqliteDatabase(server.data_dir / "tokenmint.db")).create_client(client)

    # When it asks for a token with that certificate, then it is refused
    response = token_request(server, certs, client.client_id, "ca_capable")
    assert (response.status_code, response.json().get("error")) == (401, "invalid_client")


def test_a_client_bound_to_its_issuer_accepts_only_that_cas_certificates(server, certs, clients):
    # Given a tls_client_auth client bound to the CA that issues its certificate (--tls-issuer-dn), and
    # two other issuers in the truststore that can make a certificate with its SAN: a second CA, and
    # the CA-capable self-signed certificate
    client_id = clients["issuer_bound"]["client_id"]
    assert clients["issuer_bound"]["tokenmint_tls_client_auth_issuer_dn"] == \
        certs["ca"].certificate.subject.rfc4514_string()

    # When each certificate asks for a token, then only the registered CA's gets one
    assert token_request(server, certs, client_id, "agent").status_code == 200
    for cert in ("partner_agent", "minted"):
        response = token_request(server, certs, client_id, cert)
        assert (response.status_code, response.json().get("error")) == (401, "invalid_client"), cert
