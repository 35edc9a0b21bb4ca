"""Resource Indicators (RFC 8707 §2): which protected resource a token is for, and what it may carry."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from .errors import InvalidTargetError

if TYPE_CHECKING:
    from ..ports import ResourceStore
    from .models import Client, Resource

MAX_RESOURCE_LENGTH = 2048
# RFC 3986 §2: the characters a URI may contain (unreserved, reserved and percent-encodings).
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_resource_identifier(value: str) -> str:
    """Validate ``value`` as a resource indicator and return its RFC 3986 §6.2.2–6.2.3 normal form.

    Two identifiers with the same normal form name the same resource: scheme and host are
    case-insensitive, the default port and an empty path add nothing, percent-encodings are
    case-insensitive. Raises :class:`InvalidTargetError` for anything that is not an absolute URI
    without a fragment (RFC 8707 §2) or that carries credentials.
    """
    if not value or len(value) > MAX_RESOURCE_LENGTH or not _URI_CHARS.fullmatch(value):
        raise InvalidTargetError("resource must be an absolute URI (RFC 8707 §2)")
    if "#" in value:
        raise InvalidTargetError("resource must not contain a fragment (RFC 8707 §2)")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidTargetError("resource must be an absolute URI (RFC 8707 §2)") from None
    if not parts.scheme or not _SCHEME.fullmatch(parts.scheme) or not value[len(parts.scheme) + 1:]:
        raise InvalidTargetError("resource must be an absolute URI (RFC 8707 §2)")
    scheme = parts.scheme.lower()
    if value[len(scheme) + 1:].startswith("//"):
        if "@" in parts.netloc:
            raise InvalidTargetError("resource must not contain user information")
        host = (parts.hostname or "").lower()
        if not host:
            raise InvalidTargetError("resource must name a host")
        if "[" in parts.netloc:  # an IP literal (IPv6 or IPvFuture) keeps its brackets
            host = f"[{host}]"
        netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
        # §6.2.3: an empty path equals "/" only where the scheme says so (http and https do)
        path = parts.path or ("/" if scheme in _DEFAULT_PORTS else "")
    elif scheme in _DEFAULT_PORTS:
        raise InvalidTargetError(f"a {scheme} resource must name a host")
    else:
        netloc, path = "", parts.path
    path = _PCT.sub(lambda m: "%" + m.group(1).upper(), path)
    query = _PCT.sub(lambda m: "%" + m.group(1).upper(), parts.query)
    return urlunsplit((scheme, netloc, path, query, ""))


def select_resource(requested_key: str | None, client: Client, resources: ResourceStore) -> Resource:
    """The audience of the token: the requested resource (by its normal form, see
    :func:`normalize_resource_identifier`), or the client's only one (RFC 8707 §2)."""
    if requested_key is not None:
        resource = resources.get_resource(requested_key)
        if resource is None:
            raise InvalidTargetError("unknown resource", client_id=client.client_id)
        if not client.may_use(resource.key):
            raise InvalidTargetError("this client may not obtain tokens for this resource", client_id=client.client_id)
        return resource
    granted = set(client.scopes)
    candidates = [r for r in resources.list_resources() if granted.intersection(r.scopes) and client.may_use(r.key)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InvalidTargetError("no registered resource defines a scope granted to this client",
                                 client_id=client.client_id)
    raise InvalidTargetError(
        f"this client may obtain tokens for {len(candidates)} resources; name one with the "
        "resource parameter", client_id=client.client_id)
