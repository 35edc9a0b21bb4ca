"""Credentials-guessing defence (RFC 6749 §10.10) and registration rate limits, answered with 429 and
Retry-After (RFC 6585 §4).

Failed client authentications are counted in fixed windows per (client id, source) and per source,
in the store, so every process sees the same counts. When a (client, source) pair reaches its limit,
the source is recorded as blocked on the client's own record: the one read a token request already
makes returns the block, so it costs nothing on the success path, and the block is checked before a
secret or an assertion is verified. A block names one source, so a stranger failing as client C from
source X never slows C's requests from source Y. The per-source limit catches one source spraying
many client ids: once a source is over it, its requests are refused with 429 *before* any credential
is checked, so a correct guess past the limit gains nothing. Bearer-token endpoints (registration,
client configuration) read the source's counter first; client authentication (token, revocation,
introspection), whose budget is one read per token, refuses a source this process has seen go over
the limit (a source spread across Lambda processes is still counted in the store and answered 429,
and guesses there are against 256-bit secrets and signatures, never against a guessable value).

A blocked client id and an unknown one cost the same writes: a failure is counted (the pair and the
source counter) whether the client exists, and a request refused by a block is counted too, so the
store's write pattern does not tell which client ids exist (a client id is no secret, RFC 6749 §2.2,
but nothing here should enumerate them either).

The answer is ``temporarily_unavailable`` with status 429: RFC 6749 §4.1.2.1 defines that code for a
server that cannot handle the request right now, generic clients treat it as "retry later", and it
names no credential, so a legitimate client sharing a throttled address is not told its secret is
wrong (``invalid_client`` would). ``slow_down`` (RFC 8628 §3.5) means polling a device code too fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from ..ports import UnavailableError
from .errors import OAuthError, TemporarilyUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..ports import ThrottleStore
    from .models import Client

UNKNOWN_SOURCE = "unknown"


class ThrottledError(TemporarilyUnavailableError):
    """429 Too Many Requests with ``Retry-After`` in seconds (RFC 6585 §4, RFC 9110 §10.2.3)."""

    status_code = 429

    def __init__(self, description: str, *, retry_after: int, client_id: str | None = None) -> None:
        super().__init__(description, retry_after=max(1, retry_after))
        self.client_id = client_id


def too_many_failures(retry_after: int, client_id: str | None = None) -> ThrottledError:
    # One description for every case (blocked pair, pair or source over its limit, known or unknown
    # client), so the answer tells an attacker nothing about which client ids exist.
    return ThrottledError(f"too many failed authentication attempts from this address; retry after "
                          f"{max(1, retry_after)} seconds", retry_after=retry_after, client_id=client_id)


def source_key(source_ip: str | None) -> str:
    """The source a request is counted under: an IPv4 address, or an IPv6 /64 (one subscriber's
    allocation: whoever holds a /64 must not get 2^64 fresh sources). Unparseable: one shared bucket."""
    import ipaddress

    try:
        address = ipaddress.ip_address((source_ip or "").strip())
    except ValueError:
        return UNKNOWN_SOURCE
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(frozen=True)
class ThrottlePolicy:
    """Limits per fixed window of ``window`` seconds; a limit of 0 turns that count off.

    The defaults are in the spirit of established servers (Keycloak locks a user after 30 failures,
    Auth0 blocks one IP for one account after 10 and throttles busy IPs across accounts): dozens of
    failures a minute before any slowdown, so a misconfigured client is not mistaken for an attack.
    """

    window: int = 60
    failures_per_client_source: int = 30
    failures_per_source: int = 100
    registrations_per_source: int = 20

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("the throttle window must be at least one second")
        if min(self.failures_per_client_source, self.failures_per_source, self.registrations_per_source) < 0:
            raise ValueError("throttle limits must not be negative")

    def window_at(self, now: int) -> tuple[int, int]:
        """The window ``now`` falls in: its start (part of every counter's key) and its end."""
        start = now - now % self.window
        return start, start + self.window


class AuthenticationThrottle:
    """Counts failures and registrations in a :class:`ThrottleStore` under a :class:`ThrottlePolicy`.

    Counting is best effort: a store that is unavailable never turns a 401 into a 503.
    """

    # Sources this process answered 429 for being over the per-source limit → the end of that window.
    # Bounded: when full it is emptied (each dropped source comes back with its next failure).
    MAX_REMEMBERED_SOURCES = 10_000

    def __init__(self, store: ThrottleStore, policy: ThrottlePolicy | None = None) -> None:
        self.store = store
        self.policy = policy or ThrottlePolicy()
        self._over_limit: dict[str, int] = {}

    def refuse_if_over_limit(self, source: str, now: int, *, read_store: bool) -> None:
        """Raise a 429 before any credential of ``source`` is checked when it is over its per-source
        failure limit: as this process remembers it, and with ``read_store`` as the store counts it."""
        limit = self.policy.failures_per_source
        if not limit:
            return
        until = self._over_limit.get(source, 0)
        if until > now:
            raise too_many_failures(until - now)
        if until:  # its window is over
            self._over_limit.pop(source, None)
        if not read_store:
            return
        start, end = self.policy.window_at(now)
        try:
            count = self.store.read_counter(f"source#{start}#{source}", now=now)
        except UnavailableError:
            return
        if count >= limit:
            self._remember_over_limit(source, end)
            raise too_many_failures(end - now)

    def sources_over_limit(self) -> bool:
        """Whether this process remembers any source over its limit (expired entries included)."""
        return bool(self._over_limit)

    def _remember_over_limit(self, source: str, until: int) -> None:
        if len(self._over_limit) >= self.MAX_REMEMBERED_SOURCES:
            self._over_limit.clear()
        self._over_limit[source] = until

    def guard(self, source_ip: str | None, now: int) -> AuthenticationGuard:
        """The guard of one client authentication from ``source_ip`` at ``now``."""
        return AuthenticationGuard(self, source_ip, now)

    def bearer_check(self, source_ip: str | None, now: int) -> None:
        """Before an initial or registration access token is checked: a 429 if its source is over the limit."""
        self.refuse_if_over_limit(source_key(source_ip), now, read_store=True)

    def bearer_failure(self, error: OAuthError, source_ip: str | None, now: int) -> OAuthError:
        """A wrong initial or registration access token (RFC 7591 §3, RFC 7592 §3): counted per
        source; what to raise, ``error`` or a 429 once the source is over its limit."""
        return self.failure(error, source_key(source_ip), None, None, now)

    def registration(self, source_ip: str | None, now: int) -> None:
        """Count a registration attempt; :class:`ThrottledError` once the source is over its limit."""
        limit = self.policy.registrations_per_source
        if not limit:
            return
        start, end = self.policy.window_at(now)
        try:
            count = self.store.add_to_counter(f"register#{start}#{source_key(source_ip)}", now=now, expires_at=end)
        except UnavailableError:
            return
        if count > limit:
            raise ThrottledError(f"too many client registrations from this address; retry after {end - now} seconds",
                                 retry_after=end - now)

    def failure(self, error: OAuthError, source: str, client_id: str | None, client: Client | None,
                now: int, *, blocked: bool = False) -> OAuthError:
        """Count a failed authentication from ``source`` claiming ``client_id`` (None: no client was
        named, or the id was too long to look up); ``client`` is the record found for it, if any;
        ``blocked``: the request was refused by the block already on that record (not written again).
        Returns what to raise: ``error``, or a 429 when the pair or the source is over its limit."""
        policy = self.policy
        start, end = policy.window_at(now)
        pair_limit, source_limit = policy.failures_per_client_source, policy.failures_per_source
        pair = per_source = 0
        try:
            if client_id is not None and pair_limit:
                pair = self.store.add_to_counter(f"client#{start}#{source}#{client_id}", now=now, expires_at=end)
                # The failure that reaches the limit records the block, so the next request from this
                # source is refused before its credentials are checked. Past the limit a known client
                # is blocked again: a block lost to a race or to the bounded map comes back at once.
                if not blocked and (pair == pair_limit or (pair > pair_limit and client is not None)):
                    self.store.block_source(client_id, source, end, now=now)
            if source_limit:
                per_source = self.store.add_to_counter(f"source#{start}#{source}", now=now, expires_at=end)
        except UnavailableError:
            return error
        if source_limit and per_source >= source_limit:  # the next request from it is refused unchecked
            self._remember_over_limit(source, end)
        if (pair_limit and pair > pair_limit) or (source_limit and per_source > source_limit):
            return too_many_failures(end - now, error.client_id)
        return error


class AuthenticationGuard:
    """One client authentication: refuses a blocked (client, source) as soon as the client record is
    read, before any secret or assertion is checked, and counts the authentication if it fails."""

    def __init__(self, throttle: AuthenticationThrottle, source_ip: str | None, now: int) -> None:
        self._throttle = throttle
        self._source_ip = source_ip
        self._now = now
        self.client_id: str | None = None  # the id the request claimed, once it was looked up
        self.client: Client | None = None
        self.blocked = False  # refused by a block already on the client's record

    @cached_property
    def source(self) -> str:  # only computed when needed: a client without blocks that succeeds never is
        return source_key(self._source_ip)

    def refuse_if_over_limit(self) -> None:
        """Before any credential is checked: a 429 if this process saw the source go over its limit."""
        if self._throttle.sources_over_limit():  # else the source need not even be computed
            self._throttle.refuse_if_over_limit(self.source, self._now, read_store=False)

    def lookup(self, get_client: Callable[[str], Client | None]) -> Callable[[str], Client | None]:
        """``get_client``, checking each client it returns for a block on this request's source."""
        def client_for(client_id: str) -> Client | None:
            client = get_client(client_id)
            self.client_id, self.client = client_id, client
            if client is not None and client.auth_blocks:
                until = client.auth_blocks.get(self.source, 0)
                if until > self._now:
                    self.blocked = True
                    raise too_many_failures(until - self._now, client.client_id)
            return client
        return client_for

    def failed(self, error: OAuthError) -> OAuthError:
        """Count this failed (or blocked) authentication; what to raise (``error`` or a 429)."""
        return self._throttle.failure(error, self.source, self.client_id, self.client, self._now,
                                      blocked=self.blocked)
