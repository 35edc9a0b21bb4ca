"""Signing-key lifecycle: rotation without a single failed verification, and emergency rollover.

A key moves through these states (records in the key registry, material in KMS or a local file):

    pending → next → active → retiring → retired
              (published)  (signs)  (published)  (gone from the JWKS; KMS key disabled, then deleted)

- ``next`` is published for PREPUBLISH seconds before it signs: longer than verifiers may cache the
  JWKS (discovery's max-age), so every verifier knows the key before it meets a token signed by it.
- ``retiring`` stays published until every token it may have signed has expired, plus skew.
- Every step is idempotent and safe to repeat after a failure half-way: key material is created
  under a name derived from the key id (a KMS alias, a file name), so a retried creation finds the
  key it already made; state changes are conditional writes, and the two that must go together
  (promote next, retire active) are one transaction.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .oauth.jwk import CLOCK_SKEW
from .oauth.models import MAX_TOKEN_LIFETIME
from .ports import ConflictError

PENDING, NEXT, ACTIVE, RETIRING, RETIRED = "pending", "next", "active", "retiring", "retired"
PUBLISHED = (NEXT, ACTIVE, RETIRING)

JWKS_MAX_AGE = 300  # discovery's Cache-Control max-age for the JWKS
KEY_CACHE_SECONDS = 60  # how long a function signs with the active key it read
PREPUBLISH = 3 * JWKS_MAX_AGE  # a next key is published this long before it signs
# A retiring key is published until the last token it may have signed has expired: a function may
# still sign with it for KEY_CACHE_SECONDS after promotion, and tokens live MAX_TOKEN_LIFETIME.
RETIRE_AFTER = KEY_CACHE_SECONDS + MAX_TOKEN_LIFETIME + CLOCK_SKEW
DEFAULT_ROTATION_INTERVAL = 30 * 86_400
DELETION_WINDOW_DAYS = 30


@dataclass(frozen=True)
class KeyRecord:
    key_id: str  # ours, known before the key exists; the kid is its public key's thumbprint
    alg: str
    state: str
    created_at: int
    kid: str | None = None
    public_jwk: dict[str, Any] | None = None
    key_ref: str | None = None  # the KMS key ARN or local file of its private half
    published_at: int | None = None  # when it entered the JWKS: pre-publication counts from here
    activated_at: int | None = None
    retiring_since: int | None = None
    compromised: bool = False
    deletion_scheduled: bool = False
    version: int = 1

    def to_record(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "alg": self.alg, "state": self.state, "created_at": self.created_at,
                "kid": self.kid, "public_jwk": self.public_jwk, "key_ref": self.key_ref,
                "published_at": self.published_at, "activated_at": self.activated_at,
                "retiring_since": self.retiring_since, "compromised": self.compromised,
                "deletion_scheduled": self.deletion_scheduled, "version": self.version}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> KeyRecord:
        from .oauth.models import _plain

        def optional_int(name: str) -> int | None:
            return None if record.get(name) is None else int(record[name])

        return cls(key_id=str(record["key_id"]), alg=str(record["alg"]), state=str(record["state"]),
                   created_at=int(record["created_at"]), kid=record.get("kid"),
                   public_jwk=_plain(record["public_jwk"]) if record.get("public_jwk") else None,
                   key_ref=record.get("key_ref"), published_at=optional_int("published_at"),
                   activated_at=optional_int("activated_at"),
                   retiring_since=optional_int("retiring_since"), compromised=bool(record.get("compromised")),
                   deletion_scheduled=bool(record.get("deletion_scheduled")), version=int(record.get("version", 1)))

    def changed(self, **changes: Any) -> KeyRecord:
        return replace(self, version=self.version + 1, **changes)


class KeyRegistry(Protocol):
    """Where key records live (the table, SQLite). Writes are conditional on the version read."""

    def list_keys(self) -> list[KeyRecord]: ...

    def create_key_record(self, record: KeyRecord) -> None: ...

    def update_key_records(self, records: list[KeyRecord]) -> None:
        """Write all of ``records`` (each at ``version - 1`` in the store) or none: ConflictError."""


class KeyMaterial(Protocol):
    """Where private keys live (KMS, local files). Every operation is idempotent."""

    def create(self, key_id: str, alg: str, *, retry: bool = False) -> tuple[str, dict[str, Any]]:
        """The key_ref and public JWK of ``key_id``'s key, creating it unless it already exists.
        ``retry``: an earlier attempt may have stopped half-way; find what it made, never make a second."""

    def signer(self, record: KeyRecord) -> Any:
        """A ports.SigningKey for an active record."""

    def disable(self, key_ref: str) -> None: ...

    def schedule_deletion(self, key_ref: str, days: int) -> None: ...

    def public_jwk(self, key_ref: str, alg: str) -> dict[str, Any]:
        """The public JWK of an existing key (to adopt the deployed bootstrap key)."""


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def successor_id(active: KeyRecord) -> str:
    """The id of the key that follows ``active``: the same in two runs that overlap, so the second
    one's create conflicts instead of making a second next key."""
    import hashlib

    return "key_" + hashlib.sha256(f"next-of:{active.key_id}".encode()).hexdigest()[:16]


def _first(records: list[KeyRecord] | None) -> KeyRecord | None:
    """The first of ``records``, or None when there is none (a state's keys from ``_by_state``)."""
    return records[0] if records else None


@dataclass
class KeyRing:
    """The lifecycle operations; the scheduled rotation function and ``tokenmint keys`` call them."""

    registry: KeyRegistry
    material: KeyMaterial
    alg: str
    clock: Any = time.time
    rotation_interval: int = DEFAULT_ROTATION_INTERVAL
    prepublish: int = PREPUBLISH
    retire_after: int = RETIRE_AFTER
    deletion_window_days: int = DELETION_WINDOW_DAYS
    # The key the stack was deployed with (template.yaml SigningKey): adopted as the first active key.
    bootstrap_key_ref: str | None = None

    def _now(self) -> int:
        return int(self.clock())

    def _by_state(self) -> dict[str, list[KeyRecord]]:
        grouped: dict[str, list[KeyRecord]] = {}
        for record in self.registry.list_keys():
            grouped.setdefault(record.state, []).append(record)
        return grouped

    def _materialise(self, record: KeyRecord, state: str, *, retry: bool = False, **changes: Any) -> KeyRecord:
        """pending → ``state``: create (or find) the key material, record its public half."""
        key_ref, jwk = self.material.create(record.key_id, record.alg, retry=retry)
        ready = record.changed(state=state, key_ref=key_ref, public_jwk=jwk, kid=jwk["kid"],
                               published_at=self._now(), **changes)
        self.registry.update_key_records([ready])
        return ready

    def _start(self, state: str, key_id: str | None = None) -> KeyRecord:
        pending = KeyRecord(key_id=key_id or new_key_id(), alg=self.alg, state=PENDING, created_at=self._now())
        self.registry.create_key_record(pending)  # the intent first: a crash leaves a pending record
        changes: dict[str, Any] = {"activated_at": self._now()} if state == ACTIVE else {}
        return self._materialise(pending, state, **changes)

    def _first_key(self, now: int) -> tuple[KeyRecord | None, list[str]]:
        """With no key at all: adopt the deployed key, or create one. Its id is fixed, so two runs
        that both see an empty registry cannot both succeed (the second create conflicts)."""
        if self.bootstrap_key_ref:
            jwk = self.material.public_jwk(self.bootstrap_key_ref, self.alg)
            record = KeyRecord(key_id="key_deployed", alg=self.alg, state=ACTIVE, created_at=now, kid=jwk["kid"],
                               public_jwk=jwk, key_ref=self.bootstrap_key_ref, published_at=now, activated_at=now)
            try:
                self.registry.create_key_record(record)
            except ConflictError:
                return None, ["another run is recording the first key"]
            return record, [f"adopted the deployed key {record.kid} (active)"]
        try:
            created = self._start(ACTIVE, key_id="key_first")
        except ConflictError:
            return None, ["another run is creating the first key"]
        return created, [f"created {created.kid} (active: there was no signing key)"]

    def rotate(self, *, force: bool = False) -> list[str]:
        """One step of the scheduled rotation; returns what it did. Safe to run any number of times."""
        done: list[str] = []
        now = self._now()
        keys = self._by_state()
        for pending in keys.get(PENDING, []):  # a previous run stopped between intent and material
            has_active = bool(keys.get(ACTIVE))
            ready = self._materialise(pending, NEXT if has_active else ACTIVE, retry=True,
                                      **({} if has_active else {"activated_at": now}))
            done.append(f"created {ready.kid} ({ready.state})")
            keys = self._by_state()
        active = _first(keys.get(ACTIVE))
        if active is None:
            first, said = self._first_key(now) if not keys else (None, [])
            if first is None or first.key_ref != self.bootstrap_key_ref:
                if first is None and keys:  # keys exist but none is active (every one retired)
                    created = self._start(ACTIVE)
                    said = [f"created {created.kid} (active: there was no signing key)"]
                return done + said
            active = first
            done += said
        upcoming = _first(keys.get(NEXT))
        due = force or (active.activated_at or active.created_at) + self.rotation_interval <= now
        if upcoming is None and due:
            try:
                upcoming = self._start(NEXT, key_id=successor_id(active))
            except ConflictError:
                return [*done, "another run is creating the next key"]
            done.append(f"created {upcoming.kid} (next: published, not signing yet)")
        if upcoming is not None and (upcoming.published_at or now) + self.prepublish <= now:
            self.registry.update_key_records([
                upcoming.changed(state=ACTIVE, activated_at=now),
                active.changed(state=RETIRING, retiring_since=now)])
            done.append(f"promoted {upcoming.kid}; {active.kid} is retiring")
        done += self._retire(now)
        return done

    def next_activation(self) -> tuple[KeyRecord, int] | None:
        """The key published to sign next, and when a rotation run may first make it active
        (``prepublish`` after it was published, so every cached JWKS holds it by then)."""
        upcoming = _first(self._by_state().get(NEXT))
        if upcoming is None:
            return None
        return upcoming, (upcoming.published_at or upcoming.created_at) + self.prepublish

    def _retire(self, now: int) -> list[str]:
        done = []
        for record in self._by_state().get(RETIRING, []):
            if (record.retiring_since or now) + self.retire_after <= now:
                self.registry.update_key_records([record.changed(state=RETIRED)])
                done.append(f"retired {record.kid}")
        for record in self._by_state().get(RETIRED, []):
            if not record.deletion_scheduled and record.key_ref:
                self.material.disable(record.key_ref)
                self.material.schedule_deletion(record.key_ref, self.deletion_window_days)
                self.registry.update_key_records([record.changed(deletion_scheduled=True)])
                done.append(f"scheduled deletion of {record.kid}")
        return done

    def rollover(self, *, compromised: bool = False) -> KeyRecord:
        """A new key signs at once. The old one keeps being published until its tokens expire, or,
        if ``compromised``, leaves the JWKS now, so every token it signed fails verification."""
        now = self._now()
        keys = self._by_state()
        if not keys and self.bootstrap_key_ref:  # the deployed key signs now: it is the "old" one
            self._first_key(now)
            keys = self._by_state()
        old = _first(keys.get(ACTIVE))
        pending = KeyRecord(key_id=new_key_id(), alg=self.alg, state=PENDING, created_at=now)
        self.registry.create_key_record(pending)
        key_ref, jwk = self.material.create(pending.key_id, pending.alg)
        new = pending.changed(state=ACTIVE, key_ref=key_ref, public_jwk=jwk, kid=jwk["kid"], activated_at=now)
        changes = [new]
        if old is not None:
            changes.append(old.changed(state=RETIRED, compromised=True) if compromised
                           else old.changed(state=RETIRING, retiring_since=now))
        # A next key made from uncompromised material may stay; after a compromise, start afresh.
        if compromised:
            changes += [k.changed(state=RETIRED) for k in keys.get(NEXT, [])]
        self.registry.update_key_records(changes)
        if compromised and old is not None and old.key_ref:
            self.material.disable(old.key_ref)  # at once; deletion is scheduled by the next rotation
        return new

    def ensure_alg(self) -> KeyRecord:
        """An active key of this ring's algorithm (first start, or the configured algorithm changed)."""
        active = _first(self._by_state().get(ACTIVE))
        if active is not None and active.alg == self.alg:
            return active
        if active is None:
            self.rotate()
            return self._by_state()[ACTIVE][0]
        return self.rollover()


@dataclass
class ManagedKeyStore:
    """The ports.KeyStore the functions use: the active key and the published JWKS, read from the
    registry at most every ``cache_seconds`` (so a token costs no extra read), and never from KMS."""

    registry: KeyRegistry
    material: KeyMaterial
    cache_seconds: float = KEY_CACHE_SECONDS
    clock: Any = time.monotonic
    bootstrap: Any = None  # a SigningKey to use while the registry is empty (before the first rotation)
    _records: list[KeyRecord] = field(default_factory=list, repr=False)
    _read_at: float = field(default=float("-inf"), repr=False)
    _signers: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _current(self) -> list[KeyRecord]:
        if self.clock() - self._read_at >= self.cache_seconds:
            with self._lock:
                self._records = self.registry.list_keys()
                self._read_at = self.clock()
        return self._records

    def signing_key(self) -> Any:
        active = next((r for r in self._current() if r.state == ACTIVE), None)
        if active is None:
            if self.bootstrap is None:
                raise RuntimeError("no active signing key: run a key rotation first")
            return self.bootstrap
        signer = self._signers.get(active.key_id)
        if signer is None:
            signer = self._signers[active.key_id] = self.material.signer(active)
        return signer

    def public_jwks(self) -> list[dict[str, Any]]:
        published = [r.public_jwk for r in self._current()
                     if r.state in PUBLISHED and r.public_jwk and not r.compromised]
        if not published and self.bootstrap is not None:
            return [self.bootstrap.jwk]
        return published

    def refresh(self) -> None:
        self._read_at = float("-inf")
