"""requests-oauthlib (oauthlib's ``BackendApplicationClient`` + ``OAuth2Session.fetch_token``) against
tokenmint: HTTP Basic (requests' ``HTTPBasicAuth``, which does not URL-encode) and credentials in
the body. oauthlib refuses plain http unless ``OAUTHLIB_INSECURE_TRANSPORT`` is set (the test server
is loopback http), and raises when the granted scope differs from the requested one unless
``OAUTHLIB_RELAX_TOKEN_SCOPE`` is set: tokenmint drops scopes it will not grant, so that matters.
"""

from __future__ import annotations

import pytest
from oauthlib.oauth2 import BackendApplicationClient, InsecureTransportError, InvalidClientError
from requests_oauthlib import OAuth2Session

API = "https://api.example.com/interop-oauthlib"


@pytest.fixture(scope="module")
def api(tokenmint) -> str:
    tokenmint.cli("resource", "create", API, "--scope", "reports:read reports:write")
    return API


@pytest.fixture
def loopback_http(monkeypatch):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    monkeypatch.delenv("OAUTHLIB_RELAX_TOKEN_SCOPE", raising=False)


def session_for(client: dict, scope: list[str]) -> OAuth2Session:
    return OAuth2Session(client=BackendApplicationClient(client_id=client["client_id"]), scope=scope)


@pytest.mark.parametrize("method, include_client_id", [("client_secret_basic", False), ("client_secret_post", True)])
def test_given_requests_oauthlib_when_fetching_with_each_method_then_a_verifiable_token(
        metadata, new_client, verify, api, loopback_http, method, include_client_id):
    client = new_client("reports:read", method)
    session = session_for(client, ["reports:read"])

    token = session.fetch_token(metadata["token_endpoint"], client_id=client["client_id"],
                                client_secret=client["client_secret"], include_client_id=include_client_id,
                                resource=api, timeout=10)

    assert token["token_type"] == "Bearer" and token["scope"] == ["reports:read"] and "refresh_token" not in token
    claims = verify(token["access_token"], api)
    assert claims["aud"] == api and claims["client_id"] == client["client_id"] and claims["scope"] == "reports:read"


def test_given_a_scope_beyond_the_grant_when_fetching_then_oauthlib_reports_the_narrower_grant(
        metadata, new_client, verify, api, loopback_http, monkeypatch):
    client = new_client("reports:read")
    asked = ["reports:read", "reports:write"]
    with pytest.raises(Warning) as changed:  # oauthlib's default: a changed scope is an exception
        session_for(client, asked).fetch_token(metadata["token_endpoint"], client_id=client["client_id"],
                                               client_secret=client["client_secret"], resource=api, timeout=10)
    assert set(changed.value.old_scope) == set(asked) and changed.value.new_scope == ["reports:read"]

    monkeypatch.setenv("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")
    token = session_for(client, asked).fetch_token(metadata["token_endpoint"], client_id=client["client_id"],
                                                   client_secret=client["client_secret"], resource=api, timeout=10)
    assert token["scope"] == ["reports:read"] and verify(token["access_token"], api)["scope"] == "reports:read"


def test_given_a_wrong_secret_or_plain_http_when_fetching_then_oauthlib_raises_clearly(
        metadata, new_client, api, monkeypatch):
    client = new_client("reports:read")
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    with pytest.raises(InsecureTransportError):
        session_for(client, ["reports:read"]).fetch_token(metadata["token_endpoint"], client_id=client["client_id"],
                                                          client_secret=client["client_secret"], resource=api)
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with pytest.raises(InvalidClientError) as refused:
        session_for(client, ["reports:read"]).fetch_token(metadata["token_endpoint"], client_id=client["client_id"],
                                                          client_secret="tmsec_wrong", resource=api, timeout=10)
    assert refused.value.status_code == 401 and "tmsec_wrong" not in str(refused.value)
