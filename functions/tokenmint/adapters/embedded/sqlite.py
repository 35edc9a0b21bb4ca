"""Clients, resources and key records in one SQLite file (WAL), shared by the server and the CLI."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...oauth.models import MAX_AUTH_BLOCKS, Client, InitialAccessToken, Resource
from ...ports import ConflictError, InitialAccessTokenSpentError, UnavailableError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (client_id TEXT PRIMARY KEY, version INTEGER NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resources (key TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS key_records (
    key_id TEXT PRIMARY KEY, version INTEGER NOT NULL, created_at INTEGER NOT NULL, record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS initial_access_tokens (
    hash TEXT PRIMARY KEY, token_id TEXT UNIQUE NOT NULL, uses INTEGER NOT NULL, record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti TEXT PRIMARY KEY, client_id TEXT NOT NULL, expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS used_assertions (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deleted_clients (
    client_id TEXT PRIMARY KEY, not_before INTEGER NOT NULL, expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS throttle_counters (
    key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS throttle_counters_expiry ON throttle_counters (expires_at);
"""


class SqliteDatabase:
    """One connection per thread; every statement is its own transaction unless ``transaction()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.touch(mode=0o600, exist_ok=True)  # it holds secret hashes: owner only
        with self.connection() as conn:
            conn.executescript(_SCHEMA)

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with _translated_errors():
            return self.connection().execute(sql, params)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any exception: all of it or nothing."""
        conn = self.connection()
        with _translated_errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


@contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise ConflictError(str(exc)) from exc
    except sqlite3.OperationalError as exc:  # "database is locked" after the busy timeout
        raise UnavailableError(str(exc)) from exc


class SqliteStore:
    """ClientStore and ResourceStore on SQLite. No caching: CLI changes apply to the next request."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def get_client(self, client_id: str) -> Client | None:
        row = self._db.execute("SELECT record FROM clients WHERE client_id = ?", (client_id,)).fetchone()
        return Client.from_record(json.loads(row[0])) if row else None

    def create_client(self, client: Client) -> None:
        self._db.execute("INSERT INTO clients (client_id, version, record) VALUES (?, ?, ?)",
                         (client.client_id, client.version, json.dumps(client.to_record())))

    def update_client(self, client: Client) -> None:
        cursor = self._db.execute(
            "UPDATE clients SET version = ?, record = ? WHERE client_id = ? AND version = ?",
            (client.version, json.dumps(client.to_record()), client.client_id, client.version - 1))
        if cursor.rowcount != 1:
            raise ConflictError(f"client {client.client_id} was changed concurrently or does not exist")

    def list_clients(self) -> list[Client]:
        rows = self._db.execute("SELECT record FROM clients ORDER BY client_id").fetchall()
        return [Client.from_record(json.loads(row[0])) for row in rows]

    def delete_client(self, client_id: str, *, version: int, not_before: int, mark_expires_at: int) -> None:
        with self._db.transaction() as conn:
            deleted = conn.execute("DELETE FROM clients WHERE client_id = ? AND version = ?", (client_id, version))
            if deleted.rowcount != 1:
                raise ConflictError(f"client {client_id} was changed concurrently or does not exist")
            conn.execute("INSERT OR REPLACE INTO deleted_clients (client_id, not_before, expires_at) VALUES (?, ?, ?)",
                         (client_id, not_before, mark_expires_at))

    def deleted_client_not_before(self, client_id: str) -> int | None:
        row = self._db.execute("SELECT not_before FROM deleted_clients WHERE client_id = ? AND expires_at > "
                               "CAST(strftime('%s','now') AS INTEGER)", (client_id,)).fetchone()
        return row[0] if row else None

    def record_client_use(self, client_id: str, now: int, resolution: int) -> None:
        self._db.execute(
            "UPDATE clients SET record = json_set(record, '$.last_used_at', ?) WHERE client_id = ? AND "
            "coalesce(json_extract(record, '$.last_used_at'), 0) <= ?", (now, client_id, now - resolution))

    # -- revocation -----------------------------------------------------------------------------
    def revoke_token(self, jti: str, client_id: str, expires_at: int) -> None:
        with self._db.transaction() as conn:  # expired entries go as new ones come (DynamoDB: TTL)
            conn.execute("DELETE FROM revoked_tokens WHERE expires_at <= CAST(strftime('%s','now') AS INTEGER)")
            conn.execute("INSERT OR REPLACE INTO revoked_tokens (jti, client_id, expires_at) VALUES (?, ?, ?)",
                         (jti, client_id, expires_at))

    def is_token_revoked(self, jti: str) -> bool:
        row = self._db.execute("SELECT 1 FROM revoked_tokens WHERE jti = ? AND expires_at > "
                               "CAST(strftime('%s','now') AS INTEGER)", (jti,)).fetchone()
        return row is not None

    # -- single-use jtis: client assertions and DPoP proofs (ports.ReplayCache) ------------------
    def use_once(self, key: str, expires_at: int, *, partition: str | None = None) -> bool:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM used_assertions WHERE expires_at <= CAST(strftime('%s','now') AS INTEGER)")
            inserted = conn.execute("INSERT OR IGNORE INTO used_assertions (key, expires_at) VALUES (?, ?)",
                                    (key, expires_at))
            return inserted.rowcount == 1

    # -- failed-authentication throttling (ports.ThrottleStore) ----------------------------------
    def add_to_counter(self, key: str, *, now: int, expires_at: int) -> int:
        with self._db.transaction() as conn:  # expired counters go as new ones come (DynamoDB: TTL)
            conn.execute("DELETE FROM throttle_counters WHERE expires_at <= ?", (now,))
            conn.execute("INSERT INTO throttle_counters (key, count, expires_at) VALUES (?, 1, ?) "
                         "ON CONFLICT (key) DO UPDATE SET count = count + 1", (key, expires_at))
            return int(conn.execute("SELECT count FROM throttle_counters WHERE key = ?", (key,)).fetchone()[0])

    def read_counter(self, key: str, *, now: int) -> int:
        row = self._db.execute("SELECT count FROM throttle_counters WHERE key = ? AND expires_at > ?",
                               (key, now)).fetchone()
        return int(row[0]) if row else 0

    def block_source(self, client_id: str, source: str, until: int, *, now: int) -> None:
        with self._db.transaction() as conn:  # read and write in one transaction: no block is lost
            row = conn.execute("SELECT record FROM clients WHERE client_id = ?", (client_id,)).fetchone()
            if row is None:
                return
            record = json.loads(row[0])
            blocks = {s: u for s, u in (record.get("auth_blocks") or {}).items() if u > now and s != source}
            if len(blocks) >= MAX_AUTH_BLOCKS:
                blocks = {}
            record["auth_blocks"] = {**blocks, source: until}
            conn.execute("UPDATE clients SET record = ? WHERE client_id = ?", (json.dumps(record), client_id))

    # -- initial access tokens ------------------------------------------------------------------
    def create_initial_access_token(self, token: InitialAccessToken) -> None:
        self._db.execute("INSERT INTO initial_access_tokens (hash, token_id, uses, record) VALUES (?, ?, ?, ?)",
                         (token.hash, token.token_id, token.uses, json.dumps(token.to_record())))

    def put_initial_access_token(self, token: InitialAccessToken) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM initial_access_tokens WHERE token_id = ? OR hash = ?",
                         (token.token_id, token.hash))
            conn.execute("INSERT INTO initial_access_tokens (hash, token_id, uses, record) VALUES (?, ?, ?, ?)",
                         (token.hash, token.token_id, token.uses, json.dumps(token.to_record())))

    @staticmethod
    def _token(row: tuple[int, str]) -> InitialAccessToken:
        return InitialAccessToken.from_record({**json.loads(row[1]), "uses": row[0]})

    def get_initial_access_token(self, token_hash: str) -> InitialAccessToken | None:
        row = self._db.execute("SELECT uses, record FROM initial_access_tokens WHERE hash = ?",
                               (token_hash,)).fetchone()
        return self._token(row) if row else None

    def list_initial_access_tokens(self) -> list[InitialAccessToken]:
        rows = self._db.execute("SELECT uses, record FROM initial_access_tokens ORDER BY token_id").fetchall()
        return [self._token(row) for row in rows]

    def register_client(self, client: Client, token_hash: str, now: int) -> None:
        with self._db.transaction() as conn:
            row = conn.execute("SELECT uses, record FROM initial_access_tokens WHERE hash = ?",
                               (token_hash,)).fetchone()
            if row is None or not self._token(row).usable_at(now):
                raise InitialAccessTokenSpentError("the initial access token is no longer usable")
            conn.execute("UPDATE initial_access_tokens SET uses = uses + 1 WHERE hash = ?", (token_hash,))
            conn.execute("INSERT INTO clients (client_id, version, record) VALUES (?, ?, ?)",
                         (client.client_id, client.version, json.dumps(client.to_record())))

    # -- resources ------------------------------------------------------------------------------
    def get_resource(self, key: str) -> Resource | None:
        row = self._db.execute("SELECT record FROM resources WHERE key = ?", (key,)).fetchone()
        return Resource.from_record(json.loads(row[0])) if row else None

    def list_resources(self) -> list[Resource]:
        rows = self._db.execute("SELECT record FROM resources ORDER BY key").fetchall()
        return [Resource.from_record(json.loads(row[0])) for row in rows]

    def create_resource(self, resource: Resource) -> None:
        self._db.execute("INSERT INTO resources (key, record) VALUES (?, ?)",
                         (resource.key, json.dumps(resource.to_record())))


# -- the audit trail (observability.audit's sink on the embedded backend; AWS: CloudWatch Logs) -----
_AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, action TEXT NOT NULL, client_id TEXT,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE INDEX IF NOT EXISTS audit_client ON audit (client_id, at);
"""
AUDIT_RETENTION = 30 * 86_400  # seconds, as the stack's default log retention (LogRetentionInDays)


class SqliteAuditLog:
    """Audit events, one row each, written by the server's and the CLI's processes alike. Safe from
    any thread (a connection per thread; SQLite serialises the writers); older than ``retention``
    seconds they are pruned, at most once an hour per process."""

    def __init__(self, db: SqliteDatabase, retention: int = AUDIT_RETENTION) -> None:
        self._db, self.retention = db, retention
        self._next_prune = 0.0
        with _translated_errors():
            db.connection().executescript(_AUDIT_SCHEMA)

    def append(self, event: dict[str, Any]) -> None:
        """``event`` as ``observability.audit`` records it: ``at`` (epoch seconds), ``action``, ..."""
        self._db.execute("INSERT INTO audit (at, action, client_id, event) VALUES (?, ?, ?, ?)",
                         (event["at"], event["action"], event.get("client_id"),
                          json.dumps(event, separators=(",", ":"), default=str)))
        if event["at"] >= self._next_prune:
            self._next_prune = event["at"] + 3600
            self._db.execute("DELETE FROM audit WHERE at < ?", (event["at"] - self.retention,))

    def query(self, *, client_id: str | None = None, action_prefix: str | None = None,
              since: float | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` events that match, oldest first."""
        clauses: list[str] = []
        params: list[str | int | float] = []
        if client_id is not None:
            clauses.append("client_id = ?")
            params.append(client_id)
        if action_prefix:
            clauses.append("substr(action, 1, ?) = ?")  # a literal, case-sensitive prefix
            params += [len(action_prefix), action_prefix]
        if since is not None:
            clauses.append("at >= ?")
            params.append(since)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(f"SELECT event FROM audit {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
                                (*params, max(limit, 0))).fetchall()
        return [json.loads(row[0]) for row in reversed(rows)]
