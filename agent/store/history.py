"""Cheap reads of a thread's history: timeline, tree links, turn inputs, heads, threads.

langgraph's ``alist`` loads every listed checkpoint's whole state; these read ids,
parent links, metadata and, for a turn, its user-message write only, so their cost
follows what is shown rather than the length of the thread. Which checkpoints are
timeline points is the registry's (``agent.memory.events``) and the SQL's shared
``TIMELINE_POINT`` predicate.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg import AsyncConnection
from psycopg.rows import DictRow

from agent.memory.entries import TimelineEntry, entry_from
from agent.memory.events import MEMORY_METADATA_KEYS
from agent.store import sql

Connection = AsyncConnection[DictRow]


async def timeline(
    conn: Connection, serde: SerializerProtocol, thread_id: str, limit: int
) -> list[TimelineEntry]:
    """The head's lineage as timeline entries, newest first, without message blobs."""
    params = {"thread_id": thread_id, "limit": limit, "memory_keys": list(MEMORY_METADATA_KEYS)}
    rows = await (await conn.execute(sql.SELECT_TIMELINE, params)).fetchall()
    entries = []
    for row in rows:
        turn_input = (
            serde.loads_typed((row["input_type"], row["input_blob"]))
            if row["input_blob"] is not None
            else None
        )
        entry = entry_from(
            row["checkpoint_id"],
            row["parent_checkpoint_id"],
            row["ts"],
            row["metadata"],
            turn_input,
        )
        if entry is not None:
            entries.append(entry)
    return entries


async def head_id(conn: Connection, thread_id: str) -> str | None:
    """The id of the thread's head (newest root checkpoint); one index entry, no state."""
    row = await (await conn.execute(sql.SELECT_HEAD_ID, (thread_id,))).fetchone()
    return None if row is None else str(row["checkpoint_id"])


async def tree_links(conn: Connection, thread_id: str) -> list[dict[str, Any]]:
    """Every root checkpoint's id and parent, oldest first; time and metadata on points."""
    params = {"thread_id": thread_id, "memory_keys": list(MEMORY_METADATA_KEYS)}
    return list(await (await conn.execute(sql.SELECT_TREE_LINKS, params)).fetchall())


async def turn_inputs(
    conn: Connection, serde: SerializerProtocol, thread_id: str, checkpoint_ids: list[str]
) -> dict[str, Any]:
    """The user-message write of each given turn point, decoded, by checkpoint id."""
    if not checkpoint_ids:
        return {}
    cur = await conn.execute(sql.SELECT_TURN_INPUTS, (thread_id, checkpoint_ids))
    rows = await cur.fetchall()
    return await asyncio.to_thread(
        lambda: {
            row["checkpoint_id"]: serde.loads_typed((row["type"], row["blob"])) for row in rows
        }
    )


async def threads(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """Threads with their checkpoint count and last activity, most recent first."""
    return list(await (await conn.execute(sql.SELECT_THREADS, (limit,))).fetchall())
