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


async def record(
    conn: AsyncConnection[DictRow],
    operation: str,
    thread_id: str,
    *,
    surface: str,
    actor: str | None,
    detail: dict[str, Any] | None,
) -> None:
    """Appends one line."""
    await conn.execute(
        sql.INSERT_AUDIT, (operation, thread_id, surface, actor, Jsonb(detail or {}))
    )


async def newest(
    conn: AsyncConnection[DictRow], thread_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """The newest lines, for one thread or all."""
    cur = await conn.execute(sql.SELECT_AUDIT, {"thread_id": thread_id, "limit": limit})
    return list(await cur.fetchall())
