"""A per-process cache of the resource registry, so a token costs no resource read (DESIGN.md budget)."""

from __future__ import annotations

import threading

from ..oauth.models import Resource
from ..ports import Clock, ResourceStore


class CachedResourceStore:
    """Serves reads from a snapshot of the whole registry, reloaded every ``ttl`` seconds.

    A miss reloads at once (at most every ``min_reload_interval`` seconds, so that requests for
    made-up resources cannot turn into one read each): a new resource is usable immediately.
    """

    def __init__(self, inner: ResourceStore, clock: Clock, ttl: float = 30.0,
                 min_reload_interval: float = 1.0) -> None:
        self._inner, self._clock = inner, clock
        self._ttl, self._min_reload_interval = ttl, min_reload_interval
        self._by_key: dict[str, Resource] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def _reload(self) -> None:
        with self._lock:
            resources = self._inner.list_resources()
            self._by_key = {r.key: r for r in resources}
            self._loaded_at = self._clock()

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
