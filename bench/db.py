"""The benchmark's PostgreSQL: one fresh database per contender, and what a thread occupies.

Every contender gets a database of its own, created for the run and dropped at its
end, so that earlier runs, bloat or cached plans cannot colour the numbers and one
contender's migrations (memagent stores langgraph's blobs with lz4, say) never change
another's tables. The databases live on the server in ``DATABASE_URL``, or on an
embedded PostgreSQL started in a temporary directory when it is unset.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

LANGGRAPH_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
"""The tables every PostgreSQL saver of langgraph writes a thread into."""

OWN_TABLE_PREFIX = "memagent_"
"""memagent's own tables; those with a ``thread_id`` column hold part of a thread."""

# Every table of the database's public schema that has a thread_id column: langgraph's
# three and, whatever memagent's storage adds later, its own ``memagent_*`` ones.
THREAD_TABLES_SQL = """
SELECT table_name FROM information_schema.columns
WHERE table_schema = 'public' AND column_name = 'thread_id'
  AND (table_name = ANY(%(langgraph)s) OR table_name LIKE %(own)s)
ORDER BY table_name
"""

# Per table: the thread's rows and their bytes as stored (``pg_column_size`` of the
# whole row: values after TOAST compression, without tuple headers or indexes). The
# table name comes from the catalog query above, quoted as an identifier.
TABLE_STORAGE_SQL = (
    "SELECT count(*) AS row_count, coalesce(sum(pg_column_size(t.*)), 0) AS stored "
    "FROM {table} t WHERE t.thread_id = %(thread_id)s"
)


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


@dataclass
class BenchServer:
    """The server the run's databases are created on.

    Attributes:
        admin_url: A database of the server to issue ``CREATE/DROP DATABASE`` from.
        label: A password-free description of the server, for the report.
        embedded: Whether the server is the embedded one this run started.
        created: Every database this run created (all dropped by the end of the run).
    """

    admin_url: str
    label: str
    embedded: bool
    created: list[str] = field(default_factory=list)

    @asynccontextmanager
    async def database(self, purpose: str) -> AsyncIterator[str]:
        """A new, empty database; dropped, with its connections, on exit.

        Args:
            purpose: Part of the database's name, so a leftover one says whose it was.
        """
        name = f"memagent_bench_{purpose}_{uuid.uuid4().hex[:8]}"
        async with await psycopg.AsyncConnection.connect(self.admin_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        try:
            yield with_dbname(self.admin_url, name)
        finally:
            async with await psycopg.AsyncConnection.connect(
                self.admin_url, autocommit=True
            ) as conn:
                await conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


@contextmanager
def bench_server(database_url: str | None) -> Iterator[BenchServer]:
    """The server in ``database_url``, or an embedded one started (and removed) here."""
    if database_url:
        yield BenchServer(database_url, describe_server(database_url), embedded=False)
        return
    import pgserver  # only the embedded path needs it

    with tempfile.TemporaryDirectory(prefix="memagent-bench-") as tmp:
        server = pgserver.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            url = str(server.get_uri())
            yield BenchServer(url, describe_server(url), embedded=True)
        finally:
            server.cleanup()


async def thread_storage(url: str, thread_id: str) -> dict[str, dict[str, int]]:
    """Rows and stored bytes of one thread in every table that holds part of a thread.

    The tables are found in the catalog each time (see ``THREAD_TABLES_SQL``), so new
    storage tables of memagent are counted without changing the bench. Uses its own
    connection so that measuring does not queue behind a saver's pool.
    """
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        cur = await conn.execute(
            THREAD_TABLES_SQL,
            {
                "langgraph": list(LANGGRAPH_TABLES),
                "own": OWN_TABLE_PREFIX.replace("_", r"\_") + "%",
            },
        )
        tables = [row["table_name"] for row in await cur.fetchall()]
        result: dict[str, dict[str, int]] = {}
        for table in tables:
            query = sql.SQL(TABLE_STORAGE_SQL).format(table=sql.Identifier(table))
            cur = await conn.execute(query, {"thread_id": thread_id})
            row: dict[str, Any] | None = await cur.fetchone()
            assert row is not None  # an aggregate always returns a row
            result[table] = {"rows": int(row["row_count"]), "stored": int(row["stored"])}
    return result
