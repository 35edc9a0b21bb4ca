"""Access token scope (RFC 6749 §3.3): syntax, and what a token may carry."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import InvalidScopeError

MAX_SCOPE_LENGTH = 4096
# scope = scope-token *( SP scope-token ); scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+(?: [\x21\x23-\x5B\x5D-\x7E]+)*")
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")


def parse_scope(value: str) -> tuple[str, ...]:
    """The scope tokens of a ``scope`` parameter, in order, without duplicates."""
    if len(value) > MAX_SCOPE_LENGTH or not _SCOPE.fullmatch(value):
        raise InvalidScopeError(
            "scope must be scope-tokens separated by single spaces (RFC 6749 §3.3)")
    return tuple(dict.fromkeys(value.split(" ")))


def validate_scope_tokens(scopes: Iterable[str]) -> tuple[str, ...]:
    """Check admin-supplied scope names against the same grammar."""
    tokens = tuple(dict.fromkeys(scopes))
    for token in tokens:
        if not _SCOPE_TOKEN.fullmatch(token):
            raise InvalidScopeError(f"{token!r} is not a valid scope token (RFC 6749 §3.3)")
    return tokens


def grant_scopes(requested: tuple[str, ...] | None, granted: Iterable[str],
                 defined: Iterable[str]) -> tuple[str, ...]:
    """requested ∩ granted ∩ defined-by-the-resource (everything granted when nothing is requested).

    Requested scopes outside the grant are dropped rather than refused: the response's ``scope``
    tells the client what it got (RFC 6749 §3.3, §5.1).
    """
    allowed = set(granted).intersection(defined)
    if requested is None:
        return tuple(s for s in defined if s in allowed)
    return tuple(s for s in requested if s in allowed)

