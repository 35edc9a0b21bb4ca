"""Property-based tests (hypothesis): whatever a client sends, the parsers and handlers answer with
an OAuth error of their own or a result, never an unexpected exception (a 5xx)."""

import base64
import functools
import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.fakes import NOW, InMemoryKeyStore, InMemoryStore
from tokenmint import runtime
from tokenmint.config import Settings
from tokenmint.handlers import discovery, token
from tokenmint.oauth.errors import OAuthError
from tokenmint.oauth.form import parse_form
from tokenmint.oauth.errors import InvalidClientMetadataError
from tokenmint.oauth.registration import parse_metadata_document, validate_metadata
from tokenmint.oauth.resource import normalize_resource_identifier
from tokenmint.oauth.scope import parse_scope
from tokenmint.server import build_event, lambda_context
from tokenmint.verifier import LocalKeys, TokenRejected, TokenVerifier

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
URI_CHARS = string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%"


@FAST
@given(st.binary(max_size=2000), st.one_of(st.none(), st.text(max_size=60),
                                           st.just("application/x-www-form-urlencoded")))
def test_form_parsing_only_ever_raises_oauth_errors(body, content_type):
    try:
        form = parse_form(body, content_type)
    except OAuthError:
        return
    for name in ("grant_type", "scope", "resource", "client_id"):
        try:
            form.get(name)
        except OAuthError:
            pass


@FAST
@given(st.one_of(st.text(max_size=300), st.text(alphabet=URI_CHARS, max_size=300),
                 st.builds(lambda host, path: f"https://{host}/{path}", st.text(max_size=40), st.text(max_size=40))))
def test_resource_normalisation_raises_only_invalid_target_and_is_idempotent(value):
    try:
        normal = normalize_resource_identifier(value)
    except OAuthError as exc:
        assert exc.error == "invalid_target"
        return
    assert normalize_resource_identifier(normal) == normal


@FAST
@given(st.text(max_size=300))
def test_scope_parsing_raises_only_invalid_scope_and_keeps_tokens_verbatim(value):
    try:
        tokens = parse_scope(value)
    except OAuthError as exc:
        assert exc.error == "invalid_scope"
        return
    assert " ".join(tokens) == " ".join(dict.fromkeys(value.split(" ")))


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                       max_size=4), max_leaves=20)


@FAST
@given(st.one_of(st.binary(max_size=500), json_values.map(lambda v: json.dumps(v).encode())))
def test_metadata_documents_are_one_json_object_or_an_oauth_error(body):
    try:
        document = parse_metadata_document(body, "application/json")
    except OAuthError:
        return
    assert isinstance(document, dict)


METADATA_MEMBERS = ("token_endpoint_auth_method", "grant_types", "scope", "client_name", "contacts", "software_id",
                    "software_version", "jwks", "jwks_uri", "dpop_bound_access_tokens", "tls_client_auth_subject_dn",
                    "tls_client_auth_san_dns", "tls_client_auth_san_uri", "tls_client_auth_san_ip",
                    "tls_client_auth_san_email", "tls_client_certificate_bound_access_tokens")
# Any JSON where a string or a list of strings belongs: unhashable values too (a dict kty was a 500).
odd_values = st.lists(st.text(max_size=4), max_size=2) | st.dictionaries(st.text(max_size=4), st.text(max_size=4),
                                                                         max_size=2) | json_values
jwk_like = st.fixed_dictionaries({"kty": st.sampled_from(["RSA", "EC", "OKP"]) | odd_values},
                                 optional={name: st.text(max_size=12) | odd_values
                                           for name in ("crv", "x", "y", "n", "e", "alg", "x5c", "kid")})
member_values = odd_values | st.fixed_dictionaries({"keys": st.lists(jwk_like, min_size=1, max_size=3)})


@FAST
@given(st.dictionaries(st.sampled_from(METADATA_MEMBERS), member_values, max_size=6))
def test_registration_metadata_is_valid_or_invalid_client_metadata_never_another_error(document):
    try:
        validate_metadata(document)
    except InvalidClientMetadataError:
        pass


@FAST
@given(st.text(max_size=500), st.lists(st.text(max_size=10), max_size=3))
def test_the_verifier_rejects_garbage_with_token_rejected_only(value, scopes):
    verifier = TokenVerifier(issuer="https://as.example.com", audience="https://api.example.com/",
                             keys=LocalKeys(lambda: []))
    try:
        verifier.verify(value, scopes)
    except TokenRejected:
        pass


@functools.cache
def _keys() -> InMemoryKeyStore:
    return InMemoryKeyStore()  # one RSA key for every example: generating one each time took most of the run


def _backend():
    store = InMemoryStore()
    store.add_resource("https://api.example.com/mcp", "tools:read")
    store.add_client("svc", "tmsec_" + "p" * 43, "tools:read")
    return runtime.Backend(Settings(issuer="https://as.example.com"), store, store, _keys(), store, store,
                           clock=lambda: NOW)


form_fields = st.dictionaries(st.sampled_from(["grant_type", "scope", "resource", "client_id", "client_secret",
                                               "client_assertion", "client_assertion_type", "other"]),
                              st.text(max_size=60), max_size=6)


@FAST
@given(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD"]), form_fields,
       st.one_of(st.none(), st.text(max_size=80), st.builds(
           lambda raw: "Basic " + base64.b64encode(raw).decode(), st.binary(max_size=60))),
       st.one_of(st.just("application/x-www-form-urlencoded"), st.text(max_size=40)))
def test_the_token_endpoint_never_answers_5xx(method, fields, authorization, content_type):
    from urllib.parse import urlencode

    runtime.install(_backend())
    try:
        headers = {"content-type": content_type}
        if authorization is not None:
            headers["authorization"] = authorization
        event = build_event(method, "/token", headers, urlencode(fields).encode(), domain="as.example.com",
                            source_ip="192.0.2.1")
        response = token.lambda_handler(event, lambda_context("TokenFunction"))
        assert response["statusCode"] < 500, response["body"]
        if response["statusCode"] >= 400:
            assert json.loads(response["body"])["error"]
    finally:
        runtime.install(None)


@FAST
@given(st.text(alphabet=URI_CHARS, max_size=60), st.sampled_from(["GET", "POST", "HEAD", "OPTIONS"]))
def test_discovery_never_answers_5xx_whatever_the_path(path, method):
    runtime.install(_backend())
    try:
        event = build_event(method, "/" + path, {}, b"", domain="as.example.com", source_ip="192.0.2.1")
        assert discovery.lambda_handler(event, lambda_context("DiscoveryFunction"))["statusCode"] < 500
    finally:
        runtime.install(None)
