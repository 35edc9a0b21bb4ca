"""authlib's httpx client (``AsyncOAuth2Client``) against tokenmint: both secret methods, its
automatic re-fetch of client-credentials tokens, private_key_jwt with an EC key named by ``kid``,
and RFC 7009/7662 through authlib's own ``revoke_token``/``introspect_token``.

tests/e2e covers authlib's requests ``OAuth2Session`` (both secret methods) and its RSA
``PrivateKeyJWT``; nothing here repeats those.
"""

from __future__ import annotations

import json
import time

import anyio
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT

TIMEOUT = 10


@pytest.fixture(scope="module")
def tools(tokenmint) -> str:
    """The sample tools API ``tokenmint serve`` seeds: resource ``<issuer>/tools`` (tools:echo tools:time)."""
    return tokenmint.issuer + "/tools"


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_given_authlibs_async_client_when_fetching_and_calling_the_api_then_it_works_and_refetches(
        tokenmint, metadata, new_client, verify, tools, method):
    client = new_client("tools:echo tools:time", method)

    async def scenario() -> dict:
        # leeway above the token lifetime (600 s): authlib treats every token as expiring and must
        # fetch a new one before each call (tokenmint issues no refresh tokens).
        async with AsyncOAuth2Client(client["client_id"], client["client_secret"], token_endpoint_auth_method=method,
                                     scope="tools:echo", token_endpoint=metadata["token_endpoint"],
                                     grant_type="client_credentials", leeway=601, timeout=TIMEOUT) as session:
            first = dict(await session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials",
                                                   resource=tools))
            called = await session.post(tools + "/echo", content=b"hello from authlib")
            return {"first": first, "called": called, "refetched": dict(session.token)}

    outcome = anyio.run(scenario)

    first = outcome["first"]
    assert first["token_type"] == "Bearer" and first["scope"] == "tools:echo" and "refresh_token" not in first
    claims = verify(first["access_token"], tools)
    assert claims["scope"] == "tools:echo" and claims["client_id"] == client["client_id"]
    assert outcome["called"].status_code == 200, outcome["called"].text
    assert outcome["called"].json() == {"tool": "echo", "client_id": client["client_id"], "echo": "hello from authlib"}
    # The re-fetch sends no `resource` (authlib passes only grant_type and scope): tokenmint uses the
    # client's only resource, so the new token is for the same API.
    refetched = outcome["refetched"]
    assert refetched["access_token"] != first["access_token"]
    assert verify(refetched["access_token"], tools)["scope"] == "tools:echo"


def test_given_authlib_private_key_jwt_with_an_ec_key_and_kid_when_fetching_then_a_token(
        metadata, ec_key_client, verify, tools):
    client, key = ec_key_client("tools:time")
    kid = key.thumbprint()
    endpoint = metadata["token_endpoint"]
    assert "ES256" in metadata["token_endpoint_auth_signing_alg_values_supported"]

    async def fetch(auth: PrivateKeyJWT) -> dict:
        # authlib 1.9 reads a PEM as RSA only: other key types go in as joserfc keys
        async with AsyncOAuth2Client(client["client_id"], key, token_endpoint_auth_method=auth,
                                     timeout=TIMEOUT) as session:
            return dict(await session.fetch_token(endpoint, grant_type="client_credentials", resource=tools))

    signed = PrivateKeyJWT(endpoint, alg="ES256", headers={"kid": kid}, claims={"exp": int(time.time()) + 300})
    token = anyio.run(fetch, signed)
    assert token["scope"] == "tools:time"
    assert verify(token["access_token"], tools)["sub"] == client["client_id"]
    # A kid the client never registered is refused, not tried against its other keys.
    stranger = PrivateKeyJWT(endpoint, alg="ES256", headers={"kid": "not-" + kid},
                             claims={"exp": int(time.time()) + 300})
    with pytest.raises(Exception, match="invalid_client"):
        anyio.run(fetch, stranger)


def test_given_authlib_when_revoking_then_its_introspection_sees_the_token_inactive(
        tokenmint, metadata, new_client, tools):
    owner = new_client("tools:echo")
    auditor = json.loads(tokenmint.cli("client", "create", "--scope", "tools:echo", "--introspect", "--json").stdout)

    async def scenario() -> tuple[dict, dict, int]:
        async with AsyncOAuth2Client(owner["client_id"], owner["client_secret"], timeout=TIMEOUT) as session:
            token = await session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials",
                                              resource=tools)
        async with AsyncOAuth2Client(auditor["client_id"], auditor["client_secret"], timeout=TIMEOUT) as checker:
            before = (await checker.introspect_token(metadata["introspection_endpoint"],
                                                     token=token["access_token"])).json()
            async with AsyncOAuth2Client(owner["client_id"], owner["client_secret"], timeout=TIMEOUT) as session:
                revoked = await session.revoke_token(metadata["revocation_endpoint"], token=token["access_token"],
                                                     token_type_hint="access_token")
            after = (await checker.introspect_token(metadata["introspection_endpoint"],
                                                    token=token["access_token"])).json()
        return before, after, revoked.status_code

    before, after, status = anyio.run(scenario)
    assert before["active"] is True and before["client_id"] == owner["client_id"] and before["aud"] == tools
    assert status == 200 and after == {"active": False}
