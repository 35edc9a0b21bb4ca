"""Node.js clients against tokenmint: openid-client (discovery + clientCredentialsGrant) gets tokens
and jose (createRemoteJWKSet + jwtVerify) checks them, both pinned in tests/interop/node. The
scripts run as subprocesses with credentials in their environment and print JSON.

openid-client (through oauth4webapi) form-urlencodes the Basic credentials, escaping even ``_``
and ``-``, which every tokenmint id and secret contains: tokenmint must form-decode them.
"""

from __future__ import annotations

import json

import pytest

API = "https://api.example.com/interop-node"


@pytest.fixture(scope="module")
def api(tokenmint) -> str:
    tokenmint.cli("resource", "create", API, "--scope", "jobs:read jobs:write")
    return API


def openid_client(node, tokenmint, client: dict, method: str, algorithm: str, resource: str, scope: str = "") -> dict:
    env = {"TOKENMINT_CLIENT_ID": client["client_id"], "TOKENMINT_CLIENT_SECRET": client.get("client_secret", "")}
    env.update(client.get("env", {}))
    return node("token.mjs", tokenmint.issuer, method, algorithm, resource, scope, env=env)


def jose_verify(node, tokenmint, token: str, audience: str) -> dict:
    return node("verify.mjs", tokenmint.issuer, audience, env={"TOKENMINT_ACCESS_TOKEN": token})


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
@pytest.mark.parametrize("algorithm, well_known", [("oidc", "/.well-known/openid-configuration"),
                                                   ("oauth2", "/.well-known/oauth-authorization-server")])
def test_given_openid_client_when_discovering_and_fetching_then_jose_and_pyjwt_accept_the_token(
        node, tokenmint, new_client, verify, api, method, algorithm, well_known):
    client = new_client("jobs:read", method)

    got = openid_client(node, tokenmint, client, method, algorithm, api, "jobs:read jobs:write")

    assert got["ok"], got
    assert got["discovered_from"] == tokenmint.issuer + well_known and got["issuer"] == tokenmint.issuer
    token = got["token"]
    # jobs:write is not granted: dropped, and `scope` says so (openid-client lower-cases token_type)
    assert token["scope"] == "jobs:read" and token["token_type"].lower() == "bearer" and "refresh_token" not in token
    wire = got["wire"]
    if method == "client_secret_basic":
        assert "client_secret" not in wire["parameters"]
        # form-urlencoded ("_" as %5F): not the raw id and secret, yet tokenmint accepted them
        assert wire["basic"] == {"raw": False, "form_urlencoded": True}
    else:
        assert wire["basic"] is None and {"client_id", "client_secret"} <= set(wire["parameters"])
    assert verify(token["access_token"], api)["client_id"] == client["client_id"]
    checked = jose_verify(node, tokenmint, token["access_token"], api)
    assert checked["ok"], checked
    assert checked["header"]["typ"] == "at+jwt" and checked["jwks_uri"] == tokenmint.metadata["jwks_uri"]
    assert checked["payload"]["aud"] == api and checked["payload"]["scope"] == "jobs:read"


def test_given_a_token_for_another_audience_or_altered_when_jose_verifies_then_it_refuses(
        node, tokenmint, new_client, api):
    client = new_client("jobs:read")
    token = openid_client(node, tokenmint, client, "client_secret_basic", "oauth2", api)["token"]["access_token"]

    elsewhere = jose_verify(node, tokenmint, token, "https://api.example.com/other")
    assert not elsewhere["ok"] and (elsewhere["code"], elsewhere["claim"]) == ("ERR_JWT_CLAIM_VALIDATION_FAILED", "aud")
    header, payload, signature = token.split(".")
    altered = jose_verify(node, tokenmint, f"{header}.{payload}.{signature[:-6]}AAAAAA", api)
    assert not altered["ok"] and altered["code"] == "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"


def test_given_openid_client_private_key_jwt_when_fetching_then_its_assertion_is_accepted(
        node, tokenmint, ec_key_client, verify, api):
    client, key = ec_key_client("jobs:write")
    kid = key.thumbprint()
    client["env"] = {"TOKENMINT_CLIENT_KEY": key.as_pem(private=True).decode(), "TOKENMINT_CLIENT_KID": kid}

    got = openid_client(node, tokenmint, client, "private_key_jwt", "oauth2", api)

    assert got["ok"], got
    assert got["token"]["scope"] == "jobs:write"
    assert verify(got["token"]["access_token"], api)["sub"] == client["client_id"]
    # openid-client's assertion: kid, aud = issuer, 60 s, client_id also in the body
    assertion = got["wire"]["assertion"]
    assert assertion["header"] == {"alg": "ES256", "kid": kid} and assertion["aud"] == tokenmint.issuer
    assert assertion["lifetime"] == 60 and assertion["iss"] == assertion["sub"] == client["client_id"]
    assert "client_id" in got["wire"]["parameters"]


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_given_a_wrong_secret_when_openid_client_fetches_then_a_401_invalid_client(
        node, tokenmint, new_client, api, method):
    client = {**new_client("jobs:read", method), "client_secret": "tmsec_wrong"}

    got = openid_client(node, tokenmint, client, method, "oauth2", api)

    # tokenmint answers 401 with a Basic challenge (RFC 6749 §5.2); oauth4webapi reports the
    # challenge (WWWAuthenticateChallengeError) before the JSON error, which stays in the response.
    assert not got["ok"] and got["status"] == 401, got
    assert got["name"] == "WWWAuthenticateChallengeError" and got["challenges"][0]["scheme"] == "basic"
    assert json.loads(got["body"])["error"] == "invalid_client"
    assert "tmsec_wrong" not in json.dumps(got)
