"""The embedded backend's audit table (SQLite): what the audit trail's sink stores and what
`tokenmint audit` reads back, from many threads at once, pruned after its retention."""

import threading
import time

import pytest

from tokenmint import observability
from tokenmint.adapters.embedded.sqlite import AUDIT_RETENTION, SqliteAuditLog, SqliteDatabase


@pytest.fixture
def log(tmp_path):
    return SqliteAuditLog(SqliteDatabase(tmp_path / "tokenmint.db"))


def event(action: str, at: float, client_id: str | None = None, **fields) -> dict:
    return {"at": at, "action": action, "outcome": "success", "client_id": client_id, **fields}


def test_given_events_when_queried_then_filters_combine_and_the_newest_come_oldest_first(log):
    now = time.time()
    for i, (action, client) in enumerate([("token.issued", "tmc_a"), ("token.denied", None), ("client.created", "tmc_a"),
                                          ("token.issued", "tmc_b"), ("token_x.odd", "tmc_a"), ("token.issued", "tmc_a")]):
        log.append(event(action, now - 600 + i * 100, client))

    assert [e["action"] for e in log.query()] == ["token.issued", "token.denied", "client.created", "token.issued",
                                                  "token_x.odd", "token.issued"]
    assert [(e["action"], e["at"]) for e in log.query(client_id="tmc_a", action_prefix="token.")] == [
        ("token.issued", now - 600), ("token.issued", now - 100)]
    # a literal prefix: "_" and "%" are no wildcards, and case counts
    assert [e["action"] for e in log.query(action_prefix="token_")] == ["token_x.odd"]
    assert log.query(action_prefix="TOKEN.") == [] and log.query(action_prefix="%") == []
    assert [e["client_id"] for e in log.query(since=now - 250)] == ["tmc_a", "tmc_a"]
    assert [e["at"] for e in log.query(limit=2)] == [now - 200, now - 100]


def test_given_the_audit_sink_installed_then_an_audit_event_is_stored_whole(log):
    observability.install_audit_sink(log.append)
    try:
        observability.audit("client.disabled", "success", actor="cli", client_id="tmc_a", note=None)
    finally:
        observability.remove_audit_sink(log.append)
    (stored,) = log.query()
    assert stored.pop("at") == pytest.approx(time.time(), abs=5)
    assert stored == {"action": "client.disabled", "outcome": "success", "actor": "cli", "client_id": "tmc_a"}


def test_given_many_threads_appending_at_once_then_every_event_is_stored(log):
    errors = []

    def worker(n: int) -> None:
        try:
            for i in range(40):
                log.append(event("token.issued", time.time(), f"tmc_{n}", jti=f"{n}-{i}"))
        except Exception as exc:  # noqa: BLE001 - the test reports any
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    stored = log.query(limit=1000)
    assert len(stored) == 320 and len({e["jti"] for e in stored}) == 320


def test_given_events_older_than_the_retention_then_they_are_pruned(log):
    now = time.time()
    log.append(event("token.issued", now - AUDIT_RETENTION - 86_400, "tmc_old"))
    log.append(event("token.issued", now, "tmc_new"))
    assert [e["client_id"] for e in log.query()] == ["tmc_new"]
