"""The audit log: one content-free line per memory operation, kept after a delete.

A line says what was done (the operation), to which thread, when, through which
surface and by whom, with counts and ids in ``detail``; never a quote or a message.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from agent.store import sql


def statement(
    operation: str,
    thread_id: str,
    *,
    surface: str,
    actor: str | None,
    detail: dict[str, Any] | None,
) -> tuple[str, list[tuple[Any, ...]]]:
    """The insert of one line, as a query and its parameter sets (``executemany``).

    A statement, not a call: inside a thread lease the saver sends it with the
    lease's release (``agent.store.writebehind``).
    """
    return sql.INSERT_AUDIT, [(operation, thread_id, surface, actor, Jsonb(detail or {}))]


async def newest(
    conn: AsyncConnection[DictRow], thread_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """The newest lines, for one thread or all."""
    cur = await conn.execute(sql.SELECT_AUDIT, {"thread_id": thread_id, "limit": limit})
    return list(await cur.fetchall())
