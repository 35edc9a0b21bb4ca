"""Property-based tests (hypothesis) of what authenticates a client or a request: DPoP proofs, client
assertions, client certificates, the revocation, introspection and registration endpoints, the
resource-server verifier. Whatever a client sends, the parsers and handlers answer with an OAuth error
of their own or a result, never an unexpected exception (a 5xx)."""

import base64
import datetime
import json
import string
from urllib.parse import quote, urlencode

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from support.fakes import NOW, InMemoryKeyStore, InMemoryStore
from tokenmint import runtime
from tokenmint.config import Settings, client_certificate_pem
from tokenmint.handlers import introspection, registration, revocation
from tokenmint.oauth.access_token import issue_access_token
from tokenmint.oauth.client_assertion import ASSERTION_TYPE, ClientAssertionVerifier
from tokenmint.oauth.credentials import hash_secret
from tokenmint.oauth.dpop import InvalidDpopProofError, access_token_hash, verify_proof
from tokenmint.oauth.errors import InvalidClientError
from tokenmint.oauth.jwk import b64url, public_jwk
from tokenmint.oauth.models import Client, ClientSecret, RegistrationPolicy
from tokenmint.oauth.mtls import certificate_thumbprint, load_certificate
from tokenmint.oauth.registration import new_initial_access_token
from tokenmint.oauth.throttle import AuthenticationThrottle
from tokenmint.server import build_event, lambda_context
from tokenmint.verifier import LocalKeys, TokenRejected, TokenVerifier

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Damaged certificates: cryptography warns that it still loads one with a serial number <= 0.
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number:"
                                        "cryptography.utils.CryptographyDeprecationWarning")
ISSUER, API = "https://as.example.com", "https://api.example.com/mcp"
TOKEN_URL, FORM = ISSUER + "/token", "application/x-www-form-urlencoded"
SECRET, IAT, RAT = "tmsec_" + "q" * 43, "tmiat_" + "i" * 43, "tmrat_" + "r" * 43
# One P-256 key plays every part (DPoP key, the client's registered key, the issuer's key, the
# certificate's key): every signature verifies, so the checks after it see the odd values.
KEY, ES256 = ec.generate_private_key(ec.SECP256R1()), jwt.get_algorithm_by_name("ES256")
JWK = public_jwk(KEY.public_key(), "ES256")
JKT = JWK["kid"]  # public_jwk's kid is the RFC 7638 thumbprint
_NAME = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "agent")])
CERT = (x509.CertificateBuilder().subject_name(_NAME).issuer_name(_NAME).public_key(KEY.public_key()).serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1)).not_valid_after(datetime.datetime(2040, 1, 1))
        .sign(KEY, hashes.SHA256()))
DER, CERT_PEM = CERT.public_bytes(Encoding.DER), CERT.public_bytes(Encoding.PEM).decode()
KEYS = InMemoryKeyStore("ES256")  # shared: a new key per example is what would make the handler tests slow
AT = issue_access_token(issuer=ISSUER, client_id="agent", audience=API, scopes=("tools:read",), lifetime=600,
                        now=NOW, key=KEYS.key).value
AGENT = Client("agent", "private_key_jwt", ("tools:read",), NOW, metadata={"jwks": {"keys": [JWK]}}, introspect=True)
POLICY = RegistrationPolicy(scopes=("tools:read",), auth_methods=("client_secret_basic", "private_key_jwt"))

# JSON as a JWT's header or claims may hold it: NaN and Infinity (Python's json reads them), ints
# beyond a float's range, booleans (ints to Python), nesting.
huge = st.integers(min_value=2**1024, max_value=2**1100) | st.integers(min_value=-2**1100, max_value=-2**1024)
scalars = st.none() | st.booleans() | st.integers() | huge | st.floats(allow_nan=True) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
DROP = object()


def mostly(expected: st.SearchStrategy, other: st.SearchStrategy) -> st.SearchStrategy:
    """``expected`` three times in four: inputs get past the first checks, so odd values reach later ones."""
    return st.integers(0, 3).flatmap(lambda n: other if n == 3 else expected)


def mixed(plausible: dict, *others: str, values: st.SearchStrategy = json_values) -> st.SearchStrategy:
    """``plausible`` members (values or strategies), half the time as they are, else with one to three
    of them, or of ``others``, set to one of ``values`` or removed: each odd value meets its own check."""
    base = st.fixed_dictionaries({k: v if isinstance(v, st.SearchStrategy) else st.just(v)
                                  for k, v in plausible.items()})
    changes = st.just({}) | st.dictionaries(st.sampled_from([*plausible, *others]), mostly(values, st.just(DROP)),
                                           min_size=1, max_size=3)
    return st.builds(lambda b, c: {k: v for k, v in {**b, **c}.items() if v is not DROP}, base, changes)


def headers(plausible: dict, *others: str, **strategies: st.SearchStrategy) -> st.SearchStrategy:
    """A JOSE header: ``plausible`` three times in four (most examples vary the claims), else mixed."""
    return mostly(st.just(plausible), mixed({**plausible, **strategies}, *others))


def signed(header: dict, claims: dict) -> str:
    """A JWS signed with KEY over exactly these members (PyJWT and joserfc refuse to encode odd ones)."""
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    return signing_input + "." + b64url(ES256.sign(signing_input.encode(), KEY))


# Text, and dot-joined segments that decode to JSON of any shape: past the split and the decoding.
jwt_like = st.lists(st.text(string.ascii_letters + string.digits + "-_=", max_size=40)
                    | json_values.map(lambda v: b64url(json.dumps(v).encode())), min_size=1, max_size=4).map(".".join)
garbage = st.text(max_size=300) | jwt_like

PROOF_HEADER = {"typ": "dpop+jwt", "alg": "ES256", "jwk": JWK}
jwks = st.just(JWK) | st.builds(lambda extra: {**JWK, **extra}, st.dictionaries(
    st.sampled_from(["kty", "crv", "x", "y", "d", "alg", "kid", "key_ops"]), json_values, max_size=2))
dpop_headers = headers(PROOF_HEADER, "kid", "crit", "b64", jwk=jwks)
dpop_claims = mixed({"jti": st.uuids().map(str), "htm": st.sampled_from(["POST", "GET"]),
                     "htu": st.sampled_from([TOKEN_URL, TOKEN_URL + "?q#f", "HTTPS://AS.example.com:443/token", API]),
                     "iat": st.integers(NOW - 330, NOW + 70), "ath": st.sampled_from([access_token_hash(AT), "x"])},
                    "nonce")


@FAST
@given(st.none() | garbage, st.text(max_size=8), st.none() | st.text(max_size=20))
def test_a_dpop_proof_of_any_text_raises_only_invalid_dpop_proof(value, method, access_token):
    try:
        verify_proof(value, method=method, urls=(TOKEN_URL,), now=NOW, access_token=access_token)
    except InvalidDpopProofError:
        pass


@FAST
@example(PROOF_HEADER, {"jti": "j", "htm": "POST", "htu": TOKEN_URL, "iat": float("nan")}, "POST", None)  # was a 500
@example(PROOF_HEADER, {"jti": "j", "htm": "POST", "htu": TOKEN_URL, "iat": 10**400}, "POST", None)
@given(dpop_headers, dpop_claims, st.sampled_from(["POST", "GET"]), st.none() | st.just(AT))
def test_a_signed_dpop_proof_with_any_header_and_claims_raises_only_invalid_dpop_proof(header, claims, method, token):
    try:
        proof = verify_proof(signed(header, claims), method=method, urls=(TOKEN_URL,), now=NOW, access_token=token)
    except InvalidDpopProofError:
        return
    assert proof.jkt == JKT and isinstance(proof.iat, float) and proof.jti == claims["jti"]
    assert isinstance(proof.replay_expires_at, int) and proof.replay_expires_at > proof.iat + 300


VALID_CLAIMS = {"iss": "agent", "sub": "agent", "aud": ISSUER, "exp": NOW + 300, "jti": "j"}
assertion_claims = mixed({"iss": "agent", "sub": "agent", "aud": st.sampled_from([ISSUER, TOKEN_URL, [ISSUER, "x"]]),
                          "iat": NOW, "exp": st.integers(NOW - 100, NOW + 800), "jti": st.uuids().map(str)}, "nbf")
assertions = st.builds(signed, headers({"alg": "ES256", "typ": "JWT"}, "kid", "crit", "b64", "jwk"),
                       assertion_claims) | garbage


@FAST
@example(signed({"alg": "ES256"}, {**VALID_CLAIMS, "exp": 10**400}), None)
@example(signed({"alg": "ES256"}, {**VALID_CLAIMS, "iat": -10**400}), None)
@given(assertions, st.none() | st.just("agent") | st.text(max_size=8))
def test_a_client_assertion_with_any_header_and_claims_raises_only_invalid_client(assertion, client_id):
    store = InMemoryStore()  # fresh: its replay cache must not remember other examples' jti
    store.create_client(AGENT)
    verifier = ClientAssertionVerifier(replay=store, jwks_fetcher=None)  # AGENT has jwks: nothing to fetch
    try:
        client = verifier.authenticate(assertion, client_id, store.get_client, audiences=(ISSUER, TOKEN_URL), now=NOW)
    except InvalidClientError:
        return
    assert client.client_id == "agent"


def pem(der: bytes) -> str:
    return "-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der).decode() + "-----END CERTIFICATE-----\n"


# Random bytes as PEM, and a real certificate with a few bytes overwritten: DER that parses deep
# before it goes wrong.
pem_like = st.binary(max_size=600).map(pem) | st.builds(lambda at, new: pem(DER[:at] + new + DER[at + len(new):]),
                                                        st.integers(0, len(DER) - 1), st.binary(min_size=1, max_size=4))
V2_PEM = pem(DER.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x01", 1))  # X.509 v2: cryptography refuses it


@FAST
@example(V2_PEM)
@given(st.text(max_size=300) | st.text(st.characters(codec=None), max_size=50) | pem_like)
def test_a_client_certificate_of_any_text_loads_or_raises_only_invalid_client(text):
    try:
        certificate = load_certificate(text)
    except InvalidClientError:
        return
    assert certificate_thumbprint(certificate)


client_certs = json_values | st.fixed_dictionaries(
    {"clientCertPem": json_values | pem_like | st.sampled_from([CERT_PEM, V2_PEM])})


@FAST
@given(st.dictionaries(st.sampled_from(["authentication", "http", "domainName"]),
                       json_values | st.fixed_dictionaries({"clientCert": client_certs}), max_size=3))
def test_the_client_certificate_of_any_request_context_is_a_pem_string_or_none(context):
    found = client_certificate_pem(context)
    assert found is None or (isinstance(found, str) and found)


def call(module, method: str, path: str, authorization, content_type, body: bytes, client_cert) -> None:
    store = InMemoryStore()  # fresh per example: revocations, registrations and throttle counters
    store.add_resource(API, "tools:read")
    store.add_client("rs", SECRET, "", introspect=True)
    store.create_client(AGENT)
    store.create_client(Client("tmc_reg", "client_secret_basic", ("tools:read",), NOW, policy=POLICY,
                               secrets=(ClientSecret(hash_secret(SECRET), NOW),),
                               registration_access_token_hash=hash_secret(RAT)))
    store.create_initial_access_token(new_initial_access_token(now=NOW, policy=POLICY, value=IAT)[0])
    runtime.install(runtime.Backend(Settings(issuer=ISSUER), store, store, KEYS, store, store, clock=lambda: NOW,
                                    assertions=ClientAssertionVerifier(replay=store, jwks_fetcher=None),
                                    throttle=AuthenticationThrottle(store)))
    fields = {k: v for k, v in (("authorization", authorization), ("content-type", content_type)) if v is not None}
    try:
        event = build_event(method, path, fields, body, domain="as.example.com", source_ip="192.0.2.1",
                            client_cert=client_cert)
        response = module.lambda_handler(event, lambda_context("PropertyTest"))
    finally:
        runtime.install(None)
    assert response["statusCode"] < 500, response["body"]


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


anything = st.none() | st.text(max_size=80) | st.binary(max_size=60).map(basic)
content_types = st.none() | st.sampled_from([FORM, "application/json"]) | st.text(max_size=40)
form_values = st.text(max_size=60) | st.sampled_from(["rs", "agent", SECRET, AT, ASSERTION_TYPE])
# Each way a client authenticates (Basic for rs, its secret in the body, a certificate with client_id,
# private_key_jwt) and odd mixes of them.
credentials = st.sampled_from([{}, {"client_id": "rs", "client_secret": SECRET}, {"client_id": "rs"}, {
    "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed({"alg": "ES256"}, VALID_CLAIMS)}]) | (
    st.dictionaries(st.sampled_from(["client_id", "client_secret", "client_assertion", "client_assertion_type"]),
                    form_values, max_size=3))
forms = st.builds(lambda fields, creds: urlencode({**fields, **creds}).encode(), st.fixed_dictionaries(
    {"token": mostly(st.just(AT), form_values)}, optional={"token_type_hint": form_values, "x": form_values}),
    credentials)
# Well-formed requests whose form varies, or anything: method, Authorization, Content-Type and body.
status_requests = mostly(st.tuples(st.just("POST"), st.sampled_from([basic(b"rs:" + SECRET.encode()), None]),
                                   st.just(FORM), forms),
                         st.tuples(st.sampled_from(["POST", "GET", "PUT"]), anything, content_types,
                                   forms | st.binary(max_size=300)))


@pytest.mark.parametrize("module, path", [(revocation, "/revoke"), (introspection, "/introspect")])
@FAST
@example(sent=("POST", None, FORM, b"token=x&client_id=rs"), client_cert={"clientCertPem": V2_PEM})  # mTLS
@given(status_requests, st.none() | client_certs)
def test_the_revocation_and_introspection_endpoints_never_answer_5xx(module, path, sent, client_cert):
    method, authorization, content_type, body = sent
    call(module, method, path, authorization, content_type, body, client_cert)


# A PUT repeats the client_id and may repeat the secret; the other members are odd JSON or values
# registration knows.
known_values = st.sampled_from(["private_key_jwt", "client_secret_basic", {"keys": [JWK]}, ["client_credentials"],
                                SECRET])
documents = mixed({"client_id": "tmc_reg", "scope": "tools:read", "client_secret": SECRET}, "client_name",
                  "token_endpoint_auth_method", "grant_types", "jwks", "software_statement", "tls_client_auth_san_dns",
                  values=json_values | known_values).map(lambda document: json.dumps(document).encode())
# Method, path, token, Content-Type and document that go together (PUT twice: an update checks the
# most), or any mix of them.
registration_requests = mostly(st.tuples(st.sampled_from([
    ("POST", "", "Bearer " + IAT), ("GET", "/tmc_reg", "Bearer " + RAT), ("PUT", "/tmc_reg", "bearer  " + RAT),
    ("PUT", "/tmc_reg", "Bearer " + RAT), ("DELETE", "/tmc_reg", "Bearer " + RAT)]), st.just("application/json"),
    documents), st.tuples(st.tuples(
        st.sampled_from(["POST", "GET", "PUT", "DELETE", "HEAD"]),
        st.sampled_from(["", "/tmc_reg", "/agent"]) | st.text(max_size=20).map(lambda s: "/" + quote(s, safe="")),
        st.sampled_from(["Bearer " + IAT, "Bearer " + RAT]) | anything), content_types,
    documents | st.binary(max_size=300)))


@FAST
@given(registration_requests, st.none() | client_certs)
def test_the_registration_endpoints_never_answer_5xx(sent, client_cert):
    (method, path, authorization), content_type, body = sent
    call(registration, method, "/register" + path, authorization, content_type, body, client_cert)


TOKEN_HEADER = {"typ": "at+jwt", "alg": "ES256", "kid": JKT}
TOKEN_CLAIMS = {"iss": ISSUER, "sub": "agent", "client_id": "agent", "aud": API, "iat": NOW, "exp": NOW + 300,
                "jti": "j1", "scope": "tools:read"}
CNFS = ({"jkt": JKT}, {"x5t#S256": certificate_thumbprint(CERT)}, {})  # DPoP-bound, certificate-bound, bearer
DPOP_BOUND, CERT_BOUND = (signed(TOKEN_HEADER, {**TOKEN_CLAIMS, "cnf": cnf}) for cnf in CNFS[:2])


@st.composite
def token_requests(draw):
    """Authorization (an access token signed by the issuer's key, or not), DPoP proof, method and URL."""
    claims = mixed({**TOKEN_CLAIMS, "cnf": st.sampled_from(CNFS)})
    token = draw(mostly(st.builds(signed, headers(TOKEN_HEADER, "crit", "b64"), claims), garbage))
    proof_claims = draw(dpop_claims)
    if draw(st.booleans()):  # a proof for this token (ath), whatever its other claims
        proof_claims["ath"] = access_token_hash(token)
    proof = draw(mostly(st.just(signed(draw(dpop_headers), proof_claims)), st.none() | garbage))
    scheme = draw(mostly(st.sampled_from(["DPoP ", "Bearer ", " dpop  "]), st.sampled_from(["Basic ", ""])
                         | st.text(max_size=8)))
    return scheme + token, proof, draw(st.sampled_from(["POST", "GET"])), draw(st.sampled_from([TOKEN_URL, API]))


@FAST
@example(("DPoP " + DPOP_BOUND, signed(PROOF_HEADER, {"jti": "j", "htm": "GET", "htu": API, "iat": 10**400,
                                                      "ath": access_token_hash(DPOP_BOUND)}), "GET", API), None)
@example(("Bearer " + CERT_BOUND, None, "GET", API), V2_PEM)
@given(token_requests(), st.none() | st.sampled_from([CERT_PEM, V2_PEM]) | st.text(max_size=40))
def test_the_verifier_rejects_any_request_with_token_rejected_only(sent, certificate):
    authorization, proof, method, url = sent
    verifier = TokenVerifier(issuer=ISSUER, audience=API, keys=LocalKeys(lambda: [JWK]), clock=lambda: NOW)
    try:
        verified = verifier.verify_request(authorization, method=method, url=url, dpop=proof, certificate=certificate,
                                           required_scopes=("tools:read",))
    except TokenRejected:
        return
    assert verified.client_id == "agent" and verified.audience == API
