"""RFC 6749 §3.3 scope syntax and RFC 8707 resource indicators."""

import pytest

from support.fakes import InMemoryStore
from tokenmint.oauth.errors import InvalidScopeError, InvalidTargetError
from tokenmint.oauth.models import Client
from tokenmint.oauth.resource import normalize_resource_identifier, select_resource
from tokenmint.oauth.scope import grant_scopes, parse_scope


def test_given_valid_scope_when_parsed_then_tokens_in_order_without_duplicates():
    assert parse_scope("read write read tools:echo") == ("read", "write", "tools:echo")


@pytest.mark.parametrize("scope", ["read  write", " read", "read ", 'say"hi"', "back\\slash", "tab\there",
                                   "caf\u00e9", "x" * 5000])
def test_given_scope_outside_the_grammar_when_parsed_then_invalid_scope(scope):
    with pytest.raises(InvalidScopeError):
        parse_scope(scope)


def test_given_requested_scopes_when_granted_then_intersection_in_request_order():
    assert grant_scopes(("b", "x", "a"), granted=["a", "b", "c"], defined=["a", "b"]) == ("b", "a")


def test_given_no_requested_scope_when_granted_then_everything_granted_that_the_resource_defines():
    assert grant_scopes(None, granted=["a", "c", "z"], defined=["a", "b", "c"]) == ("a", "c")


@pytest.mark.parametrize("given, normal", [
    ("https://API.Example.com/mcp", "https://api.example.com/mcp"),
    ("HTTPS://api.example.com:443/mcp", "https://api.example.com/mcp"),
    ("https://api.example.com", "https://api.example.com/"),
    ("http://localhost:80", "http://localhost/"),
    ("https://api.example.com:8443/a%2fb?x=1", "https://api.example.com:8443/a%2Fb?x=1"),
    ("urn:example:api", "urn:example:api"),
    ("https://[::1]:8443/", "https://[::1]:8443/"),
    ("https://[v1.abc]/", "https://[v1.abc]/"),
    ("foo://a.example", "foo://a.example"),
])
def test_given_equivalent_identifiers_when_normalised_then_equal(given, normal):
    assert normalize_resource_identifier(given) == normal


def test_given_distinct_identifiers_when_normalised_then_they_stay_distinct():
    assert normalize_resource_identifier("https://[v1.abc]/") != normalize_resource_identifier("https://v1.abc/")
    assert normalize_resource_identifier("foo://a.example") != normalize_resource_identifier("foo://a.example/")


@pytest.mark.parametrize("bad", ["", "/relative/path", "api.example.com", "https://api.example.com/#frag",
                                 "https://user:pw@api.example.com/", "https:///nohost", "https:no-slashes",
                                 "https://api.example.com/ space", "https://api.example.com:99999/",
                                 "1https://x", "https://exa\u00e9mple.com/", "x" * 3000])
def test_given_a_malformed_resource_when_normalised_then_invalid_target(bad):
    with pytest.raises(InvalidTargetError):
        normalize_resource_identifier(bad)


def _client(scopes: str) -> Client:
    return Client(client_id="c", auth_method="client_secret_basic", scopes=tuple(scopes.split()), created_at=0)


def test_given_no_resource_and_one_candidate_when_selected_then_that_resource():
    store = InMemoryStore()
    api = store.add_resource("https://api.example.com/", "read write")
    store.add_resource("https://other.example.com/", "admin")
    assert select_resource(None, _client("read"), store) == api


def test_given_no_resource_and_two_candidates_when_selected_then_invalid_target():
    store = InMemoryStore()
    store.add_resource("https://a.example.com/", "read")
    store.add_resource("https://b.example.com/", "read")
    with pytest.raises(InvalidTargetError, match="2 resources"):
        select_resource(None, _client("read"), store)


def test_given_a_resource_in_another_spelling_when_selected_then_found_and_registered_form_kept():
    store = InMemoryStore()
    api = store.add_resource("https://api.example.com/mcp", "read")
    key = normalize_resource_identifier("HTTPS://API.EXAMPLE.COM:443/mcp")
    assert select_resource(key, _client("read"), store).identifier == api.identifier


def test_given_an_unknown_resource_when_selected_then_invalid_target():
    with pytest.raises(InvalidTargetError, match="unknown resource"):
        select_resource(normalize_resource_identifier("https://nope.example.com/"), _client("read"), InMemoryStore())
