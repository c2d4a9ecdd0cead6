"""Erasing what a thread stored: delete, purge, redact and run rollback, each one transaction.

langgraph's own deletes (``adelete_thread``, ``aprune``) know only its three tables
and run outside a transaction; these cover memagent's message rows too, count what
they remove, and either finish whole or change nothing. Each takes a connection from
the saver and runs its statements (``agent.store.sql``) in one transaction on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from agent.errors import PurgeRefusedError
from agent.redaction import candidate_patterns, quote_pattern, scrub, scrub_typed
from agent.store import sql
from agent.store.messages import (
    RANGES_TYPE,
    blocks_needed,
    decode_ranges,
    encode_ranges,
    take_from_blocks,
)
from agent.store.summary_erasure import SUMMARY_LIKE, find_summary_markers

Connection = AsyncConnection[DictRow]


async def delete_thread(conn: Connection, thread_id: str) -> dict[str, int]:
    """Deletes every row naming a thread in one transaction, but the audit log's.

    Returns:
        Rows removed per conversation table (``sql.DELETE_THREAD``); what else named
        the thread (its owner, what retention recorded, an expired lease) goes uncounted.
    """
    async with conn.transaction():
        counts = await _delete_rows(conn, thread_id, sql.DELETE_THREAD)
        await conn.execute(sql.DELETE_THREAD_OWNER, (thread_id,))
        await _delete_records(conn, thread_id)
    return counts


async def erase_thread(conn: Connection, thread_id: str) -> dict[str, int]:
    """``delete_thread`` with the rows that only name the thread counted too.

    For erasing a person, whose receipt counts every row: besides the conversation,
    the thread's ownership and what retention recorded of it go, in the same
    transaction.
    """
    async with conn.transaction():
        counts = await _delete_rows(
            conn, thread_id, (*sql.DELETE_THREAD, *sql.ERASE_THREAD_BOOKKEEPING)
        )
        await _delete_records(conn, thread_id)
    return counts


async def _delete_records(conn: Connection, thread_id: str) -> None:
    for statement in sql.DELETE_THREAD_RECORDS:
        await conn.execute(statement, (thread_id,))


async def _delete_rows(
    conn: Connection, thread_id: str, statements: Sequence[tuple[str, str]]
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table, statement in statements:
        cur = await conn.execute(statement, (thread_id,))
        counts[table] = cur.rowcount
    return counts


async def delete_unreferenced_messages(conn: Connection, thread_id: str) -> int:
    """Removes the thread's message rows no range list refers to; how many went."""
    cur = await conn.execute(
        sql.DELETE_UNREFERENCED_MESSAGES, {"thread_id": thread_id, "ranges_type": RANGES_TYPE}
    )
    return cur.rowcount


async def delete_for_runs(conn: Connection, run_ids: list[str]) -> None:
    """Removes what the given runs wrote, and the blobs and message rows left unreferenced."""
    async with conn.transaction():
        cur = await conn.execute(sql.DELETE_FOR_RUNS, (run_ids,))
        for row in await cur.fetchall():
            await conn.execute(sql.PURGE_UNREFERENCED_BLOBS, (row["thread_id"],))
            await delete_unreferenced_messages(conn, row["thread_id"])


async def purge(conn: Connection, thread_id: str) -> tuple[str | None, dict[str, int]]:
    """Erases everything older than the thread's newest forget.

    Also erased: root checkpoints that do not descend from that forget (a branch
    made by rewinding to before it, which holds the forgotten messages again), so
    the history that is left starts at the forget.

    Returns:
        The forget checkpoint the thread now starts at (``None`` if the thread
        has never been forgotten, in which case nothing is erased) and the rows
        removed per table.

    Raises:
        PurgeRefusedError: The head does not descend from the newest forget (it
            was undone by a rewind), so the current conversation holds what the
            purge would erase; nothing is changed.
    """
    counts = dict.fromkeys(
        ("checkpoint_writes", "checkpoints", "checkpoint_blobs", "memagent_messages"), 0
    )
    async with conn.transaction():
        row = await (await conn.execute(sql.SELECT_NEWEST_FORGET, (thread_id,))).fetchone()
        if row is None:
            return None, counts
        cut = row["checkpoint_id"]
        links = await (await conn.execute(sql.SELECT_ROOT_LINKS_FROM, (thread_id, cut))).fetchall()
        kept = {cut}
        for link in links:  # oldest first, and a parent is always older than its child
            if link["parent_checkpoint_id"] in kept:
                kept.add(link["checkpoint_id"])
        if links[-1]["checkpoint_id"] not in kept:
            raise PurgeRefusedError(
                f"Thread {thread_id!r} was rewound to before its newest forget, so its "
                "conversation holds the forgotten part again; forget it again, then purge."
            )
        params = {
            "thread_id": thread_id,
            "cut": cut,
            "dropped": [
                link["checkpoint_id"] for link in links if link["checkpoint_id"] not in kept
            ],
        }
        cur = await conn.execute(sql.PURGE_WRITES_BEFORE, params)
        counts["checkpoint_writes"] = cur.rowcount
        cur = await conn.execute(sql.PURGE_CHECKPOINTS_BEFORE, params)
        counts["checkpoints"] = cur.rowcount
        await conn.execute(sql.PURGE_DETACH_PARENTS, (thread_id, cut))
        cur = await conn.execute(sql.PURGE_UNREFERENCED_BLOBS, (thread_id,))
        counts["checkpoint_blobs"] = cur.rowcount
        counts["memagent_messages"] = await delete_unreferenced_messages(conn, thread_id)
    return cut, counts


@dataclass
class Redaction:
    """What a redact changed.

    Attributes:
        counts: Rows changed per table (``memagent_messages``: rows replaced).
        replaced: Old message-row number -> the number of the row that replaced it.
    """

    counts: dict[str, int]
    replaced: dict[int, int] = field(default_factory=dict)


async def redact(
    conn: Connection, thread_id: str, quotes: Sequence[str], *, serde: SerializerProtocol
) -> Redaction:
    """Replaces the quotes by the marker in every stored copy of a thread, at once.

    One transaction covers every checkpoint of every branch and namespace: the
    ``checkpoints`` rows (inline values and metadata), ``checkpoint_blobs``,
    ``checkpoint_writes`` and the message rows. A changed message gets a new row
    under a new number (see ``agent.store.messages``) and every range list that
    named the old row is rewritten to name the new one, so checkpoint and message
    ids stay as they were and every checkpoint still loads. A summary made from a
    message that held a quote, which may restate it in other words, becomes the
    summary marker in every copy (``agent.store.summary_erasure``).

    Args:
        conn: A connection of the saver's pool.
        thread_id: The thread.
        quotes: Checked quotes (``agent.validation.check_quotes``), matched
            case-insensitively.
        serde: The saver's serializer, for the stored values that hold summaries.
    """
    pattern = quote_pattern(quotes)
    binary, text = candidate_patterns(quotes)
    params: dict[str, Any] = {
        "thread_id": thread_id,
        "binary": binary,
        "text": text,
        "ranges_type": RANGES_TYPE,
    }
    result = Redaction(
        dict.fromkeys(
            ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "memagent_messages"), 0
        )
    )
    replaced = result.replaced
    async with conn.transaction():
        rows = await (await conn.execute(sql.REDACT_SELECT_MESSAGES, params)).fetchall()
        changed = {
            row["seq"]: (row, blob)
            for row in rows
            if (blob := scrub_typed(row["type"], row["blob"], pattern)) is not None
        }
        erased_ids = {row["message_id"] for row, _ in changed.values()}
        summaries = await find_summary_markers(conn, serde, thread_id, erased_ids)
        changed.update(summaries.rows)
        if changed:
            blocks = blocks_needed(len(changed), sql.MESSAGE_BLOCK)
            cur = await conn.execute(sql.RESERVE_MESSAGE_BLOCKS, (blocks,))
            firsts = [row["first"] for row in await cur.fetchall()]
            seqs, _unused = take_from_blocks(firsts, sql.MESSAGE_BLOCK, len(changed))
            new_rows = []
            for seq, (row, blob) in zip(seqs, changed.values(), strict=True):
                replaced[row["seq"]] = seq
                new_rows.append((thread_id, seq, row["message_id"], row["type"], blob))
            async with conn.cursor() as cur:
                await cur.executemany(sql.INSERT_MESSAGE, new_rows)
            await conn.execute(sql.REDACT_DELETE_MESSAGES, (thread_id, list(replaced)))
            result.counts["memagent_messages"] = len(changed)
        blob_updates = []
        ranges = (
            await (
                await conn.execute(sql.REDACT_SELECT_RANGES, {**params, "seqs": list(replaced)})
            ).fetchall()
            if replaced
            else []
        )
        for row in ranges:
            seqs = [replaced.get(seq, seq) for seq in decode_ranges(row["blob"])]
            key = (thread_id, row["checkpoint_ns"], row["channel"], row["version"])
            blob_updates.append((encode_ranges(seqs), *key))
        # Values that hold a quote or, when there are markers to put in, a summary.
        values = {**params, "binary": [*binary, SUMMARY_LIKE]} if summaries.by_id else params

        def rewritten(row: DictRow) -> bytes | None:
            swapped = summaries.replace(row["type"], row["blob"])
            scrubbed = scrub_typed(row["type"], swapped or row["blob"], pattern)
            return scrubbed or swapped

        for row in await (await conn.execute(sql.REDACT_SELECT_BLOBS, values)).fetchall():
            if (blob := rewritten(row)) is not None:
                key = (thread_id, row["checkpoint_ns"], row["channel"], row["version"])
                blob_updates.append((blob, *key))
        write_updates = []
        for row in await (await conn.execute(sql.REDACT_SELECT_WRITES, values)).fetchall():
            if (blob := rewritten(row)) is not None:
                key = (row["checkpoint_ns"], row["checkpoint_id"], row["task_id"], row["idx"])
                write_updates.append((blob, thread_id, *key))
        checkpoint_updates = []
        for row in await (await conn.execute(sql.REDACT_SELECT_CHECKPOINTS, params)).fetchall():
            checkpoint = scrub(row["checkpoint"], pattern)
            metadata = scrub(row["metadata"], pattern)
            if checkpoint is not row["checkpoint"] or metadata is not row["metadata"]:
                checkpoint_updates.append(
                    (
                        Jsonb(checkpoint),
                        Jsonb(metadata),
                        thread_id,
                        row["checkpoint_ns"],
                        row["checkpoint_id"],
                    )
                )
        async with conn.cursor() as cur:
            for table, statement, updates in (
                ("checkpoint_blobs", sql.REDACT_UPDATE_BLOB, blob_updates),
                ("checkpoint_writes", sql.REDACT_UPDATE_WRITE, write_updates),
                ("checkpoints", sql.REDACT_UPDATE_CHECKPOINT, checkpoint_updates),
            ):
                if updates:
                    await cur.executemany(statement, updates)
                result.counts[table] = len(updates)
    return result


async def detach_runs(conn: Connection, thread_id: str, run_ids: list[str]) -> None:
    """Unlinks the thread's checkpoints from runs the server is about to delete.

    The server's run delete rolls back what the run wrote (``adelete_for_runs``); an
    erase deletes only the run's record, so the conversation keeps every checkpoint.
    """
    await conn.execute(sql.DETACH_RUN_CHECKPOINTS, (thread_id, run_ids))
