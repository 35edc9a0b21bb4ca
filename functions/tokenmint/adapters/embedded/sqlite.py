"""Clients, resources and key records in one SQLite file (WAL), shared by the server and the CLI."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from ...oauth.models import Client, Resource
from ...ports import ConflictError, UnavailableError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (client_id TEXT PRIMARY KEY, version INTEGER NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resources (key TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY, alg TEXT NOT NULL, state TEXT NOT NULL, created_at INTEGER NOT NULL,
    public_jwk TEXT NOT NULL
);
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
        try:
            return self.connection().execute(sql, params)
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

    def get_resource(self, key: str) -> Resource | None:
        row = self._db.execute("SELECT record FROM resources WHERE key = ?", (key,)).fetchone()
        return Resource.from_record(json.loads(row[0])) if row else None

    def list_resources(self) -> list[Resource]:
        rows = self._db.execute("SELECT record FROM resources ORDER BY key").fetchall()
        return [Resource.from_record(json.loads(row[0])) for row in rows]

    def create_resource(self, resource: Resource) -> None:
        self._db.execute("INSERT INTO resources (key, record) VALUES (?, ?)",
                         (resource.key, json.dumps(resource.to_record())))
