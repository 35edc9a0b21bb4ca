"""docs/deploy.md's "Mutual TLS on a laptop" as a user pastes it: its openssl commands make the PKI, then
`tokenmint serve` runs with its flags (on free ports). The self-signed client certificate they make
registers and authenticates; a certificate its holder signs with its key, carrying a tls_client_auth
client's subject and SAN, gets nobody a token (RFC 8705 §7.4). TLS clients are requests/urllib3;
certificates are read with cryptography, not with tokenmint's code."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID

from support import pki
from support.server import read_banner, start_server, stop

PAGE = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
SECTION = "## Mutual TLS on a laptop"
# What the README (where the section was first) said before: without -addext, `openssl req -x509`
# makes the certificate CA:TRUE.
OLD_README_SELF_SIGNED = ('openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 '
                          '-subj "/CN=agent-2" -keyout old-self-key.pem -out old-self.pem')


def shell_blocks(markdown: str, heading: str) -> list[str]:
    """The fenced ```sh blocks of the section under ``heading``, up to the next heading."""
    lines = markdown.splitlines()
    blocks: list[str] = []
    block: list[str] | None = None
    info = ""
    for line in lines[lines.index(heading) + 1:]:
        if block is None and line.startswith("```"):
            block, info = [], line.removeprefix("```").strip()
        elif block is None and line.startswith("#"):
            break
        elif block is not None and line.startswith("```"):
            if info == "sh":
                blocks.append("\n".join(block))
            block = None
        elif block is not None:
            block.append(line)
    return blocks


def split_serve(script: str) -> tuple[str, list[str]]:
    """The script without its `tokenmint serve` line, and that line's arguments."""
    kept, serve = [], None
    for line in script.splitlines():
        if line.startswith("tokenmint serve"):
            serve = shlex.split(line)[2:]
        else:
            kept.append(line)
    assert serve is not None, "the section's first sh block no longer starts the server"
    return "\n".join(kept), serve


def run_bash(script: str, cwd: Path) -> None:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def laptop(tmp_path_factory):
    """The page's PKI, made by its commands, and `tokenmint serve` started with its flags."""
    directory = tmp_path_factory.mktemp("readme")
    script, serve_args = split_serve(shell_blocks(PAGE.read_text(), SECTION)[0])
    run_bash(script, directory)
    # The page's relative paths, from where its commands ran; free ports instead of 8000/8443.
    args = [str(directory / arg) if arg.startswith("pki/") else arg for arg in serve_args]
    args[args.index("--mtls-port") + 1] = "0"
    process, server = start_server(tmp_path_factory.mktemp("tokenmint"), *args,
                                   ca_bundle=directory / "pki" / "ca.pem")
    read_banner(process, server, "/token")
    yield directory / "pki", process, server
    stop(process)


def token_request(server, client_id: str, cert: tuple[str, str]) -> requests.Response:
    return requests.post(server.metadata["mtls_endpoint_aliases"]["token_endpoint"], cert=cert, timeout=10,
                         verify=server.verify, data={"grant_type": "client_credentials", "client_id": client_id,
                                                     "resource": server.issuer + "/tools"})


def create_client(server, *args: str) -> str:
    created = server.cli("client", "create", "--scope", "tools:echo", "--json", *args).stdout
    return json.loads(created)["client_id"]


def test_the_readme_self_signed_certificate_cannot_act_as_a_ca(laptop):
    # Given the README's commands have run; when its self-signed client certificate is read
    pki_dir, _, _ = laptop
    certificate = x509.load_pem_x509_certificate((pki_dir / "self.pem").read_bytes())

    # Then it is no CA, signs nothing but TLS handshakes, and is for TLS clients only
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    purposes = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert constraints.critical and constraints.value.ca is False
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert list(purposes) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_the_readme_clients_authenticate_with_their_certificates(laptop):
    # Given a self_signed_tls_client_auth client with the README's self-signed certificate, and a
    # tls_client_auth client with the subject of the README's CA-issued one
    pki_dir, _, server = laptop
    self_signed = create_client(server, "--auth-method", "self_signed_tls_client_auth",
                                "--certificate-file", str(pki_dir / "self.pem"))
    issued = create_client(server, "--auth-method", "tls_client_auth", "--tls-subject-dn", "CN=agent-1,O=Example")

    # When each asks for a token with its certificate, then each gets one
    for client_id, stem in ((self_signed, "self"), (issued, "client")):
        response = token_request(server, client_id, (str(pki_dir / f"{stem}.pem"), str(pki_dir / f"{stem}-key.pem")))
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("registered", [["--tls-subject-dn", "CN=agent-1,O=Example"],
                                        ["--tls-san-dns", "agent-1.example.com"]], ids=["subject DN", "SAN DNS"])
def test_a_certificate_signed_with_the_self_signed_key_impersonates_nobody(laptop, tmp_path, registered):
    # Given a tls_client_auth client (the README's agent-1), and the holder of the README's self-signed
    # certificate, which is in the truststore, signing a certificate with agent-1's subject and SAN
    pki_dir, process, server = laptop
    victim = create_client(server, "--auth-method", "tls_client_auth", *registered)
    holder = pki.Credential(x509.load_pem_x509_certificate((pki_dir / "self.pem").read_bytes()),
                            load_pem_private_key((pki_dir / "self-key.pem").read_bytes(), None),
                            pki_dir / "self.pem", pki_dir / "self-key.pem")
    minted = pki.issue_with(holder, tmp_path, "agent-1", subject=pki.name("agent-1", organization="Example"),
                            dns=["agent-1.example.com"])
    chain = tmp_path / "minted-chain.pem"
    chain.write_bytes(minted.cert_file.read_bytes() + (pki_dir / "self.pem").read_bytes())

    # When it asks for the victim's token with that certificate (and its chain)
    try:
        response = token_request(server, victim, (str(chain), str(minted.key_file)))
    except requests.exceptions.ConnectionError:
        # Then the handshake fails: a CA:FALSE certificate issues nothing
        assert "invalid CA certificate" in read_banner(process, server, "invalid CA certificate")
    else:
        # (or, were the handshake to pass, the token endpoint refuses it; no body: it could hold a token)
        assert (response.status_code, response.json().get("error")) == (401, "invalid_client")


def test_the_old_readme_self_signed_certificate_is_refused(laptop, tmp_path):
    # Given a self-signed certificate made as the README made it before: CA:TRUE
    _, _, server = laptop
    run_bash(OLD_README_SELF_SIGNED, tmp_path)
    old = x509.load_pem_x509_certificate((tmp_path / "old-self.pem").read_bytes())
    assert old.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True

    # When an admin creates a self_signed_tls_client_auth client with it
    result = server.cli("client", "create", "--scope", "tools:echo", "--auth-method", "self_signed_tls_client_auth",
                        "--certificate-file", str(tmp_path / "old-self.pem"), check=False)

    # Then the command fails and says why
    assert result.returncode != 0
    assert "can act as a CA (basicConstraints CA:TRUE)" in result.stderr
