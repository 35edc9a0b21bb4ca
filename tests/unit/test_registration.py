"""RFC 7591 metadata, registration policy and software statements, on in-memory ports."""

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from support.fakes import NOW, InMemoryStore
from support.pki import self_signed_client
from tokenmint.oauth.errors import (
    ConcurrentUpdateError,
    InvalidClientMetadataError,
    InvalidSoftwareStatementError,
    InvalidTokenError,
    PayloadTooLargeError,
    UnapprovedSoftwareStatementError,
)
from tokenmint.oauth.jwk import public_jwk
from tokenmint.oauth.models import RegistrationPolicy
from tokenmint.oauth.registration import (
    ClientRegistrationEndpoint,
    SoftwareStatementVerifier,
    new_initial_access_token,
    parse_metadata_document,
)

ISSUER = "https://as.example.com"
POLICY = RegistrationPolicy(scopes=("tools:read", "tools:write"), resources=("https://api.example.com/mcp",),
                            auth_methods=("client_secret_basic", "client_secret_post"), max_secret_lifetime=3600)


@pytest.fixture
def store():
    return InMemoryStore()


def endpoint(store, statements=None, clock=lambda: NOW):
    return ClientRegistrationEndpoint(store, store, clock, statements)


def initial_token(store, policy=POLICY, **kwargs) -> str:
    token, value = new_initial_access_token(now=NOW, policy=policy, **kwargs)
    store.create_initial_access_token(token)
    return "Bearer " + value


def as_json(document) -> tuple[bytes, str]:
    return json.dumps(document).encode(), "application/json"


def register(store, document, **kwargs):
    return endpoint(store).register(*as_json(document), initial_token(store, **kwargs), ISSUER)


def test_given_valid_metadata_when_registering_then_201_with_credentials_and_the_registered_metadata(store):
    result = register(store, {"client_name": "agent", "scope": "tools:read", "contacts": ["ops@example.com"],
                              "software_id": "agent-x", "software_version": "1.2", "unknown_member": "ignored"})
    body = result.body
    assert result.status == 201
    assert body["client_secret"].startswith("tmsec_") and body["registration_access_token"].startswith("tmrat_")
    assert body["registration_client_uri"] == f"{ISSUER}/register/{body['client_id']}"
    assert body["client_id_issued_at"] == NOW and body["client_secret_expires_at"] == NOW + 3600
    assert body["grant_types"] == ["client_credentials"] and body["token_endpoint_auth_method"] == "client_secret_basic"
    assert (body["scope"], body["client_name"], body["software_id"]) == ("tools:read", "agent", "agent-x")
    assert "unknown_member" not in body
    stored = store.clients[body["client_id"]]
    assert stored.resources == POLICY.resources and stored.policy == POLICY
    assert body["client_secret"] not in json.dumps(stored.to_record())


def test_given_no_scope_when_the_policy_names_scopes_then_the_policy_scopes(store):
    assert register(store, {}).body["scope"] == "tools:read tools:write"


def test_given_no_scope_under_an_unrestricted_policy_then_invalid_client_metadata(store):
    with pytest.raises(InvalidClientMetadataError, match="scope is required"):
        register(store, {}, policy=RegistrationPolicy())


@pytest.mark.parametrize("document, message", [
    ({"redirect_uris": ["https://app.example/cb"]}, "redirect_uris"),
    ({"logo_uri": "https://app.example/logo.png"}, "logo_uri"),
    ({"response_types": ["code"]}, "response_types"),
    ({"grant_types": ["client_credentials", "authorization_code"]}, "grant_types"),
    ({"grant_types": []}, "grant_types"),
    ({"token_endpoint_auth_method": "none"}, "token_endpoint_auth_method"),
    ({"token_endpoint_auth_method": "private_key_jwt"}, "jwks"),  # needs its public keys
    ({"scope": "tools:admin"}, "not allowed under this policy"),
    ({"scope": "tools:read  x"}, "scope"),
    ({"scope": 7}, "scope"),
    ({"client_name": ["not", "a", "string"]}, "client_name"),
    ({"client_name": "x" * 500}, "client_name"),
    ({"contacts": "ops@example.com"}, "contacts"),
    ({"jwks": {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB", "d": "secret"}]}}, "public keys only"),
    ({"jwks": {"keys": []}}, "jwks"),
    ({"jwks_uri": "http://keys.example/jwks"}, "https"),
    ({"jwks": {"keys": [public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), "ES256")]},
      "jwks_uri": "https://k.example/"}, "both"),
])
def test_given_metadata_outside_what_is_allowed_when_registering_then_invalid_client_metadata(store, document, message):
    token = initial_token(store)
    with pytest.raises(InvalidClientMetadataError, match=message):
        endpoint(store).register(*as_json(document), token, ISSUER)
    assert store.clients == {} and list(store.tokens.values())[0].uses == 0


def test_given_an_auth_method_outside_the_policy_when_registering_then_refused(store):
    with pytest.raises(InvalidClientMetadataError, match="under this policy"):
        register(store, {"token_endpoint_auth_method": "client_secret_post"},
                 policy=RegistrationPolicy(scopes=("a",), auth_methods=("client_secret_basic",)))


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer tmiat_unknown",
                                           "Bearer " + "x" * 600])
def test_given_no_or_a_wrong_initial_access_token_when_registering_then_invalid_token_401(store, authorization):
    initial_token(store)
    with pytest.raises(InvalidTokenError) as info:
        endpoint(store).register(*as_json({"scope": "tools:read"}), authorization, ISSUER)
    assert info.value.status_code == 401 and info.value.headers["WWW-Authenticate"].startswith("Bearer ")


def test_given_an_expired_or_used_up_initial_access_token_when_registering_then_invalid_token(store):
    expired = initial_token(store, expires_in=60)
    with pytest.raises(InvalidTokenError):
        endpoint(store, clock=lambda: NOW + 61).register(*as_json({}), expired, ISSUER)
    once = initial_token(store, max_uses=1)
    endpoint(store).register(*as_json({}), once, ISSUER)
    with pytest.raises(InvalidTokenError):
        endpoint(store).register(*as_json({}), once, ISSUER)
    assert len(store.clients) == 1


@pytest.mark.parametrize("body, content_type, error", [
    (b'{"a": 1', "application/json", InvalidClientMetadataError),
    (b'["a"]', "application/json", InvalidClientMetadataError),
    (b'{"a": 1, "a": 2}', "application/json", InvalidClientMetadataError),
    (b'\xff{}', "application/json", InvalidClientMetadataError),
    (b'{}', "text/plain", InvalidClientMetadataError),
    (b'{}', None, InvalidClientMetadataError),
    (b'[' * 100_000, "application/json", PayloadTooLargeError),
    (b'{"a":' * 5000 + b'1' + b'}' * 5000, "application/json", InvalidClientMetadataError),
])
def test_given_a_body_that_is_not_one_json_object_when_parsed_then_refused(body, content_type, error):
    with pytest.raises(error):
        parse_metadata_document(body, content_type)


# -- RFC 7592 ---------------------------------------------------------------------------------------
def test_given_the_registration_access_token_when_reading_then_metadata_without_secrets(store):
    created = register(store, {"scope": "tools:read", "client_name": "a"}).body
    read = endpoint(store).read(created["client_id"], "Bearer " + created["registration_access_token"], ISSUER)
    assert read.status == 200 and read.body["client_name"] == "a"
    assert "client_secret" not in read.body and "registration_access_token" not in read.body


def test_given_another_clients_registration_token_when_reading_then_invalid_token(store):
    first = register(store, {"scope": "tools:read"}).body
    second = register(store, {"scope": "tools:read"}).body
    with pytest.raises(InvalidTokenError):
        endpoint(store).read(first["client_id"], "Bearer " + second["registration_access_token"], ISSUER)
    with pytest.raises(InvalidTokenError):
        endpoint(store).read("tmc_unknown", "Bearer " + second["registration_access_token"], ISSUER)


def update_document(created: dict, **changes) -> dict:
    server_set = ("registration_client_uri", "client_id_issued_at", "client_secret_expires_at",
                  "registration_access_token", "client_secret")
    return {**{k: v for k, v in created.items() if k not in server_set}, **changes}


def test_given_an_update_when_applied_then_metadata_replaced_and_the_registration_token_rotated(store):
    created = register(store, {"scope": "tools:read", "client_name": "a", "contacts": ["x@example.com"]}).body
    old_token = "Bearer " + created["registration_access_token"]
    document = update_document(created, client_name="b", scope="tools:read tools:write")
    del document["contacts"]
    updated = endpoint(store).update(created["client_id"], *as_json(document), old_token, ISSUER).body
    assert updated["client_name"] == "b" and updated["scope"] == "tools:read tools:write"
    assert "contacts" not in updated  # an update replaces the metadata (RFC 7592 §2.2)
    assert updated["registration_access_token"] != created["registration_access_token"]
    with pytest.raises(InvalidTokenError):
        endpoint(store).read(created["client_id"], old_token, ISSUER)
    assert endpoint(store).read(created["client_id"], "Bearer " + updated["registration_access_token"], ISSUER)


@pytest.mark.parametrize("changes, message", [
    ({"client_id_issued_at": 1}, "must not be sent"),
    ({"registration_access_token": "x"}, "must not be sent"),
    ({"client_id": "tmc_other"}, "client_id"),
    ({"client_secret": "tmsec_wrong"}, "client_secret"),
    ({"scope": "tools:admin"}, "policy"),
    ({"redirect_uris": ["https://x.example/"]}, "redirect_uris"),
])
def test_given_a_bad_update_when_applied_then_refused_and_nothing_changes(store, changes, message):
    created = register(store, {"scope": "tools:read"}).body
    before = store.clients[created["client_id"]]
    token = "Bearer " + created["registration_access_token"]
    with pytest.raises(InvalidClientMetadataError, match=message):
        endpoint(store).update(created["client_id"], *as_json(update_document(created, **changes)), token, ISSUER)
    assert store.clients[created["client_id"]] == before


def test_given_the_current_secret_in_an_update_when_applied_then_accepted(store):
    created = register(store, {"scope": "tools:read"}).body
    document = update_document(created, client_secret=created["client_secret"])
    token = "Bearer " + created["registration_access_token"]
    assert endpoint(store).update(created["client_id"], *as_json(document), token, ISSUER).status == 200


def test_given_a_concurrent_change_when_updating_then_409_and_the_other_write_kept(store, monkeypatch):
    created = register(store, {"scope": "tools:read"}).body
    client_id = created["client_id"]
    original_get = store.get_client

    def read_then_someone_else_writes(cid):
        client = original_get(cid)
        store.clients[cid] = client.with_changes(name="admin change")
        return client
    monkeypatch.setattr(store, "get_client", read_then_someone_else_writes)
    with pytest.raises(ConcurrentUpdateError) as info:
        endpoint(store).update(client_id, *as_json(update_document(created, client_name="mine")),
                               "Bearer " + created["registration_access_token"], ISSUER)
    assert info.value.status_code == 409
    assert store.clients[client_id].name == "admin change"


def test_given_a_delete_when_applied_then_gone_and_tokens_marked(store):
    created = register(store, {"scope": "tools:read"}).body
    result = endpoint(store).delete(created["client_id"], "Bearer " + created["registration_access_token"])
    assert result.status == 204 and result.body is None
    assert created["client_id"] not in store.clients and store.deleted[created["client_id"]] == NOW + 1


# -- software statements (RFC 7591 §2.3) -----------------------------------------------------------
@pytest.fixture
def publisher():
    key = ec.generate_private_key(ec.SECP256R1())
    return key, {"keys": [public_jwk(key.public_key(), "ES256")]}


def statement(key, claims, alg="ES256", kid=None):
    headers = {"kid": kid} if kid else None
    return jwt.encode({"iss": "https://publisher.example", "iat": int(time.time()), **claims}, key, algorithm=alg,
                      headers=headers)


def test_given_a_trusted_software_statement_when_registering_then_its_claims_win(store, publisher):
    key, jwks = publisher
    verifier = SoftwareStatementVerifier({"https://publisher.example": jwks})
    signed = statement(key, {"software_id": "signed-agent", "client_name": "Signed Agent", "scope": "tools:read"})
    body = endpoint(store, verifier).register(
        *as_json({"software_statement": signed, "client_name": "spoofed", "scope": "tools:write"}),
        initial_token(store), ISSUER).body
    assert (body["client_name"], body["software_id"], body["scope"]) == ("Signed Agent", "signed-agent", "tools:read")
    assert body["software_statement"] == signed


@pytest.mark.parametrize("make, error", [
    (lambda key: "not-a-jwt", InvalidSoftwareStatementError),
    (lambda key: 42, InvalidSoftwareStatementError),
    (lambda key: statement(ec.generate_private_key(ec.SECP256R1()), {}), InvalidSoftwareStatementError),
    (lambda key: statement(key, {"exp": int(time.time()) - 3600}), InvalidSoftwareStatementError),
    (lambda key: jwt.encode({"iss": "https://publisher.example"}, "secret-hmac-key-of-32-bytes-long!!",
                            algorithm="HS256"), InvalidSoftwareStatementError),
    (lambda key: jwt.encode({"iss": "https://publisher.example"}, None, algorithm="none"),
     InvalidSoftwareStatementError),
    (lambda key: statement(key, {"iss": "https://stranger.example"}), UnapprovedSoftwareStatementError),
])
def test_given_a_bad_software_statement_when_registering_then_refused(store, publisher, make, error):
    key, jwks = publisher
    verifier = SoftwareStatementVerifier({"https://publisher.example": jwks})
    with pytest.raises(error):
        endpoint(store, verifier).register(*as_json({"software_statement": make(key), "scope": "tools:read"}),
                                           initial_token(store), ISSUER)
    assert store.clients == {}


@pytest.mark.parametrize("authorization", [None, "Bearer tmiat_wrong"])
def test_given_no_valid_token_and_a_bad_body_when_registering_then_401_before_the_body_is_read(store, authorization):
    initial_token(store)
    with pytest.raises(InvalidTokenError):
        endpoint(store).register(b"{not json", "text/plain", authorization, ISSUER)


def test_given_a_wrong_registration_token_and_a_bad_body_when_updating_then_401(store):
    created = register(store, {"scope": "tools:read"}).body
    with pytest.raises(InvalidTokenError):
        endpoint(store).update(created["client_id"], b"{not json", "text/plain", "Bearer tmrat_wrong", ISSUER)


@pytest.mark.parametrize("member", [0.5, 7, {"nested": "x"}, [1, 2], True])
def test_given_a_jwk_member_that_is_not_a_string_when_registering_then_invalid_client_metadata(store, member):
    jwk = {"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "extra": member}
    with pytest.raises(InvalidClientMetadataError, match="strings"):
        register(store, {"scope": "tools:read", "token_endpoint_auth_method": "private_key_jwt",
                         "jwks": {"keys": [jwk]}})


@pytest.mark.parametrize("jwk", [
    {"kty": "RSA", "n": "", "e": "AQAB"},  # no modulus
    {"kty": "RSA", "e": "AQAB"},  # no modulus at all
    {"kty": "RSA", "n": "000000", "e": "AQAB"},  # a 24-bit modulus
    {"kty": "EC", "crv": "P-256", "x": "AQ", "y": "Ag"},  # not a point on the curve
    {"kty": "EC", "crv": "secp256k1", "x": "AQ", "y": "Ag"},  # a curve no assertion of ours can use
    {"kty": "OKP", "crv": "Ed25519", "x": "not-32-bytes"},
    {"kty": "EC", "crv": ["P-256"], "x": "AQ", "y": "Ag"},  # a list where a string belongs (was a 500)
    {"kty": "RSA", "crv": "", "alg": "none"},  # pyjwt raised NotImplementedError for alg none (was a 500)
])
def test_given_a_jwk_whose_key_material_is_junk_when_registering_then_invalid_client_metadata(store, jwk):
    with pytest.raises(InvalidClientMetadataError, match="jwks: key 0"):
        register(store, {"scope": "tools:read", "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [jwk]}})
    assert store.clients == {}


def certificate_of(key, common_name: str = "agent"):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))


def x5c_of(certificate) -> list[str]:
    import base64

    from cryptography.hazmat.primitives.serialization import Encoding

    return [base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()]


def test_given_a_self_signed_client_whose_x5c_certifies_its_key_when_registering_then_201(store):
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**public_jwk(key.public_key(), "ES256"), "x5c": x5c_of(certificate_of(key))}
    created = register(store, {"scope": "tools:read", "token_endpoint_auth_method": "self_signed_tls_client_auth",
                               "jwks": {"keys": [jwk]}}, policy=RegistrationPolicy()).body
    assert created["jwks"] == {"keys": [jwk]}


@pytest.mark.parametrize("x5c", [
    lambda: x5c_of(certificate_of(ec.generate_private_key(ec.SECP256R1()))),  # another key's certificate
    lambda: ["not base64!"],
    lambda: ["AAAA"],  # base64, not a certificate
    lambda: [],
], ids=["another key's", "not base64", "not a certificate", "empty"])
def test_given_an_x5c_that_does_not_certify_the_jwk_when_registering_then_invalid_client_metadata(store, x5c):
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**public_jwk(key.public_key(), "ES256"), "x5c": x5c()}
    with pytest.raises(InvalidClientMetadataError, match=r"x5c must start with .* \(RFC 7517 §4.7\)"):
        register(store, {"scope": "tools:read", "token_endpoint_auth_method": "self_signed_tls_client_auth",
                         "jwks": {"keys": [jwk]}}, policy=RegistrationPolicy())
    assert store.clients == {}


def test_given_keys_for_other_uses_when_registering_then_their_material_is_checked_not_their_alg(store):
    from cryptography.hazmat.primitives.asymmetric import rsa

    encryption = {**public_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(), "RS256"),
                  "alg": "RSA-OAEP-256", "use": "enc", "kid": "enc-1"}
    signing = jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key(), as_dict=True)
    created = register(store, {"scope": "tools:read", "token_endpoint_auth_method": "private_key_jwt",
                               "jwks": {"keys": [encryption, signing]}}, policy=RegistrationPolicy()).body
    assert created["jwks"] == {"keys": [encryption, signing]}


def test_given_a_software_statement_whose_alg_does_not_fit_the_trusted_key_then_refused_not_crashed(store):
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verifier = SoftwareStatementVerifier({"https://publisher.example": {"keys": [public_jwk(rsa_key.public_key(),
                                                                                            "RS256")]}})
    forged = jwt.encode({"iss": "https://publisher.example"}, ec.generate_private_key(ec.SECP256R1()),
                        algorithm="ES256")
    with pytest.raises(InvalidSoftwareStatementError):
        endpoint(store, verifier).register(*as_json({"software_statement": forged, "scope": "tools:read"}),
                                           initial_token(store), ISSUER)


def self_signed_jwk(credential) -> dict:
    return {**public_jwk(credential.key.public_key(), "ES256"), "x5c": x5c_of(credential.certificate)}


@pytest.mark.parametrize("ca_capable, reason", [
    (dict(ca=True), "basicConstraints CA:TRUE"),  # what a plain `openssl req -x509` makes
    (dict(key_cert_sign=True), "keyUsage keyCertSign"),
])
def test_given_a_self_signed_certificate_that_can_act_as_a_ca_when_registering_then_invalid_client_metadata(
        store, tmp_path, ca_capable, reason):
    # Given a self-signed client certificate that can issue certificates (in the truststore, its holder
    # could make one for any client)
    certificate = self_signed_client(tmp_path, "agent-2", **ca_capable)

    # When a self_signed_tls_client_auth client registers it, then it is refused, saying why
    with pytest.raises(InvalidClientMetadataError, match=f"key 0: the x5c certificate can act as a CA \\({reason}\\)"):
        register(store, {"scope": "tools:read", "token_endpoint_auth_method": "self_signed_tls_client_auth",
                         "jwks": {"keys": [self_signed_jwk(certificate)]}}, policy=RegistrationPolicy())
    assert store.clients == {}


def test_given_a_ca_false_self_signed_certificate_when_registering_then_201(store, tmp_path):
    jwk = self_signed_jwk(self_signed_client(tmp_path, "agent-2"))
    created = register(store, {"scope": "tools:read", "token_endpoint_auth_method": "self_signed_tls_client_auth",
                               "jwks": {"keys": [jwk]}}, policy=RegistrationPolicy())
    assert created.status == 201 and created.body["jwks"] == {"keys": [jwk]}


def test_given_a_tls_client_auth_client_with_its_issuer_when_registering_then_the_binding_is_kept(store):
    # Given a tls_client_auth client that names the CA issuing its certificates (a tokenmint extension)
    document = {"scope": "tools:read", "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_san_dns": "agent-1.example.com", "tokenmint_tls_client_auth_issuer_dn": "CN=dev CA"}

    # When it registers, then its client information shows the issuer it is bound to
    created = register(store, document, policy=RegistrationPolicy())
    assert created.body["tokenmint_tls_client_auth_issuer_dn"] == "CN=dev CA"
    assert store.clients[created.body["client_id"]].metadata["tokenmint_tls_client_auth_issuer_dn"] == "CN=dev CA"


@pytest.mark.parametrize("document, problem", [
    ({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": "a.example.com",
      "tokenmint_tls_client_auth_issuer_dn": "dev CA"}, "must be an RFC 4514 distinguished name"),
    ({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": "a.example.com",
      "tokenmint_tls_client_auth_issuer_dn": ["CN=dev CA"]}, "must be a string"),
    ({"token_endpoint_auth_method": "client_secret_basic", "tokenmint_tls_client_auth_issuer_dn": "CN=dev CA"},
     "tokenmint_tls_client_auth_issuer_dn: only for token_endpoint_auth_method tls_client_auth"),
])
def test_given_a_bad_issuer_binding_when_registering_then_invalid_client_metadata(store, document, problem):
    with pytest.raises(InvalidClientMetadataError, match=problem):
        register(store, {"scope": "tools:read", **document}, policy=RegistrationPolicy())
    assert store.clients == {}


@pytest.mark.parametrize("segment", ["header", "claims"])
def test_given_a_software_statement_nested_thousands_deep_when_registering_then_refused_not_a_crash(
        store, publisher, segment):
    from support.nested_jwt import nested_jwt

    statement = nested_jwt({"alg": "ES256"}, {"iss": "https://publisher.example"}, segment)
    verifier = SoftwareStatementVerifier({"https://publisher.example": publisher[1]})
    with pytest.raises(InvalidSoftwareStatementError, match="not a well-formed JWT"):
        endpoint(store, verifier).register(*as_json({"software_statement": statement, "scope": "tools:read"}),
                                           initial_token(store), ISSUER)
    assert store.clients == {}


@pytest.mark.parametrize("member", ["client_name", "software_id", "software_version"])
@pytest.mark.parametrize("text", ["agent\x1b[2J\x1b[H", "two\nlines", "right\u202etfel", "bell\x07", "csi\x9b2J"])
def test_given_control_characters_in_readable_metadata_when_registering_then_invalid_client_metadata(
        store, member, text):
    # People read these (client list, the console, the audit trail): nothing in them may drive a terminal
    token = initial_token(store)
    with pytest.raises(InvalidClientMetadataError, match=f"{member}: must not contain control characters"):
        endpoint(store).register(*as_json({"scope": "tools:read", member: text}), token, ISSUER)
    assert store.clients == {}
