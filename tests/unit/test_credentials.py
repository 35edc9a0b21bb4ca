"""Secret hashing and constant-time verification (RFC 6749 §2.3.1; BCP: secrets never stored)."""

import pytest

from tokenmint.oauth.credentials import (
    CLIENT_SECRET_PREFIX,
    generate_client_id,
    generate_client_secret,
    hash_secret,
    verify_secret,
)


def test_given_a_generated_secret_when_inspected_then_256_bits_prefixed_and_unreserved_characters_only():
    secret = generate_client_secret()
    assert secret.startswith(CLIENT_SECRET_PREFIX) and len(secret) - len(CLIENT_SECRET_PREFIX) >= 43
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    assert set(secret) <= allowed and set(generate_client_id()) <= allowed
    assert generate_client_secret() != secret


def test_given_stored_hashes_when_verifying_then_only_a_matching_secret_passes():
    secret = generate_client_secret()
    assert verify_secret(secret, ("sha256:other", hash_secret(secret)))
    assert not verify_secret(secret + "x", (hash_secret(secret),))


@pytest.mark.parametrize("stored", [None, ()])
def test_given_no_stored_hash_when_verifying_then_nothing_matches_not_even_the_dummy(stored):
    for guess in (CLIENT_SECRET_PREFIX + "unknown-client", "", "anything"):
        assert not verify_secret(guess, stored)
