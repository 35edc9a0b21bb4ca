"""A per-process cache of the resource registry, so a token costs no resource read (DESIGN.md budget)."""

from __future__ import annotations

import threading

from ..oauth.models import Resource
from ..ports import Clock, ResourceStore, UnavailableError


class CachedResourceStore:
    """Serves reads from a snapshot of the whole registry, reloaded every ``ttl`` seconds.

    A miss reloads at once (at most every ``min_reload_interval`` seconds, so that requests for
    made-up resources cannot turn into one read each): a new resource is usable immediately.
    When the store is unavailable, the last snapshot keeps serving for up to ``max_stale``
    seconds (retrying every ``min_reload_interval``): a throttled registry read must not turn
    every token request into a 503.
    """

    def __init__(self, inner: ResourceStore, clock: Clock, ttl: float = 30.0,
                 min_reload_interval: float = 1.0, max_stale: float = 300.0) -> None:
        self._inner, self._clock = inner, clock
        self._ttl, self._min_reload_interval, self._max_stale = ttl, min_reload_interval, max_stale
        self._fresh_at = float("-inf")  # when the snapshot last matched the store
        self._by_key: dict[str, Resource] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def _reload(self) -> None:
        with self._lock:
            now = self._clock()
            try:
                resources = self._inner.list_resources()
            except UnavailableError:
                if now - self._fresh_at > self._max_stale:
                    raise
                self._loaded_at = now - self._ttl + self._min_reload_interval  # retry soon
                return
            self._by_key = {r.key: r for r in resources}
            self._loaded_at = self._fresh_at = now

    def _fresh(self) -> dict[str, Resource]:
        if self._clock() - self._loaded_at >= self._ttl:
            self._reload()
        return self._by_key

    def get_resource(self, key: str) -> Resource | None:
        resource = self._fresh().get(key)
        if resource is None and self._clock() - self._loaded_at >= self._min_reload_interval:
            self._reload()
            resource = self._by_key.get(key)
        return resource

    def list_resources(self) -> list[Resource]:
        return list(self._fresh().values())

    def create_resource(self, resource: Resource) -> None:
        self._inner.create_resource(resource)
        self._loaded_at = float("-inf")
