"""Cheap reads of a thread's history: timeline, tree links, turn inputs, heads, threads.

What retention cut shows in the timeline and the tree as tombstones, read from
``memagent_retained`` (``agent.store.retention``).

langgraph's ``alist`` loads every listed checkpoint's whole state; these read ids,
parent links, metadata and, for a turn, its user-message write only, so their cost
follows what is shown rather than the length of the thread. Which checkpoints are
timeline points is the registry's (``agent.memory.events``) and the SQL's shared
``TIMELINE_POINT`` predicate.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg import AsyncConnection
from psycopg.rows import DictRow

from agent.memory.entries import TOMBSTONE_KEY, TimelineEntry, entry_from
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
    if len(entries) < limit:
        entries += await tombstones_below(conn, thread_id, entries, limit - len(entries))
    return entries


async def tombstones_below(
    conn: Connection, thread_id: str, entries: list[TimelineEntry], limit: int
) -> list[TimelineEntry]:
    """The memory changes retention cut from the lineage below ``entries``, newest first.

    Only asked for when the walk ran out before ``limit``: the lineage ended, at the
    thread's first checkpoint or at retention's cut. A thread never retained ends at
    once, so this costs one index probe there.
    """
    start = entries[-1].checkpoint_id if entries else await head_id(conn, thread_id)
    if start is None:
        return []
    params = {"thread_id": thread_id, "start": start, "limit": limit}
    rows = await (await conn.execute(sql.SELECT_TOMBSTONES_BELOW, params)).fetchall()
    found = (
        entry_from(
            row["checkpoint_id"],
            row["parent_checkpoint_id"],
            row["ts"],
            {TOMBSTONE_KEY: row["tombstone"]},
            None,
        )
        for row in rows
    )
    return [entry for entry in found if entry is not None]


async def head_id(conn: Connection, thread_id: str) -> str | None:
    """The id of the thread's head (newest root checkpoint); one index entry, no state."""
    row = await (await conn.execute(sql.SELECT_HEAD_ID, (thread_id,))).fetchone()
    return None if row is None else str(row["checkpoint_id"])


async def tree_links(conn: Connection, thread_id: str) -> list[dict[str, Any]]:
    """Every root checkpoint's id and parent, oldest first; time and metadata on points."""
    params = {
        "thread_id": thread_id,
        "memory_keys": list(MEMORY_METADATA_KEYS),
        "tombstone_key": TOMBSTONE_KEY,
    }
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


async def retained_at(conn: Connection, thread_id: str, checkpoint_id: str) -> datetime | None:
    """When retention removed this root checkpoint of the thread; ``None`` if it did not."""
    cur = await conn.execute(sql.SELECT_RETAINED_AT, (thread_id, checkpoint_id))
    row = await cur.fetchone()
    return None if row is None else row["retained_at"]


async def thread_ids(conn: Connection) -> list[str]:
    """Every thread with a saved checkpoint."""
    return [
        row["thread_id"] for row in await (await conn.execute(sql.SELECT_THREAD_IDS)).fetchall()
    ]
