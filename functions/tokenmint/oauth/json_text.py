"""JSON texts others send (RFC 8259), parsed with a nesting limit (§9 allows one), alone or as the
header and claims of a compact JWT (RFC 7515 §7.1, RFC 7519 §7.2) read before its signature is checked.

Python's parser recurses once per nesting level and, past the interpreter's recursion limit, raises
RecursionError, which is not a ValueError: ``[[[[…`` a few thousand deep fits in 8 KiB and escapes
every ``except ValueError`` as a 500. PyJWT catches it only in its newest releases (not up to 2.12,
which the requirements still allow), and even a caught RecursionError depends on how deep the stack
already is. So every untrusted text is measured first, without recursion, and every failure here is
a ValueError. JWTs go through :func:`unverified_jwt` before PyJWT sees them, so that PyJWT only ever
parses segments already known to be shallow.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

# Far deeper than any document this server reads (a JWK Set with x5c is 4 levels), far shallower
# than the interpreter's recursion limit.
MAX_DEPTH = 32
_SIGNIFICANT = re.compile(r'[\[\]{}"\\]')


def _nesting_depth(text: str, limit: int) -> int:
    """How deep arrays and objects nest in ``text`` (strings skipped), counting only up to
    ``limit + 1``. Linear, and it visits only brackets, quotes and backslashes."""
    depth = deepest = 0
    in_string = False
    escaped = -1  # the position of the character a backslash escapes
    for match in _SIGNIFICANT.finditer(text):
        position, char = match.start(), match.group()
        if position == escaped:
            continue
        if in_string:
            if char == "\\":
                escaped = position + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json(text: str | bytes, *, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
               max_depth: int = MAX_DEPTH) -> Any:
    """The value of a JSON text: UTF-8 when given bytes (RFC 8259 §8.1), at most ``max_depth``
    arrays and objects deep. ValueError (UnicodeDecodeError and JSONDecodeError are ValueErrors)
    for anything else; ``object_pairs_hook`` may raise its own errors."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    if _nesting_depth(text, max_depth) > max_depth:
        raise ValueError(f"the JSON text nests deeper than {max_depth} levels")
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    except RecursionError:  # cannot happen below MAX_DEPTH; kept so no parse ever ends in a 500
        raise ValueError("the JSON text nests too deeply") from None


def _segment(part: str) -> dict[str, Any]:
    """One base64url segment holding a JSON object (RFC 7515 §2: unpadded base64url)."""
    try:
        decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except ValueError:  # binascii.Error, and non-ASCII text
        raise ValueError("a JWT segment is not base64url") from None
    value = parse_json(decoded)
    if not isinstance(value, dict):
        raise ValueError("a JWT header and claims set must be JSON objects")
    return value


def unverified_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JOSE header and the claims of a compact JWS (three base64url parts, RFC 7515 §7.1), not
    verified: for choosing the key and for the checks that come before it. ValueError unless both
    are JSON objects within :data:`MAX_DEPTH` (RFC 7519 §7.2 steps 2–5 and 10)."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise ValueError("a JWT has three base64url parts")
    return _segment(parts[0]), _segment(parts[1])
