"""README's promise: `make run` prints a curl that gets a token, verifiable against the JWKS."""

import json
import re
import shutil
import subprocess

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from support.server import read_banner, start_server, stop


def test_given_a_fresh_data_dir_when_serving_then_the_printed_curl_gets_a_verifiable_token(tmp_path):
    process, server = start_server(tmp_path / "data")
    try:
        banner = read_banner(process, server, "/token")
        command = re.search(r"(curl .*?/token)\n", banner, re.S).group(1).replace("\\\n", " ")
        if shutil.which("curl"):
            output = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30).stdout
            body = json.loads(output)
        else:  # the same request, should a machine lack curl
            user, secret = re.search(r"-u '([^:]+):([^']+)'", command).groups()
            resource = re.search(r"resource=(\S+)", command).group(1)
            body = requests.post(server.issuer + "/token", auth=(user, secret), timeout=10,
                                 data={"grant_type": "client_credentials", "resource": resource}).json()
        assert body["token_type"] == "Bearer" and body["scope"] == "demo:read demo:write"
        jwks = requests.get(server.metadata["jwks_uri"], timeout=5).json()
        claims = jwt.decode(body["access_token"], KeySet.import_key_set(jwks), algorithms=["RS256"]).claims
        jwt.JWTClaimsRegistry(exp={"essential": True}).validate(claims)
        assert claims["aud"] == "https://api.example.com/demo" and claims["iss"] == server.issuer
    finally:
        stop(process)


def test_given_an_existing_data_dir_when_serving_again_then_no_second_demo_client(tmp_path):
    data_dir = tmp_path / "data"
    for until in ("/token", "client create"):
        process, server = start_server(data_dir)
        banner = read_banner(process, server, until)
        stop(process)
    assert "Seeded" not in banner
    listed = server.cli("client", "list", "--json").stdout
    assert listed.count('"client_id"') == 1
