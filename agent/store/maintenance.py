"""Reclaiming space now: VACUUM on memagent's and langgraph's tables.

A deleted row is a dead tuple, still on disk, until VACUUM marks its space reusable
(autovacuum does, some time later); only VACUUM FULL, which rewrites a table and locks
it meanwhile, gives the space back to the operating system. For an operator who must
make erased rows unreadable on disk now. Neither reaches the WAL or backups.
"""

from __future__ import annotations

from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow

from agent.store import sql as statements


async def vacuum(
    conn: AsyncConnection[DictRow], *, full: bool = False
) -> dict[str, tuple[int, int]]:
    """VACUUMs each table; its size in bytes before and after, per table.

    ``conn`` must be in autocommit mode (the pool's are): VACUUM cannot run inside a
    transaction.
    """
    statement = statements.VACUUM_FULL_TABLE if full else statements.VACUUM_TABLE
    tables = [
        row["tablename"]
        for row in await (await conn.execute(statements.SELECT_OWN_TABLES)).fetchall()
    ]
    sizes: dict[str, tuple[int, int]] = {}
    for table in tables:
        before = await _bytes(conn, table)
        await conn.execute(sql.SQL(statement).format(table=sql.Identifier(table)))
        sizes[table] = (before, await _bytes(conn, table))
    return sizes


async def _bytes(conn: AsyncConnection[DictRow], table: str) -> int:
    row = await (await conn.execute(statements.SELECT_TABLE_BYTES, (table,))).fetchone()
    return int(row["bytes"]) if row is not None else 0
