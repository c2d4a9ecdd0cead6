"""Retention: a thread keeps its newest turns, and what it lost is recorded, not forgotten.

The cut is always a rewind point of the head's lineage (a turn's ``input`` checkpoint)
or the head itself, so what is kept starts with a point a user can return to; every
root and subgraph checkpoint older than it goes, on every branch, with their pending
writes, the blobs and message rows no kept checkpoint refers to any more. Kept rows are
not changed at all (parent links included), so each kept checkpoint loads exactly as
before. Each removed root checkpoint leaves a row in ``memagent_retained``: its id (so
asking for it is a clear "removed by retention"), its parent link (so the timeline can
walk on past the cut) and, for a memory change, its tombstone
(``agent.memory.entries.tombstone``). See ``agent.store.sql`` for why this is SQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from langgraph.checkpoint.postgres.base import PRUNE_DELTA_THREADS_SQL
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from agent.errors import RetentionRefusedError
from agent.memory.changes import RetainedThread
from agent.memory.entries import tombstone
from agent.memory.events import MEMORY_METADATA_KEYS
from agent.store import sql
from agent.store.erasure import delete_unreferenced_messages

Connection = AsyncConnection[DictRow]


NOTHING = dict.fromkeys(  # the rows per table of a retention that keeps everything
    ("checkpoint_writes", "checkpoints", "checkpoint_blobs", "memagent_messages"), 0
)


async def choose_cut(
    conn: Connection,
    thread_id: str,
    *,
    keep_turns: int | None,
    older_than: timedelta | None,
    now: datetime,
) -> str | None:
    """Where the policy cuts the thread: the oldest checkpoint it keeps, or ``None``.

    ``keep_turns``: the rewind point of the ``keep_turns``-th newest turn on the head's
    branch (0: the head only); a thread with no more turns than that keeps everything.
    ``older_than``: the rewind point of the oldest turn on that branch newer than
    ``now - older_than``; the head when none is.

    Raises:
        RetentionRefusedError: The thread uses a ``DeltaChannel`` (found by the
            library's own test, which its ``aprune`` refuses such threads with).
    """
    delta = await (
        await conn.execute(PRUNE_DELTA_THREADS_SQL, ([thread_id], [thread_id]))
    ).fetchall()
    if delta:
        raise RetentionRefusedError(
            f"Thread {thread_id!r} uses a DeltaChannel, whose checkpoints are rebuilt from "
            "older ones, so no older part can be cut; nothing was changed."
        )
    points = await (
        await conn.execute(sql.SELECT_RETENTION_POINTS, {"thread_id": thread_id})
    ).fetchall()
    if not points:
        return None
    head = str(points[0]["checkpoint_id"])
    turns = [row for row in points if row["is_turn"]]
    if keep_turns is not None:
        if keep_turns == 0:
            return head
        return str(turns[keep_turns - 1]["checkpoint_id"]) if len(turns) >= keep_turns else None
    assert older_than is not None
    oldest_kept = now - older_than
    recent = [
        row for row in turns if row["ts"] and datetime.fromisoformat(row["ts"]) >= oldest_kept
    ]
    return str(recent[-1]["checkpoint_id"]) if recent else head


async def cut(conn: Connection, thread_id: str, kept_from: str, *, dry_run: bool) -> RetainedThread:
    """Removes everything of the thread older than ``kept_from``, in one transaction.

    A dry run makes the very same changes and rolls them back, so its counts are
    exactly those a real run would report at that moment.
    """
    params = {
        "thread_id": thread_id,
        "cut": kept_from,
        "memory_keys": list(MEMORY_METADATA_KEYS),
    }
    counts = dict(NOTHING)
    async with conn.transaction(force_rollback=dry_run):
        before = await _thread_bytes(conn, thread_id)
        removed = await (await conn.execute(sql.SELECT_RETAINED_POINTS, params)).fetchall()
        stones = {
            row["checkpoint_id"]: stone
            for row in removed
            if row["metadata"] is not None and (stone := tombstone(row["metadata"])) is not None
        }
        records = [
            (
                thread_id,
                row["checkpoint_id"],
                row["parent_checkpoint_id"],
                row["ts"],
                Jsonb(stones[row["checkpoint_id"]]) if row["checkpoint_id"] in stones else None,
            )
            for row in removed
        ]
        if records:
            async with conn.cursor() as cur:
                await cur.executemany(sql.INSERT_RETAINED, records)
        counts["checkpoint_writes"] = (
            await conn.execute(sql.RETAIN_DELETE_WRITES, params)
        ).rowcount
        counts["checkpoints"] = (await conn.execute(sql.RETAIN_DELETE_CHECKPOINTS, params)).rowcount
        cur = await conn.execute(sql.PURGE_UNREFERENCED_BLOBS, (thread_id,))
        counts["checkpoint_blobs"] = cur.rowcount
        counts["memagent_messages"] = await delete_unreferenced_messages(conn, thread_id)
        after = await _thread_bytes(conn, thread_id)
    return RetainedThread(
        thread_id,
        kept_from,
        counts,
        bytes=before - after,
        checkpoints=len(records),
        tombstones=len(stones),
    )


async def _thread_bytes(conn: Connection, thread_id: str) -> int:
    row = await (await conn.execute(sql.THREAD_BYTES, {"thread_id": thread_id})).fetchone()
    return int(row["bytes"]) if row is not None else 0
