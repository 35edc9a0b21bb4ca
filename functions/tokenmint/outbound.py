"""Outbound HTTP: the JSON documents (RFC 8259) other hosts serve us, such as a client's
``jwks_uri`` (RFC 7591 §2), an issuer's JWKS and its introspection endpoint (RFC 7662 §2).

Every fetch is one exchange, ended by whichever comes first of its answer and one total deadline:

- The deadline covers DNS resolution, connecting, the TLS handshake, the request, the response
  headers and the whole body. The stdlib, urllib3 and httpx time out per operation (urllib3's
  ``Timeout`` docstring: "the read and total timeouts only measure the time between read operations
  […] if a server streams one byte every fifteen seconds, a timeout of 20 seconds will not trigger";
  httpx's read timeout is per chunk too) and none of them can bound ``getaddrinfo``. So the exchange
  runs in a worker thread, and the caller waits for it at most until the deadline: then it answers
  at once and shuts the socket down, so that the worker ends as well. At most
  :data:`MAX_WORKERS` workers exist at once (a resolver that never answers keeps its worker), so a
  flood of slow hosts cannot pile up threads: past that, fetches fail.
- The host is resolved once, every address it resolves to is checked against the policy (public
  addresses only, unless the policy allows more: no requests into the VPC, the instance metadata
  service or loopback), and the connection goes to a checked address, with the URL's host name for
  SNI, certificate verification and ``Host``. A DNS answer that changes between the check and the
  connection (rebinding) is never used.
- No redirects: a 3xx is a failure (urllib follows them unchecked, to http and private
  addresses, and re-sends ``Authorization`` to wherever they point). 200 is required, the body is
  size-bounded and must be one JSON object, depth-limited (oauth/json_text.py).

Every failure is one :class:`FetchError` whose message is the same whatever went wrong, so that
code that echoes it to a caller tells nobody whether an internal host refused, answered 404 or
timed out; what went wrong is its ``detail``, for the audit log.

I/O, so not in oauth/. Importing this module defines the error and the policy only; the socket,
TLS and HTTP modules load with the first fetch, so the token function's cold start pays nothing
for them here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .oauth.json_text import parse_json

if TYPE_CHECKING:
    import http.client
    import ipaddress
    import socket
    import ssl

    IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_DEADLINE = 5.0  # seconds; well inside the functions' 20 s timeout (template.yaml)
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_WORKERS = 16
PUBLIC_MESSAGE = "the document could not be fetched"
_DETAIL_LENGTH = 300

Resolver = Callable[[str, int], Sequence[str]]
AddressCheck = Callable[["IpAddress"], bool]


class FetchError(OSError):
    """A fetch failed. ``str()`` is :data:`PUBLIC_MESSAGE` whatever the cause; ``detail`` says what
    went wrong (for the audit log and the operator, never for the party that caused the fetch)."""

    def __init__(self, detail: str) -> None:
        super().__init__(PUBLIC_MESSAGE)
        self.detail = detail[:_DETAIL_LENGTH]

    def __str__(self) -> str:
        return PUBLIC_MESSAGE


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order (an IP literal: itself)."""
    import socket

    addresses: list[str] = []
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _embedded_ipv4(address: IpAddress) -> IpAddress | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64 well-known prefix): a host may
    not reach 127.0.0.1 by spelling it ::ffff:127.0.0.1 or 64:ff9b::7f00:1."""
    import ipaddress

    if address.version != 6:
        return None
    assert isinstance(address, ipaddress.IPv6Address)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def public_address(address: IpAddress) -> bool:
    """Globally routable (RFC 6890's special-purpose registries say which are not), and so is any
    IPv4 address it embeds."""
    embedded = _embedded_ipv4(address)
    return address.is_global and (embedded is None or embedded.is_global)


def any_address(address: IpAddress) -> bool:
    return True


def loopback_address(address: IpAddress) -> bool:
    embedded = _embedded_ipv4(address)
    return address.is_loopback or (embedded is not None and embedded.is_loopback)


def no_address(address: IpAddress) -> bool:
    return False


@dataclass(frozen=True)
class FetchPolicy:
    """What a fetch may reach, and for how long. ``address_allowed`` is checked for https,
    ``http_allowed`` for plain http (both for every address the host resolves to). ``resolve`` and
    ``tls`` (an SSLContext; None: the system's trust store) are there for tests."""

    deadline: float = DEFAULT_DEADLINE
    max_bytes: int = MAX_DOCUMENT_BYTES
    address_allowed: AddressCheck = public_address
    http_allowed: AddressCheck = no_address
    resolve: Resolver = system_resolve
    tls: ssl.SSLContext | None = field(default=None, compare=False)

    @classmethod
    def public(cls, deadline: float = DEFAULT_DEADLINE) -> FetchPolicy:
        """A URL another party chose (a client's ``jwks_uri``): https to public addresses only."""
        return cls(deadline=deadline)

    @classmethod
    def development(cls, deadline: float = DEFAULT_DEADLINE) -> FetchPolicy:
        """``tokenmint serve --dev``: any address, http too (local development only)."""
        return cls(deadline=deadline, address_allowed=any_address, http_allowed=any_address)

    @classmethod
    def configured(cls, deadline: float = DEFAULT_DEADLINE) -> FetchPolicy:
        """A URL the operator chose (an issuer's JWKS or introspection endpoint, the CLI's issuer):
        any address over https, since the issuer may well be internal; http only to loopback, as
        for issuers (config.validate_issuer)."""
        return cls(deadline=deadline, address_allowed=any_address, http_allowed=loopback_address)


# Held by each worker until it really ends, not just until its caller stops waiting.
_workers = threading.BoundedSemaphore(MAX_WORKERS)


def fetch_json(url: str, policy: FetchPolicy, *, data: bytes | None = None,
               headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """GET ``url`` (POST ``data`` when given) and return the JSON object it answers with 200."""
    status, body = _exchange(url, policy, data, headers or {})
    if status != 200:
        raise FetchError(f"{_origin(url)} answered HTTP {status}")
    return _document(url, body)


def exchange_json(url: str, policy: FetchPolicy, *, data: bytes | None = None,
                  headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any] | None]:
    """Like :func:`fetch_json`, for a client that reads error answers too (an OAuth error body):
    any status but a redirect, and the body when it is a JSON object (else None)."""
    status, body = _exchange(url, policy, data, headers or {})
    try:
        return status, _document(url, body)
    except FetchError:
        return status, None


def _document(url: str, body: bytes) -> dict[str, Any]:
    try:
        document = parse_json(body)
    except ValueError as exc:
        raise FetchError(f"{_origin(url)} did not answer JSON: {exc}") from None
    if not isinstance(document, dict):
        raise FetchError(f"{_origin(url)} answered JSON that is not an object")
    return document


def _origin(url: str) -> str:
    """Where a detail says the fetch went: scheme, host and port, never a path or query (they may
    carry something the URL's owner considers private)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    except ValueError:
        return "a malformed URL"


def _exchange(url: str, policy: FetchPolicy, data: bytes | None, headers: Mapping[str, str]) -> tuple[int, bytes]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchError("the URL is malformed") from None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("https", "http"):
        raise FetchError(f"{scheme or 'a URL without a scheme'}: only https (and http where allowed) is fetched")
    if not host or parts.username is not None or parts.password is not None:
        raise FetchError(f"{_origin(url)}: the URL needs a host and no user information")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    call = _Call(scheme, host, port or (443 if scheme == "https" else 80), target, data, dict(headers), policy)
    deadline = time.monotonic() + policy.deadline
    if not _workers.acquire(timeout=max(0.0, policy.deadline)):
        raise FetchError(f"{MAX_WORKERS} fetches are still running: none started for {_origin(url)}")
    try:
        threading.Thread(target=call.run, name="tokenmint-fetch", daemon=True).start()
    except BaseException:
        _workers.release()
        raise
    if not call.done.wait(max(0.0, deadline - time.monotonic())):
        call.abandon()
        raise FetchError(f"{_origin(url)}: no complete answer within {policy.deadline:g} s (while {call.stage})")
    if call.error is not None:
        raise call.error
    assert call.answer is not None
    return call.answer


class _Call:
    """One exchange, run by a worker thread; the caller may abandon it at its deadline."""

    def __init__(self, scheme: str, host: str, port: int, target: str, data: bytes | None,
                 headers: dict[str, str], policy: FetchPolicy) -> None:
        self.scheme, self.host, self.port, self.target = scheme, host, port, target
        self.data, self.headers, self.policy = data, headers, policy
        self.deadline = time.monotonic() + policy.deadline
        self.done = threading.Event()
        self.stage = "waiting for a worker"
        self.answer: tuple[int, bytes] | None = None
        self.error: FetchError | None = None
        self._lock = threading.Lock()
        self._abandoned = False
        self._socket: socket.socket | None = None

    def run(self) -> None:
        try:
            self.answer = self._run()
        except FetchError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 - the worker's boundary: whatever happens is a failed fetch
            self.error = FetchError(f"{self.scheme}://{self.host}:{self.port}: {self.stage} failed: "
                                    f"{type(exc).__name__}: {exc}")
        finally:
            self._close()
            _workers.release()
            self.done.set()

    def abandon(self) -> None:
        """The caller's deadline passed: shut the socket down so that the worker's blocked read or
        write returns now (closing it is the worker's job, once it is out of the call)."""
        import socket

        with self._lock:
            self._abandoned = True
            sock = self._socket
        if sock is not None:
            try:  # socket.socket's own shutdown: SSLSocket's would drop the TLS state under the worker
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def _remaining(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0 or self._abandoned:
            raise FetchError(f"{self.scheme}://{self.host}:{self.port}: deadline passed while {self.stage}")
        return remaining

    def _adopt(self, sock: socket.socket) -> None:
        with self._lock:
            self._socket = sock
            if self._abandoned:
                raise FetchError(f"{self.scheme}://{self.host}:{self.port}: deadline passed while {self.stage}")

    def _close(self) -> None:
        with self._lock:
            sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    def _run(self) -> tuple[int, bytes]:
        import http.client

        origin = f"{self.scheme}://{self.host}:{self.port}"
        self.stage = "resolving"
        addresses = self._checked(self.policy.resolve(self.host, self.port), origin)
        self.stage = "connecting"
        sock = self._connect(addresses, origin)
        connection: http.client.HTTPConnection
        if self.scheme == "https":
            self.stage = "in the TLS handshake"
            context = self.policy.tls or _default_tls()
            with self._lock:  # wrap and adopt at once: abandon() always sees the socket in use
                sock = self._socket = context.wrap_socket(sock, server_hostname=self.host,
                                                          do_handshake_on_connect=False)
            sock.settimeout(self._remaining())
            sock.do_handshake()  # verifies the certificate against the URL's host name
            connection = http.client.HTTPSConnection(self.host, self.port, context=context)
        else:
            connection = http.client.HTTPConnection(self.host, self.port)
        connection.sock = sock  # connected to the checked address (and verified): no connect() of its own
        try:
            return self._request(connection, sock, origin)
        finally:
            connection.close()

    def _request(self, connection: http.client.HTTPConnection, sock: socket.socket, origin: str) -> tuple[int, bytes]:
        self.stage = "sending the request"
        sock.settimeout(self._remaining())
        headers = {"Accept": "application/json", "Connection": "close", "User-Agent": "tokenmint", **self.headers}
        connection.request("POST" if self.data is not None else "GET", self.target, body=self.data, headers=headers)
        self.stage = "reading the response"
        sock.settimeout(self._remaining())
        with connection.getresponse() as response:
            if 300 <= response.status < 400:
                location = (response.getheader("Location") or "")[:200]
                raise FetchError(f"{origin} answered HTTP {response.status} to {location!r}: "
                                 "redirects are not followed")
            body = b""
            # Bounded: each pass reads or ends. A response closes its socket once it has it all.
            while not response.isclosed() and len(body) <= self.policy.max_bytes:
                sock.settimeout(self._remaining())
                chunk = response.read(min(65536, self.policy.max_bytes + 1 - len(body)))
                if not chunk:
                    break
                body += chunk
        if len(body) > self.policy.max_bytes:
            raise FetchError(f"{origin} answered more than {self.policy.max_bytes} bytes")
        return response.status, body

    def _checked(self, resolved: Sequence[str], origin: str) -> list[str]:
        """Every address ``host`` resolves to, if each may be reached; else the fetch fails."""
        import ipaddress

        allowed = self.policy.address_allowed if self.scheme == "https" else self.policy.http_allowed
        addresses = list(resolved)
        if not addresses:
            raise FetchError(f"{origin}: the host name resolves to no address")
        for address in addresses:
            try:
                ip = ipaddress.ip_address(str(address).split("%", 1)[0])
            except ValueError:
                raise FetchError(f"{origin}: the resolver answered {str(address)[:64]!r}, not an address") from None
            if not allowed(ip):
                raise FetchError(f"{origin} resolves to {ip}, which this fetch may not reach over {self.scheme}")
        return addresses

    def _connect(self, addresses: list[str], origin: str) -> socket.socket:
        """A TCP connection to the first checked address that accepts one."""
        import socket

        failure: OSError | None = None
        for address in addresses:
            timeout = self._remaining()
            try:
                sock = socket.create_connection((address, self.port), timeout=timeout)
            except OSError as exc:
                failure = exc
                continue
            self._adopt(sock)
            return sock
        raise FetchError(f"{origin}: cannot connect: {type(failure).__name__}: {failure}")


_tls_context: ssl.SSLContext | None = None


def _default_tls() -> ssl.SSLContext:
    """The system trust store with hostname checks, built once (loading it takes milliseconds)."""
    global _tls_context
    if _tls_context is None:
        import ssl

        _tls_context = ssl.create_default_context()
    return _tls_context
