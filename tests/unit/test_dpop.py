"""DPoP (RFC 9449): proofs at the token endpoint (§4.3, §5), cnf.jkt-bound tokens (§6), and their
check by resource servers (§7). Proofs are signed with joserfc; tokens are read with PyJWT."""

import base64
import json

import anyio
import jwt
import pytest

from support.dpop import DpopKey
from support.fakes import NOW, InMemoryKeyStore, InMemoryStore
from tokenmint.oauth.client_credentials import ClientCredentialsGrant
from tokenmint.oauth.dpop import InvalidDpopProofError, verify_proof
from tokenmint.oauth.form import parse_form
from tokenmint.verifier import LocalKeys, McpTokenVerifier, TokenRejected, TokenVerifier

ISSUER = "https://auth.example.com"
API = "https://api.example.com/mcp"
SECRET = "tmsec_" + "s" * 43
TOKEN_URL = ISSUER + "/token"
TOOL_URL = API + "/tools/echo"
FORM = f"grant_type=client_credentials&resource={API}"


@pytest.fixture(scope="module")
def key():
    return DpopKey("ES256")


@pytest.fixture
def store():
    store = InMemoryStore()
    store.add_resource(API, "tools:read tools:write", lifetime=300)
    store.add_client("svc", SECRET, "tools:read tools:write")
    store.add_client("bound", SECRET, "tools:read", metadata={"dpop_bound_access_tokens": True})
    return store


@pytest.fixture
def keys():
    return InMemoryKeyStore()


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def request_token(store, keys, proof, client="svc", now=NOW):
    grant = ClientCredentialsGrant(store, store, keys, lambda: now, replay=store)
    form = parse_form(FORM.encode(), "application/x-www-form-urlencoded")
    return grant.create_token_response(form, basic(client, SECRET), ISSUER, dpop=proof, endpoint_urls=(TOKEN_URL,))


def claims_of(token: str, keys) -> dict:
    return jwt.decode(token, keys.public_key, algorithms=["RS256"], audience=API,
                      options={"verify_exp": False, "verify_iat": False})


# -- the proof itself (§4.3) ----------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA"])
def test_given_a_proof_of_each_allowed_algorithm_then_its_key_thumbprint(alg):
    holder = DpopKey(alg)
    proof = verify_proof(holder.proof("POST", TOKEN_URL, iat=NOW), method="POST", urls=(TOKEN_URL,), now=NOW)
    assert proof.jkt == holder.jkt


@pytest.mark.parametrize("url", [TOKEN_URL + "?x=1", TOKEN_URL + "#f", "HTTPS://AUTH.example.com:443/token"])
def test_given_htu_with_query_fragment_or_other_spelling_then_it_is_the_same_endpoint(key, url):
    assert verify_proof(key.proof("POST", url, iat=NOW), method="POST", urls=(TOKEN_URL,), now=NOW)


def forged_alg_none(key) -> str:
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": key.public_jwk}
    body = {"jti": "j", "htm": "POST", "htu": TOKEN_URL, "iat": NOW}
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc(header)}.{enc(body)}."


def hs256(key) -> str:
    return jwt.encode({"jti": "j", "htm": "POST", "htu": TOKEN_URL, "iat": NOW}, "k" * 32, algorithm="HS256",
                      headers={"typ": "dpop+jwt", "jwk": key.public_jwk})


BAD_PROOFS = {
    "missing": lambda k: "",
    "two headers": lambda k: k.proof("POST", TOKEN_URL, iat=NOW) + "," + k.proof("POST", TOKEN_URL, iat=NOW),
    "not a JWT": lambda k: "garbage",
    "wrong typ": lambda k: k.proof("POST", TOKEN_URL, iat=NOW, header={"typ": "JWT"}),
    "alg none": forged_alg_none,
    "HS256": hs256,
    "no jwk": lambda k: k.proof("POST", TOKEN_URL, iat=NOW, header={"jwk": None}),
    "private jwk": lambda k: k.proof("POST", TOKEN_URL, iat=NOW, header={"jwk": k.key.as_dict(private=True)}),
    "jwk of another key": lambda k: k.proof("POST", TOKEN_URL, iat=NOW, header={"jwk": DpopKey().public_jwk}),
    "jwk of another type": lambda k: k.proof("POST", TOKEN_URL, iat=NOW, header={"jwk": DpopKey("RS256").public_jwk}),
    "wrong method": lambda k: k.proof("GET", TOKEN_URL, iat=NOW),
    "wrong url": lambda k: k.proof("POST", ISSUER + "/revoke", iat=NOW),
    "another host": lambda k: k.proof("POST", "https://evil.example.com/token", iat=NOW),
    "stale": lambda k: k.proof("POST", TOKEN_URL, iat=NOW - 301),
    "from the future": lambda k: k.proof("POST", TOKEN_URL, iat=NOW + 61),
    "no jti": lambda k: k.proof("POST", TOKEN_URL, iat=NOW, jti=""),
    "huge jti": lambda k: k.proof("POST", TOKEN_URL, iat=NOW, jti="j" * 257),
    "string iat": lambda k: k.proof("POST", TOKEN_URL, iat=str(NOW)),
    "NaN iat": lambda k: k.proof("POST", TOKEN_URL, iat=float("nan")),
    "boolean iat": lambda k: k.proof("POST", TOKEN_URL, iat=True),
    "no htu": lambda k: k.proof("POST", TOKEN_URL, iat=NOW, htu=None),
    "oversized": lambda k: k.proof("POST", TOKEN_URL, iat=NOW, padding="x" * 9000),
}


@pytest.mark.parametrize("case", sorted(BAD_PROOFS))
def test_given_a_bad_proof_then_invalid_dpop_proof(key, case):
    with pytest.raises(InvalidDpopProofError) as caught:
        verify_proof(BAD_PROOFS[case](key), method="POST", urls=(TOKEN_URL,), now=NOW)
    assert caught.value.error == "invalid_dpop_proof" and caught.value.status_code == 400


def test_given_an_access_token_then_the_proof_must_carry_its_hash(key):
    assert verify_proof(key.proof("GET", TOOL_URL, iat=NOW, access_token="at"), method="GET", urls=(TOOL_URL,),
                        now=NOW, access_token="at")
    for proof in (key.proof("GET", TOOL_URL, iat=NOW), key.proof("GET", TOOL_URL, iat=NOW, access_token="other")):
        with pytest.raises(InvalidDpopProofError, match="ath"):
            verify_proof(proof, method="GET", urls=(TOOL_URL,), now=NOW, access_token="at")


# -- the token endpoint (§5) ----------------------------------------------------------------------
def test_given_a_proof_when_requesting_then_a_dpop_token_bound_to_its_key(store, keys, key):
    response = request_token(store, keys, key.proof("POST", TOKEN_URL, iat=NOW))
    body = response.body()
    assert body["token_type"] == "DPoP"
    assert claims_of(body["access_token"], keys)["cnf"] == {"jkt": key.jkt}


def test_given_no_proof_then_a_bearer_token_without_cnf(store, keys):
    body = request_token(store, keys, None).body()
    assert body["token_type"] == "Bearer" and "cnf" not in claims_of(body["access_token"], keys)


def test_given_a_replayed_proof_then_refused_and_no_second_token(store, keys, key):
    proof = key.proof("POST", TOKEN_URL, iat=NOW)
    request_token(store, keys, proof)
    with pytest.raises(InvalidDpopProofError, match="already used"):
        request_token(store, keys, proof)
    assert keys.signatures == 1


def test_given_a_bad_proof_then_nothing_is_read_or_spent(store, keys, key):
    with pytest.raises(InvalidDpopProofError):
        request_token(store, keys, key.proof("POST", TOKEN_URL, iat=NOW - 1000))
    assert (store.reads, store.used, keys.signatures) == (0, {}, 0)


def test_given_a_wrong_secret_with_a_good_proof_then_invalid_client_and_the_proof_unspent(store, keys, key):
    grant = ClientCredentialsGrant(store, store, keys, lambda: NOW, replay=store)
    form = parse_form(FORM.encode(), "application/x-www-form-urlencoded")
    with pytest.raises(Exception, match="client authentication failed"):
        grant.create_token_response(form, basic("svc", "tmsec_wrong"), ISSUER,
                                    dpop=key.proof("POST", TOKEN_URL, iat=NOW), endpoint_urls=(TOKEN_URL,))
    assert store.used == {}


def test_given_a_client_registered_dpop_bound_then_a_proof_is_required(store, keys, key):
    with pytest.raises(InvalidDpopProofError, match="must send a DPoP proof"):
        request_token(store, keys, None, client="bound")
    assert request_token(store, keys, key.proof("POST", TOKEN_URL, iat=NOW), client="bound").body()["token_type"] == "DPoP"


# -- resource servers (§7) ------------------------------------------------------------------------
@pytest.fixture
def issued(store, keys, key):
    return request_token(store, keys, key.proof("POST", TOKEN_URL, iat=NOW)).body()["access_token"]


@pytest.fixture
def verifier(keys):
    return TokenVerifier(issuer=ISSUER, audience=API, keys=LocalKeys(keys.public_jwks), clock=lambda: NOW)


def rejected(call) -> TokenRejected:
    with pytest.raises(TokenRejected) as caught:
        call()
    return caught.value


def test_given_a_dpop_token_and_its_proof_then_accepted(verifier, issued, key):
    proof = key.proof("GET", TOOL_URL, iat=NOW, access_token=issued)
    verified = verifier.verify_request("DPoP " + issued, method="GET", url=TOOL_URL, dpop=proof,
                                       required_scopes=["tools:read"])
    assert verified.confirmation == {"jkt": key.jkt}


def test_given_a_replayed_resource_proof_then_invalid_dpop_proof(verifier, issued, key):
    proof = key.proof("GET", TOOL_URL, iat=NOW, access_token=issued)
    verifier.verify_request("DPoP " + issued, method="GET", url=TOOL_URL, dpop=proof)
    error = rejected(lambda: verifier.verify_request("DPoP " + issued, method="GET", url=TOOL_URL, dpop=proof))
    assert (error.error, error.status_code) == ("invalid_dpop_proof", 401)
    assert error.challenge().startswith('DPoP algs="') and 'error="invalid_dpop_proof"' in error.challenge()


def test_given_a_stolen_dpop_token_then_useless_without_the_key(verifier, issued, key):
    thief = DpopKey()
    cases = {
        "as a bearer token": lambda: verifier.verify_request("Bearer " + issued, method="GET", url=TOOL_URL),
        "without a proof": lambda: verifier.verify_request("DPoP " + issued, method="GET", url=TOOL_URL),
        "with the thief's proof": lambda: verifier.verify_request(
            "DPoP " + issued, method="GET", url=TOOL_URL, dpop=thief.proof("GET", TOOL_URL, iat=NOW, access_token=issued)),
        "with a proof for another URL": lambda: verifier.verify_request(
            "DPoP " + issued, method="GET", url=TOOL_URL, dpop=key.proof("GET", API + "/x", iat=NOW, access_token=issued)),
        "with a proof for another token": lambda: verifier.verify_request(
            "DPoP " + issued, method="GET", url=TOOL_URL, dpop=key.proof("GET", TOOL_URL, iat=NOW, access_token="x")),
        "through verify()": lambda: verifier.verify(issued),
    }
    for name, call in cases.items():
        error = rejected(call)
        assert error.status_code == 401 and error.scheme == "DPoP", name


def test_given_a_bearer_token_then_the_dpop_scheme_is_refused_and_bearer_still_works(verifier, store, keys):
    bearer = request_token(store, keys, None).body()["access_token"]
    assert verifier.verify_request("Bearer " + bearer, method="GET", url=TOOL_URL).client_id == "svc"
    error = rejected(lambda: verifier.verify_request("DPoP " + bearer, method="GET", url=TOOL_URL,
                                                     dpop=DpopKey().proof("GET", TOOL_URL, iat=NOW, access_token=bearer)))
    assert error.error == "invalid_token"


def test_given_a_dpop_token_then_the_mcp_sdk_adapter_refuses_it(verifier, issued):
    # The MCP SDK's middleware passes only the token (Bearer scheme): it cannot check a proof.
    assert anyio.run(McpTokenVerifier(verifier).verify_token, issued) is None


def test_given_missing_scope_with_a_good_proof_then_insufficient_scope(verifier, issued, key):
    error = rejected(lambda: verifier.verify_request(
        "DPoP " + issued, method="GET", url=TOOL_URL, dpop=key.proof("GET", TOOL_URL, iat=NOW, access_token=issued),
        required_scopes=["tools:admin"]))
    assert (error.error, error.status_code) == ("insufficient_scope", 403)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.999])
def test_given_a_proof_then_its_replay_record_outlives_every_second_it_is_accepted(key, fraction):
    # The sibling of security review finding 8: a spent jti must be remembered while its proof is accepted
    iat = NOW + fraction
    proof = key.proof("POST", TOKEN_URL, iat=iat)
    accepted = [now for now in range(NOW - 60, NOW + 400)
                if _accepted(lambda: verify_proof(proof, method="POST", urls=(TOKEN_URL,), now=now))]
    checked = verify_proof(proof, method="POST", urls=(TOKEN_URL,), now=NOW)
    assert accepted and checked.replay_expires_at > max(accepted)


def _accepted(check) -> bool:
    try:
        check()
    except InvalidDpopProofError:
        return False
    return True


def test_given_a_proof_whose_htm_carries_a_header_then_no_challenge_carries_it(verifier, issued, key):
    # Security review finding 9: htm (client-controlled) was copied into the WWW-Authenticate header
    proof = key.proof("GET", TOOL_URL, iat=NOW, access_token=issued, htm="GET\r\nSet-Cookie: x=1")
    error = rejected(lambda: verifier.verify_request("DPoP " + issued, method="GET", url=TOOL_URL, dpop=proof))
    assert error.error == "invalid_dpop_proof"
    value = error.challenge("https://api.example.com/.well-known/oauth-protected-resource")
    assert "Set-Cookie" not in error.description and not any(c in value for c in "\r\n\0")


@pytest.mark.parametrize("text", ['say "hi"\r\nSet-Cookie: a=b', "tab\there", "back\\slash", "naïve\x1b[2J", "\u2028"])
def test_every_challenge_value_is_a_quoted_string_of_rfc6750_characters(text):
    from tokenmint.oauth.errors import InvalidClientError, InvalidTokenError, challenge

    rendered = [challenge("Bearer", realm="tokenmint", error_description=text),
                InvalidTokenError(text).headers["WWW-Authenticate"],
                InvalidClientError(text).headers["WWW-Authenticate"],
                TokenRejected("invalid_token", text, scope=text).challenge(text)]
    for value in rendered:
        # scheme, then name="value" pairs whose values hold only NQSCHAR (RFC 6750 §3)
        import re
        assert re.fullmatch(r'[A-Za-z]+( [a-z_]+="[\x20\x21\x23-\x5b\x5d-\x7e]*"(, [a-z_]+="[\x20\x21\x23-\x5b\x5d-\x7e]*")*)?',
                            value), value


class MovingClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_given_one_client_flooding_proofs_then_only_its_own_proofs_are_refused(store, keys, key):
    # Security review finding 6: one client filled the resource server's replay cache (fail closed
    # at 100,000 live proofs) and every other client's proofs were refused as replays for minutes.
    from tokenmint.verifier import MemoryReplayCache

    clock = MovingClock(NOW)
    cache = MemoryReplayCache(max_entries=100, max_entries_per_partition=10, clock=clock)
    verifier = TokenVerifier(issuer=ISSUER, audience=API, keys=LocalKeys(keys.public_jwks), clock=clock,
                             dpop_replay=cache)
    noisy = request_token(store, keys, key.proof("POST", TOKEN_URL, iat=NOW)).body()["access_token"]
    quiet_key = DpopKey("ES256")
    quiet = request_token(store, keys, quiet_key.proof("POST", TOKEN_URL, iat=NOW), client="bound").body()["access_token"]

    def call(token, dpop_key):
        proof = dpop_key.proof("GET", TOOL_URL, iat=int(clock.now), access_token=token)
        return verifier.verify_request("DPoP " + token, method="GET", url=TOOL_URL, dpop=proof)

    # Given the noisy client's proofs up to its share of the cache
    for _ in range(10):
        call(noisy, key)
    # When it sends one more, Then it alone is refused, with a reason that is not "replayed"
    error = rejected(lambda: call(noisy, key))
    assert error.error == "invalid_dpop_proof" and "too many recent DPoP proofs" in error.description
    # while another client's proofs are accepted
    assert call(quiet, quiet_key).client_id == "bound"
    # And once its proofs have aged out, the noisy client is served again
    clock.now += 301
    assert call(noisy, key).client_id == "svc"


def test_given_a_full_replay_cache_then_expired_records_make_room_and_live_ones_stay(key):
    from tokenmint.verifier import MemoryReplayCache, ReplayCacheFullError

    clock = MovingClock(NOW)
    cache = MemoryReplayCache(max_entries=4, max_entries_per_partition=3, clock=clock)
    assert all(cache.use_once(f"k{i}", NOW + 10, partition="a") for i in range(3))
    with pytest.raises(ReplayCacheFullError):
        cache.use_once("k3", NOW + 10, partition="a")
    assert cache.use_once("b0", NOW + 20, partition="b")
    with pytest.raises(ReplayCacheFullError):  # the whole cache is full of live records
        cache.use_once("c0", NOW + 20, partition="c")
    assert cache.use_once("k0", NOW + 10, partition="a") is False  # still remembered: a replay
    clock.now = NOW + 10  # a's records expire
    assert cache.use_once("c0", NOW + 20, partition="c") and cache.use_once("k0", NOW + 30, partition="a")
    assert cache.use_once("b0", NOW + 20, partition="b") is False


@pytest.mark.parametrize("segment", ["header", "claims"])
def test_given_a_proof_nested_thousands_deep_then_invalid_dpop_proof_not_a_crash(segment):
    from support.nested_jwt import nested_jwt

    proof = nested_jwt({"typ": "dpop+jwt", "alg": "ES256"}, {}, segment)
    with pytest.raises(InvalidDpopProofError, match="not a well-formed JWT"):
        verify_proof(proof, method="POST", urls=(TOKEN_URL,), now=NOW)
