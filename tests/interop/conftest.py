"""Interoperability (issue 5): real, unmodified clients nobody on the team wrote, against the real
``tokenmint serve`` over HTTP on 127.0.0.1. One server for the whole suite; each test registers
its own resource and clients with the CLI, as a user would.

Tokens are checked with PyJWT against the published JWKS (or with the client ecosystem's own
verifier, e.g. Node's jose), never with tokenmint's signing code.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from joserfc.jwk import ECKey

from support.server import Server, read_banner, start_server, stop

NODE_DIR = Path(__file__).resolve().parent / "node"
NPM_CI_TIMEOUT = 180  # seconds: a cold npm cache downloads three small packages
NODE_TIMEOUT = 30


@pytest.fixture(scope="session")
def tokenmint(tmp_path_factory) -> Server:
    process, server = start_server(tmp_path_factory.mktemp("interop"))
    try:
        read_banner(process, server, "/token")
        yield server
    finally:
        stop(process)


@pytest.fixture(scope="session")
def metadata(tokenmint) -> dict:
    return tokenmint.metadata


@pytest.fixture(scope="session")
def new_client(tokenmint) -> Callable[..., dict]:
    """``tokenmint client create … --json``: the client's id and, for secret methods, its secret."""

    def create(scope: str, method: str = "client_secret_basic", jwks_file: Path | None = None) -> dict:
        args = ["client", "create", "--scope", scope, "--auth-method", method, "--json"]
        if jwks_file is not None:
            args += ["--jwks-file", str(jwks_file)]
        return json.loads(tokenmint.cli(*args).stdout)

    return create


@pytest.fixture
def ec_key_client(new_client, tmp_path) -> Callable[[str], tuple[dict, ECKey]]:
    """A private_key_jwt client registered with one ES256 public key (the JWK made by joserfc, ``kid``
    its RFC 7638 thumbprint); returns the client and its private key."""

    def create(scope: str) -> tuple[dict, ECKey]:
        key = ECKey.generate_key("P-256")
        jwks_file = tmp_path / f"{key.thumbprint()}.jwks.json"
        jwks_file.write_text(json.dumps({"keys": [{**key.as_dict(private=False), "kid": key.thumbprint(),
                                                   "alg": "ES256"}]}))
        return new_client(scope, "private_key_jwt", jwks_file), key

    return create


@pytest.fixture(scope="session")
def verify(tokenmint, metadata) -> Callable[..., dict]:
    """Check an access token as an independent resource server would (PyJWT, the published JWKS):
    signature, RFC 9068 header, iss, aud, exp; returns the claims."""
    jwks = jwt.PyJWKClient(metadata["jwks_uri"], cache_keys=False, cache_jwk_set=False, timeout=5)

    def check(token: str, audience: str) -> dict:
        header = jwt.get_unverified_header(token)
        assert header["typ"] == "at+jwt" and header["kid"], header
        key = jwks.get_signing_key_from_jwt(token)
        return jwt.decode(token, key.key, algorithms=[header["alg"]], audience=audience, issuer=tokenmint.issuer,
                          options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]})

    return check


# -- Node: openid-client and jose, installed from tests/interop/node/package-lock.json -------------

def _lock_digest() -> str:
    return hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def node() -> Callable[..., dict]:
    """Runs ``node tests/interop/node/<script>`` and returns the JSON it prints. ``npm ci`` runs first
    when node_modules is missing or was installed from another lock file. Skipped only when the
    machine has no Node.js at all."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if node_bin is None or npm_bin is None:
        pytest.skip("node and npm are not installed")
    marker = NODE_DIR / "node_modules" / ".tokenmint-lock-sha256"
    if not marker.is_file() or marker.read_text() != _lock_digest():
        installed = subprocess.run([npm_bin, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=NODE_DIR,
                                   capture_output=True, text=True, timeout=NPM_CI_TIMEOUT)
        assert installed.returncode == 0, f"npm ci failed:\n{installed.stdout}\n{installed.stderr}"
        marker.write_text(_lock_digest())

    def run(script: str, *args: str, env: dict[str, str] | None = None) -> dict:
        # Only what the script needs: no proxy or credentials of the developer's shell leak into it.
        environment = {"PATH": str(Path(node_bin).parent), "NODE_NO_WARNINGS": "1", **(env or {})}
        result = subprocess.run([node_bin, str(NODE_DIR / script), *args], cwd=NODE_DIR, env=environment,
                                capture_output=True, text=True, timeout=NODE_TIMEOUT)
        assert result.returncode == 0, f"node {script} failed ({result.returncode}):\n{result.stderr}"
        return json.loads(result.stdout)

    return run
