"""JWTs whose header or claims nest arrays thousands deep: under 8 KiB, yet deeper than Python's
parser can recurse (what oauth/json_text.py guards every parser of client-sent JSON against)."""

from __future__ import annotations

import base64
import json


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def nested_jwt(header: dict, claims: dict, segment: str, depth: int = 3000) -> str:
    """A compact JWS with ``header`` and ``claims``, and an array ``depth`` deep as the member "x" of
    the ``segment`` ("header" or "claims"); its signature is junk (it is never reached)."""
    deep = b"[" * depth + b"]" * depth
    encoded = {"header": json.dumps(header).encode(), "claims": json.dumps(claims).encode()}
    encoded[segment] = encoded[segment][:-1] + (b', "x": ' if len(encoded[segment]) > 2 else b'"x": ') + deep + b"}"
    return f"{_b64(encoded['header'])}.{_b64(encoded['claims'])}.c2ln"
