"""The embedded backend: SQLite (stdlib, WAL) and local key files, for one process on a laptop."""
