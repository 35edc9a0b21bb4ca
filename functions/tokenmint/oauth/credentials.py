"""Client identifiers and secrets (RFC 6749 §2.2, §2.3.1; OAuth Security BCP §2.5).

Secrets (and the initial and registration access tokens of RFC 7591/7592) are generated here with
256 bits of entropy and a recognisable prefix, shown once, and stored only as a SHA-256 hash. A
slow password hash (bcrypt, scrypt) would add tens of milliseconds to every token for no gain: it
protects low-entropy human passwords, while a 256-bit random secret cannot be brute-forced from its
hash. Both use only RFC 3986 unreserved characters, so they survive Basic-auth form-encoding
whether or not a client encodes them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

CLIENT_ID_PREFIX = "tmc_"
CLIENT_SECRET_PREFIX = "tmsec_"
INITIAL_ACCESS_TOKEN_PREFIX = "tmiat_"
REGISTRATION_ACCESS_TOKEN_PREFIX = "tmrat_"
_HASH_SCHEME = "sha256:"
MAX_CLIENT_ID_LENGTH = 128
MAX_SECRET_LENGTH = 512


def generate_client_id() -> str:
    return CLIENT_ID_PREFIX + secrets.token_urlsafe(16)


def generate_client_secret() -> str:
    return generate_token(CLIENT_SECRET_PREFIX)


def generate_token(prefix: str) -> str:
    """A 256-bit bearer credential (secret, initial or registration access token) with its prefix."""
    return prefix + secrets.token_urlsafe(32)


# A bearer credential chosen by hand (TOKENMINT_INITIAL_ACCESS_TOKEN) must be as hard to guess as a
# generated one: as long as its random part (256 bits in base64url), and not one repeated pattern.
MIN_CHOSEN_TOKEN_LENGTH = 43
MIN_CHOSEN_TOKEN_DISTINCT_CHARACTERS = 16


def chosen_token_weakness(value: str) -> str | None:
    """Why a hand-chosen bearer credential is too weak to expose, or None."""
    if len(value) < MIN_CHOSEN_TOKEN_LENGTH:
        return f"it has {len(value)} characters; use at least {MIN_CHOSEN_TOKEN_LENGTH}"
    if len(set(value)) < MIN_CHOSEN_TOKEN_DISTINCT_CHARACTERS:
        return f"it uses fewer than {MIN_CHOSEN_TOKEN_DISTINCT_CHARACTERS} distinct characters"
    if len(value) > MAX_SECRET_LENGTH:
        return f"it has more than {MAX_SECRET_LENGTH} characters"
    return None


def hash_secret(secret: str) -> str:
    digest = hashlib.sha256(secret.encode("utf-8")).digest()
    return _HASH_SCHEME + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# Compared against when the client is unknown, so that an unknown client costs the same as a
# wrong secret.
_UNKNOWN_CLIENT_HASHES = (hash_secret(CLIENT_SECRET_PREFIX + "unknown-client"),)


def verify_secret(presented: str, stored_hashes: tuple[str, ...] | None) -> bool:
    """Constant-time check of ``presented`` against each stored hash.

    None or empty (an unknown client, or one whose secrets have all expired) never matches, but
    costs the same as a comparison, against a dummy hash.
    """
    presented_hash = hash_secret(presented).encode("ascii")
    matched = False
    for stored in stored_hashes or _UNKNOWN_CLIENT_HASHES:
        matched |= hmac.compare_digest(presented_hash, stored.encode("ascii"))
    return matched and bool(stored_hashes)
