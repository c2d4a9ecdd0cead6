"""The benchmark's own PostgreSQL database, and what a thread occupies in it.

Each run creates a fresh database (so earlier runs, bloat or cached plans cannot
colour the numbers) on the server in ``DATABASE_URL``, or on an embedded PostgreSQL
started in a temporary directory when it is unset, and drops it at the end.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")

# Per table: rows, bytes as stored (``pg_column_size`` of the whole row: values after
# TOAST compression, without tuple headers or indexes) and the logical payload (the
# uncompressed serialized values), for one thread.
THREAD_STORAGE_SQL = """
SELECT 'checkpoints' AS tbl, count(*) AS row_count,
       coalesce(sum(pg_column_size(t.*)), 0) AS stored,
       coalesce(sum(octet_length(t.checkpoint::text) + octet_length(t.metadata::text)), 0)
           AS logical
FROM checkpoints t WHERE t.thread_id = %(thread_id)s
UNION ALL
SELECT 'checkpoint_blobs', count(*), coalesce(sum(pg_column_size(t.*)), 0),
       coalesce(sum(octet_length(t.blob)), 0)
FROM checkpoint_blobs t WHERE t.thread_id = %(thread_id)s
UNION ALL
SELECT 'checkpoint_writes', count(*), coalesce(sum(pg_column_size(t.*)), 0),
       coalesce(sum(octet_length(t.blob)), 0)
FROM checkpoint_writes t WHERE t.thread_id = %(thread_id)s
"""


@dataclass(frozen=True, slots=True)
class BenchDatabase:
    """Where the run's data lives.

    Attributes:
        url: The run's fresh database.
        server_label: A password-free description of the server, for the report.
        embedded: Whether the server is the embedded one this run started.
        embedded_dir: The embedded server's data directory (``None`` otherwise).
    """

    url: str
    server_label: str
    embedded: bool
    embedded_dir: Path | None = None


def with_dbname(url: str, dbname: str) -> str:
    """``url`` pointing at another database on the same server."""
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def describe_server(url: str) -> str:
    """Host, port and version of a server, without credentials."""
    info = conninfo_to_dict(url)
    host = str(info.get("host") or "localhost")
    where = "unix socket" if host.startswith("/") else f"{host}:{info.get('port', 5432)}"
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    version = row[0] if row else "?"
    return f"PostgreSQL {version} at {where}"


@contextmanager
def admin_server(database_url: str | None) -> Iterator[tuple[str, bool, Path | None]]:
    """The server to create the run's database on: ``database_url`` or an embedded one.

    Yields:
        The admin URL, whether it is embedded, and the embedded data directory.
    """
    if database_url:
        yield database_url, False, None
        return
    import pgserver  # only the embedded path needs it

    with tempfile.TemporaryDirectory(prefix="memagent-bench-") as tmp:
        data_dir = Path(tmp) / "pgdata"
        server = pgserver.get_server(data_dir, cleanup_mode="delete")
        try:
            yield str(server.get_uri()), True, data_dir
        finally:
            server.cleanup()


@contextmanager
def fresh_database(database_url: str | None) -> Iterator[BenchDatabase]:
    """A new, empty database for this run, dropped (with its connections) afterwards."""
    with admin_server(database_url) as (admin_url, embedded, data_dir):
        name = f"memagent_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = with_dbname(admin_url, name)
            yield BenchDatabase(url, describe_server(url), embedded, data_dir)
        finally:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def thread_storage(url: str, thread_id: str) -> dict[str, dict[str, int]]:
    """Rows, stored bytes and logical bytes per checkpoint table for one thread.

    Uses its own connection so that measuring does not queue behind a saver's pool.
    """
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        cur = await conn.execute(THREAD_STORAGE_SQL, {"thread_id": thread_id})
        rows: list[dict[str, Any]] = await cur.fetchall()
    return {
        row["tbl"]: {
            "rows": int(row["row_count"]),
            "stored": int(row["stored"]),
            "logical": int(row["logical"]),
        }
        for row in rows
    }
