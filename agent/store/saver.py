"""memagent's checkpointer: langgraph's ``AsyncPostgresSaver`` storing each message once.

This module mirrors the library's saver where it must (``aput``, row loading, the
cursor) and delegates the rest of what memagent adds, each to a module of its own:
the serializer policy (``serde``), checkpoint metadata (``metadata``), the message rows
(``messages``), erasure (``erasure``), the cheap history reads (``history``), leases
(``leases``) and the audit log (``audit``). ``MemagentSaver`` is the backend of the
``agent.memory.store.ThreadStore`` protocol. ``database.py`` opens it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from psycopg import AsyncClientCursor, AsyncConnection, AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agent.errors import CheckpointRetainedError
from agent.memory.changes import RetainedThread
from agent.memory.entries import TimelineEntry
from agent.store import (
    audit,
    erasure,
    history,
    maintenance,
    ownership,
    retention,
    sql,
    verification,
)
from agent.store.leases import DEFAULT_LEASE_SECONDS, ThreadLeases
from agent.store.messages import (
    MESSAGES_CHANNEL,
    RANGES_TYPE,
    MessageCache,
    RangeList,
    SeqReservation,
    blocks_needed,
    decode_ranges,
    detached,
    encode_ranges,
    storable_messages,
    take_from_blocks,
)
from agent.store.metadata import RUN_METADATA_KEYS, memory_metadata, without_memory_event
from agent.store.serde import strict_serializer
from agent.store.verification import Scan
from agent.store.writebehind import Statement, WriteBehind
from agent.validation import check_thread_id

LOAD_OFF_LOOP_BYTES = 256 * 1024
"""Checkpoints whose blobs are larger than this are decoded in a worker thread."""
MAX_RESERVATIONS = 10_000
"""Threads whose unused reservation is remembered; older ones are dropped (a gap)."""
RANGES_BYTES = RANGES_TYPE.encode()
_SHARING_CACHED_MESSAGES: ContextVar[bool] = ContextVar(
    "memagent_sharing_cached_messages", default=False
)
_CURRENT_CONNECTION: ContextVar[tuple[AsyncConnection[DictRow], object] | None] = ContextVar(
    "memagent_current_connection", default=None
)
"""The connection of the library cursor open in this context, and that cursor's mark.

The value is trusted only while its mark is in the saver's ``_open_cursors``: the
library's ``alist`` is an async generator, which a caller may close from another task
(langgraph does, for subgraphs and retries), where the context differs and the value
cannot be reset. A mark that is gone means the connection went back to the pool.
"""


def check_config_thread(config: RunnableConfig | None) -> None:
    """Checks the thread id a checkpoint call addresses, before any query is built.

    Every entry point of the saver calls this first, so a NUL or a lone surrogate
    from any route (the compiled graph, the server, ``tools.admin``) is a clear
    ``InvalidThreadIdError``, never ``psycopg.DataError`` or ``UnicodeEncodeError``.
    A config without a thread (``alist(None)``: all threads) has nothing to check.

    Raises:
        InvalidThreadIdError: see ``check_thread_id``.
    """
    thread_id = (config or {}).get("configurable", {}).get("thread_id")
    if thread_id is not None:
        check_thread_id(str(thread_id))


class MemagentSaver(AsyncPostgresSaver):
    """``AsyncPostgresSaver`` plus what memagent needs from its database.

    Everything the library does (checkpoints, history, ``aupdate_state``, pruning)
    keeps its API; what changes is how a conversation is stored: each message once,
    in ``memagent_messages``, and each version of the ``messages`` channel as a range
    list referring to those rows (``agent.store.messages``, docs/storage.md). It is
    also the ``ThreadStore`` (``agent.memory.store``): memory metadata, a race-free
    ``setup``, an atomic counted delete, purge, redact, cheap history reads, the audit
    log and per-thread leases.
    """

    conn: AsyncConnectionPool[AsyncConnection[DictRow]]
    SELECT_SQL = sql.SELECT_CHECKPOINT
    """Every read of a checkpoint (``aget_tuple``, ``alist``, the lease's first read)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConnection[DictRow]],
        conninfo: str,
        *,
        busy_timeout: float = 30.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        serde_allow: Iterable[tuple[str, str]] = (),
        metadata_keys: Iterable[str] = (),
    ) -> None:
        super().__init__(pool, serde=strict_serializer(serde_allow))
        self.conninfo = conninfo
        self.metadata_keys = RUN_METADATA_KEYS | frozenset(metadata_keys)
        """The run-config keys copied into checkpoint metadata (``MEMAGENT_METADATA_KEYS``)."""
        self._writes = WriteBehind(pool)
        self.leases = ThreadLeases(
            pool, self._writes, busy_timeout=busy_timeout, lease_seconds=lease_seconds
        )
        self._messages = MessageCache()
        self._open_cursors: set[object] = set()
        """Marks of the library cursors open now (see ``_CURRENT_CONNECTION``)."""
        self._reserved: OrderedDict[str, SeqReservation] = OrderedDict()
        self.request_user: Callable[[], str | None] = lambda: None
        """Who asked for the current call, for the audit of calls the server makes
        directly (``adelete_thread``); the server's factory sets it."""
        self.thread_owner: Callable[[RunnableConfig], str | None] = lambda config: None
        """The authenticated user a checkpoint is written for, recorded as its thread's
        owner by ``aput``; the server's factory sets it when auth is on."""

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The library's read; a run's first read also takes the run's thread lease.

        ``ChatGraph`` leaves its run's lease to this read (``ThreadLeases.hold(...,
        with_first_read=True)``): the lease's insert and the library's query go in
        one pipeline, so holding the thread costs no round trip of its own. A
        checkpoint retention removed is an error: asked for by id, it would otherwise
        be ``None``, an empty state from which a run would start a new conversation
        (``agent.store.retention``).

        Raises:
            CheckpointRetainedError: Retention removed the root checkpoint asked for.
        """
        check_config_thread(config)
        found = await self._read_tuple(config)
        configurable = config["configurable"]
        if (
            found is None
            and configurable.get("checkpoint_id")
            and not configurable.get("checkpoint_ns")
        ):
            thread_id, checkpoint_id = str(configurable["thread_id"]), configurable["checkpoint_id"]
            if (retained_at := await self.aretained_at(thread_id, checkpoint_id)) is not None:
                raise CheckpointRetainedError(thread_id, checkpoint_id, retained_at)
        return found

    async def _read_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id = str(config["configurable"]["thread_id"])
        if not self.leases.waiting_for_first_read(thread_id):
            await self._settle(thread_id)
            return await super().aget_tuple(config)
        checkpoint_id = get_checkpoint_id(config)
        checkpoint_ns = config["configurable"].get("checkpoint_ns", "")
        if checkpoint_id:  # the library's two queries, word for word
            args: tuple[Any, ...] = (thread_id, checkpoint_ns, checkpoint_id)
            where = "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s"
        else:
            args = (thread_id, checkpoint_ns)
            where = (
                "WHERE thread_id = %s AND checkpoint_ns = %s ORDER BY checkpoint_id DESC LIMIT 1"
            )
        value = await self.leases.take_reading(thread_id, self.SELECT_SQL + where, args)
        if value is None:
            return None
        if value["checkpoint"]["v"] < 4 and value["parent_checkpoint_id"]:
            # Written by a langgraph before checkpoint v4: the library migrates its
            # pending sends with a second query; the lease is held now, so read again.
            return await super().aget_tuple(config)
        return await self._load_checkpoint_tuple(value)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        check_config_thread(config)
        thread_id = (config or {}).get("configurable", {}).get("thread_id")
        await self._settle(None if thread_id is None else str(thread_id))
        async for found in super().alist(config, filter=filter, before=before, limit=limit):
            yield found

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """The library's ``aput``, storing a new ``messages`` version as a range list.

        Mirrors ``AsyncPostgresSaver.aput`` (primitive values inline, others as blobs,
        one pipeline) with three changes: the memory metadata, a memory event stored
        as that metadata only (``without_memory_event``), and the messages, of which
        only those not stored yet are written. Message rows go first in the pipeline,
        the range list next and the checkpoint last, so a crash part way leaves at most
        rows nothing refers to, never a checkpoint that refers to a missing row.
        """
        check_config_thread(config)
        config, metadata = memory_metadata(
            config, checkpoint, metadata, new_versions, self.metadata_keys
        )
        checkpoint, new_versions = without_memory_event(checkpoint, new_versions)
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        checkpoint_ns = configurable["checkpoint_ns"]
        stored = checkpoint.copy()
        stored["channel_values"] = values = dict(checkpoint["channel_values"])
        blob_values: dict[str, Any] = {}
        for channel, value in checkpoint["channel_values"].items():
            if isinstance(value, _DeltaSnapshot):
                blob_values[channel] = values.pop(channel)
                values[channel] = True
            elif value is not None and not isinstance(value, str | int | float | bool):
                blob_values[channel] = values.pop(channel)
        blob_versions = {k: v for k, v in new_versions.items() if k in blob_values}
        message_rows: list[tuple[str, int, str, str, bytes]] = []
        blob_rows: list[tuple[str, str, str, str, str, bytes | None]] = []
        messages = blob_values.get(MESSAGES_CHANNEL)
        if MESSAGES_CHANNEL in blob_versions and storable_messages(messages):
            seqs, message_rows = await self._message_rows(thread_id, messages)
            version = str(blob_versions.pop(MESSAGES_CHANNEL))
            blob_rows.append(
                (
                    thread_id,
                    checkpoint_ns,
                    MESSAGES_CHANNEL,
                    version,
                    RANGES_TYPE,
                    encode_ranges(seqs),
                )
            )
        if blob_versions:  # small once messages are rows: encoded here, not in a thread
            blob_rows.extend(self._dump_blobs(thread_id, checkpoint_ns, blob_values, blob_versions))
        owner = self.thread_owner(config) if not checkpoint_ns else None
        checkpoint_row = (
            thread_id,
            checkpoint_ns,
            checkpoint["id"],
            configurable.get("checkpoint_id"),
            Jsonb(stored),
            Jsonb(get_serializable_checkpoint_metadata(config, metadata)),
        )
        await self._write(
            thread_id,
            [  # the owner in the same round trip: no extra wait per checkpoint
                (sql.RECORD_THREAD_OWNER, [(thread_id, owner)] if owner is not None else []),
                (sql.INSERT_MESSAGE, message_rows),
                (self.UPSERT_CHECKPOINT_BLOBS_SQL, blob_rows),
                (self.UPSERT_CHECKPOINTS_SQL, [checkpoint_row]),
            ],
        )
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": checkpoint_ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """The library's ``aput_writes``, encoding on the event loop, written like ``aput``.

        The library encodes every set of writes in a worker thread. A step's writes are
        its new messages (a few kB), which encode in microseconds, while the hop to a
        thread and back cost about a millisecond of every step under load.
        """
        check_config_thread(config)
        query = (
            self.UPSERT_CHECKPOINT_WRITES_SQL
            if all(channel in WRITES_IDX_MAP for channel, _ in writes)
            else self.INSERT_CHECKPOINT_WRITES_SQL
        )
        configurable = config["configurable"]
        params = self._dump_writes(
            str(configurable["thread_id"]),
            configurable["checkpoint_ns"],
            configurable["checkpoint_id"],
            task_id,
            task_path,
            writes,
        )
        await self._write(str(configurable["thread_id"]), [(query, params)])

    async def _write(self, thread_id: str, statements: list[Statement]) -> None:
        """Writes in one pipeline now, or, inside the thread's lease, queued behind the turn.

        Inside the lease no one else writes the thread, and every read of it through
        this saver sends the queue first, so queuing changes only how many writes share
        a round trip (``agent.store.writebehind``). Outside a lease the writes go now,
        behind anything still queued for the thread.
        """
        await self.leases.take_before_write(thread_id)
        if self.leases.holds(thread_id):
            self._writes.queue(thread_id, statements)
            return
        await self._settle(thread_id)
        async with self._cursor(pipeline=True) as cur:
            for query, params in statements:
                if params:
                    await cur.executemany(query, params)

    async def _settle(self, thread_id: str | None) -> None:
        """Gets the thread ready for a database call: its lease taken, its writes sent.

        A lease left to the first read (``ThreadLeases.hold``) is taken now if this
        call is not that read; the writes queued for the thread (``None``: for every
        thread) are sent, so the call sees them.
        """
        if thread_id is None:
            await self._writes.drain_all()
            return
        await self.leases.take_before_write(thread_id)
        if self._writes.pending(thread_id):
            await self._writes.drain(thread_id)

    async def _message_rows(
        self, thread_id: str, messages: list[BaseMessage]
    ) -> tuple[list[int], list[tuple[str, int, str, str, bytes]]]:
        """The row number of each message, and the rows to insert for those not stored yet.

        A message is already stored when a cached row has its id and equal content:
        every run starts by reading its checkpoint, which caches that conversation's
        rows, so only the run's new messages (and any it changed) are new rows. A
        message loaded from a row of an older release is not cached and is stored once
        here: that is the whole migration of an existing thread.
        """
        seqs = [self._messages.find(thread_id, message) for message in messages]
        new = [index for index, seq in enumerate(seqs) if seq is None]
        rows = []
        for index, seq in zip(new, await self._reserve(thread_id, len(new)), strict=True):
            message = messages[index]
            type_, blob = self.serde.dumps_typed(message)
            rows.append((thread_id, seq, str(message.id), type_, blob))
            seqs[index] = seq
            self._messages.add(thread_id, seq, detached(message))
        return [seq for seq in seqs if seq is not None], rows

    async def _reserve(self, thread_id: str, count: int) -> list[int]:
        """``count`` new message numbers for the thread, from this saver's reservation."""
        reservation = self._reserved.get(thread_id)
        taken = reservation.take(min(count, reservation.left)) if reservation else []
        if len(taken) < count:
            needed = count - len(taken)
            blocks = blocks_needed(needed, sql.MESSAGE_BLOCK)
            async with self.conn.connection() as conn:
                cur = await conn.execute(sql.RESERVE_MESSAGE_BLOCKS, (blocks,))
                firsts = [row["first"] for row in await cur.fetchall()]
            fresh, reservation = take_from_blocks(firsts, sql.MESSAGE_BLOCK, needed)
            self._reserved[thread_id] = reservation
            taken += fresh
        if reservation is not None:
            self._reserved.move_to_end(thread_id)
            while len(self._reserved) > MAX_RESERVATIONS:
                self._reserved.popitem(last=False)
        return taken

    async def _messages_at(self, thread_id: str, seqs: list[int]) -> list[BaseMessage]:
        """The messages of a range list, from the cache or, once, from their rows."""
        cached = [self._messages.get(thread_id, seq) for seq in seqs]
        missing = list(dict.fromkeys(seq for seq, m in zip(seqs, cached, strict=True) if m is None))
        decoded: dict[int, BaseMessage] = {}
        if missing:  # a cold process, or rows written by another one
            async with self._connection() as conn:
                cur = await conn.execute(sql.SELECT_MESSAGES_BY_SEQ, (thread_id, missing))
                rows = await cur.fetchall()
            decoded = await self._decode_rows(rows)
            for seq, message in decoded.items():
                self._messages.add(thread_id, seq, message)
            if lost := [seq for seq in missing if seq not in decoded]:
                raise LookupError(
                    f"thread {thread_id!r} refers to message rows {lost[:5]} that are gone; "
                    "the database was changed outside memagent"
                )
        found = [decoded[seq] if m is None else m for seq, m in zip(seqs, cached, strict=True)]
        if _SHARING_CACHED_MESSAGES.get():
            return found
        return [detached(message) for message in found]

    @contextmanager
    def sharing_cached_messages(self) -> Iterator[None]:
        """Reads in this block hand out the cached messages themselves, not copies.

        For ``tools.admin``'s forget and rewind only: langgraph's ``aupdate_state``
        reads the thread's state (and a rewind its target's) but never changes a
        message, so copying every message of a long thread would be the whole cost
        of an operation that otherwise writes one message and a range list. Nothing
        that runs a node or returns state to a caller may read in this block.
        """
        token = _SHARING_CACHED_MESSAGES.set(True)
        try:
            yield
        finally:
            _SHARING_CACHED_MESSAGES.reset(token)

    async def _decode_rows(self, rows: list[DictRow]) -> dict[int, BaseMessage]:
        def decode() -> dict[int, BaseMessage]:
            return {row["seq"]: self.serde.loads_typed((row["type"], row["blob"])) for row in rows}

        if sum(len(row["blob"]) for row in rows) < LOAD_OFF_LOOP_BYTES:
            return decode()
        return await asyncio.to_thread(decode)

    async def _load_checkpoint_tuple(self, value: DictRow) -> CheckpointTuple:
        """The library's row decoding, plus range lists, and large values off the loop.

        A ``messages`` range list becomes the list of its messages. The library
        decodes blobs on the event loop; for a long thread stored by an older release
        (one blob of thousands of messages) that would stall every other task on the
        loop for tens of milliseconds, so large blobs are decoded in a worker thread.
        The library decodes pending writes in a worker thread, always: a hop there and
        back on every read, for writes that are a few kB; only large ones go there.
        """
        rows = value["channel_values"] or []
        ranged = [(bytes(c).decode(), bytes(b)) for c, t, b in rows if bytes(t) == RANGES_BYTES]
        blobs = [row for row in rows if bytes(row[1]) != RANGES_BYTES]
        loaded: dict[str, Any] = {}
        if blobs and sum(len(blob or b"") for _, _, blob in blobs) >= LOAD_OFF_LOOP_BYTES:
            loaded = await asyncio.to_thread(self._load_blobs, blobs)
            blobs = []
        for channel, blob in ranged:
            loaded[channel] = await self._messages_at(value["thread_id"], decode_ranges(blob))
        checkpoint = value["checkpoint"]
        inline = checkpoint.get("channel_values") or {}
        writes = value["pending_writes"] or []
        if sum(len(write[3] or b"") for write in writes) >= LOAD_OFF_LOOP_BYTES:
            pending_writes = await asyncio.to_thread(self._load_writes, writes)
        else:
            pending_writes = self._load_writes(writes)
        configurable = {"thread_id": value["thread_id"], "checkpoint_ns": value["checkpoint_ns"]}
        parent = value["parent_checkpoint_id"]
        return CheckpointTuple(  # the library's tuple, field for field
            {"configurable": {**configurable, "checkpoint_id": value["checkpoint_id"]}},
            cast(
                Checkpoint,
                {**checkpoint, "channel_values": {**inline, **self._load_blobs(blobs), **loaded}},
            ),
            value["metadata"],
            {"configurable": {**configurable, "checkpoint_id": parent}} if parent else None,
            pending_writes,
        )

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """The library's rebuild of channels from older versions, with range lists resolved.

        langgraph takes this path when a checkpoint lists a channel version it has no
        value for (a crafted or damaged row); its seed may then be a range list.
        """
        await self._settle(str(config["configurable"]["thread_id"]))
        histories = await super().aget_delta_channel_history(config=config, channels=channels)
        for entry in histories.values():
            seed = entry.get("seed")
            if isinstance(seed, RangeList):
                thread_id = str(config["configurable"]["thread_id"])
                entry["seed"] = await self._messages_at(thread_id, seed.seqs)
        return histories

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[DictRow]]:
        """The connection of the database call in progress in this task, else a pooled one.

        The library decodes rows while it still holds its cursor's connection; a read
        of message rows made then reuses that connection rather than taking a second
        one from the pool, which a pool of one connection could never give.
        """
        current = _CURRENT_CONNECTION.get()
        if current is not None and current[1] in self._open_cursors:
            yield current[0]
            return
        async with self.conn.connection() as conn:
            yield conn

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        """The library's cursor, without the library's saver-wide lock.

        ``AsyncPostgresSaver`` serialises every database call of a saver through one
        ``asyncio.Lock``, because a single connection serves one caller at a time. On a
        pool each call checks out a connection of its own, so the lock only made every
        conversation wait for every other one: with 50 threads at once, one database
        call ran at a time. The rest mirrors the library's non-pipeline-saver branches.
        """
        async with self.conn.connection() as conn:
            mark = object()
            previous = _CURRENT_CONNECTION.get()
            mine = None if pipeline else (conn, mark)
            self._open_cursors.add(mark)
            _CURRENT_CONNECTION.set(mine)
            try:
                if pipeline and self.supports_pipeline:
                    async with (
                        conn.pipeline(),
                        conn.cursor(binary=True, row_factory=dict_row) as cur,
                    ):
                        yield cur
                elif pipeline:
                    async with (
                        conn.transaction(),
                        conn.cursor(binary=True, row_factory=dict_row) as cur,
                    ):
                        yield cur
                else:
                    async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                        yield cur
            finally:
                # No token reset: this may run in another context than the one that set
                # it (see ``_CURRENT_CONNECTION``); there, the value is left as it is.
                self._open_cursors.discard(mark)
                if _CURRENT_CONNECTION.get() is mine:
                    _CURRENT_CONNECTION.set(previous)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """The library's prune, which also drops the message rows nothing refers to any more."""
        for thread_id in thread_ids:
            await self._settle(check_thread_id(str(thread_id)))
        await super().aprune(thread_ids, strategy=strategy)
        async with self.conn.connection() as conn:
            for thread_id in thread_ids:
                await erasure.delete_unreferenced_messages(conn, str(thread_id))
            if strategy == "delete":  # a deleted thread has no owner
                await conn.execute(sql.DELETE_THREAD_OWNERS, ([str(t) for t in thread_ids],))

    async def setup(self) -> None:
        """Creates or migrates langgraph's tables and memagent's, one process at a time.

        The lock is held by a transaction on a connection of its own (see
        ``sql.SETUP_LOCK_KEY``), so this also works through PgBouncer in transaction
        mode; that connection never prepares statements, for the same reason.
        """
        async with await AsyncConnection.connect(
            self.conninfo,
            autocommit=True,
            prepare_threshold=None,
            row_factory=dict_row,
            # The simple query protocol: an extended-protocol portal stays open after
            # the lock query and keeps its snapshot, which the index builds wait for.
            cursor_factory=AsyncClientCursor,
        ) as lock_conn:
            while True:
                async with lock_conn.transaction():
                    cur = await lock_conn.execute(sql.TRY_SETUP_LOCK, (sql.SETUP_LOCK_KEY,))
                    row = await cur.fetchone()
                    if row is not None and row["locked"]:
                        await super().setup()
                        await self._migrate_own_tables()
                        return
                await asyncio.sleep(0.05)

    async def _migrate_own_tables(self) -> None:
        async with self.conn.connection() as conn, conn.transaction():
            await conn.execute(sql.MIGRATIONS[0])
            row = await (await conn.execute(sql.SELECT_MIGRATION_VERSION)).fetchone()
            done = -1 if row is None or row["v"] is None else row["v"]
            for version in range(done + 1, len(sql.MIGRATIONS)):
                await conn.execute(sql.MIGRATIONS[version])
                await conn.execute(sql.INSERT_MIGRATION_VERSION, (version,))

    # --- ThreadStore: what memagent adds (agent.memory.store) ------------------------

    async def atimeline(self, thread_id: str, limit: int) -> list[TimelineEntry]:
        """The head's lineage as timeline entries, newest first, without message blobs."""
        check_thread_id(thread_id)
        await self._settle(thread_id)
        async with self.conn.connection() as conn:
            return await history.timeline(conn, self.serde, thread_id, limit)

    async def amessages_by_id(
        self, thread_id: str, message_ids: Sequence[str]
    ) -> list[BaseMessage]:
        """Every stored version of the given messages (one per row), oldest row first.

        For what a summary covers, which is no longer in the head: whether any version
        of a covered message held a detail the user forgets. Decoded fresh, not cached:
        it runs once per forget, not per turn.
        """
        check_thread_id(thread_id)
        if not message_ids:
            return []
        await self._settle(thread_id)
        async with self._connection() as conn:
            cur = await conn.execute(sql.SELECT_MESSAGES_BY_ID, (thread_id, list(message_ids)))
            rows = await cur.fetchall()
        decoded = await self._decode_rows(rows)
        return [decoded[row["seq"]] for row in rows]

    async def ahead_id(self, thread_id: str) -> str | None:
        """The id of the thread's head (newest root checkpoint); one index entry, no state.

        May be the first read of a lease (``tools.admin``), which it then takes.
        """
        check_thread_id(thread_id)
        if self.leases.waiting_for_first_read(thread_id):
            row = await self.leases.take_reading(thread_id, sql.SELECT_HEAD_ID, (thread_id,))
            return None if row is None else str(row["checkpoint_id"])
        await self._settle(thread_id)
        async with self.conn.connection() as conn:
            return await history.head_id(conn, thread_id)

    async def atree_links(self, thread_id: str) -> list[dict[str, Any]]:
        """Every root checkpoint's id and parent, oldest first; time and metadata on points.

        Points are the checkpoints a tree shows (turns and memory changes); the others
        only connect them. No message blob is read.
        """
        check_thread_id(thread_id)
        await self._settle(thread_id)
        async with self.conn.connection() as conn:
            return await history.tree_links(conn, thread_id)

    async def aturn_inputs(self, thread_id: str, checkpoint_ids: list[str]) -> dict[str, Any]:
        """The user-message write of each given turn point, decoded, by checkpoint id."""
        check_thread_id(thread_id)
        await self._settle(thread_id)
        async with self.conn.connection() as conn:
            return await history.turn_inputs(conn, self.serde, thread_id, checkpoint_ids)

    async def athreads(self, limit: int = 100) -> list[dict[str, Any]]:
        """Threads with their checkpoint count and last activity, most recent first."""
        await self._settle(None)
        async with self.conn.connection() as conn:
            return await history.threads(conn, limit)

    async def adelete_thread_counted(self, thread_id: str) -> dict[str, int]:
        """Deletes every row of a thread in one transaction; rows removed per table."""
        check_thread_id(thread_id)
        await self._settle(thread_id)
        async with self.conn.connection() as conn:
            return await erasure.delete_thread(conn, thread_id)

    async def adelete_thread(self, thread_id: str) -> None:
        """The library's thread delete, made atomic and audited (the server calls this)."""
        rows = await self.adelete_thread_counted(str(thread_id))
        await self.arecord_audit(
            "delete", str(thread_id), surface="server", actor=self.request_user(), detail=rows
        )

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copies every row of a thread to a new thread id, in one transaction.

        The server calls this for ``POST /threads/<id>/copy`` (Studio's "copy thread").
        Both threads then share their past (same checkpoint ids) and go their own ways.
        """
        params = {
            "source": check_thread_id(str(source_thread_id)),
            "target": check_thread_id(str(target_thread_id)),
        }
        await self._settle(params["source"])
        await self._settle(params["target"])
        async with self.conn.connection() as conn, conn.transaction():
            for _table, statement in sql.COPY_THREAD:
                await conn.execute(statement, params)

    async def adelete_for_runs(self, run_ids: Iterable[str]) -> None:
        """Removes what the given runs wrote, so their threads return to before them.

        The server calls this when a run is cancelled with ``multitask_strategy=
        "rollback"``. Checkpoints of other runs are untouched.
        """
        ids = [str(run_id) for run_id in run_ids]
        if ids:
            await self._settle(None)
            async with self.conn.connection() as conn:
                await erasure.delete_for_runs(conn, ids)

    async def apurge(self, thread_id: str) -> tuple[str | None, dict[str, int]]:
        """Erases everything older than the thread's newest forget (``erasure.purge``)."""
        check_thread_id(thread_id)
        await self._settle(thread_id)
        async with self.conn.connection() as conn:
            return await erasure.purge(conn, thread_id)

    async def aretain(
        self,
        thread_id: str,
        *,
        keep_turns: int | None = None,
        older_than: timedelta | None = None,
        dry_run: bool = False,
    ) -> RetainedThread:
        """Keeps the thread from the rewind point the policy names on (``retention``).

        The caller holds the thread's lease, so no turn moves the head meanwhile.
        """
        check_thread_id(thread_id)
        async with self.conn.connection() as conn:
            kept_from = await retention.choose_cut(
                conn, thread_id, keep_turns=keep_turns, older_than=older_than, now=datetime.now(UTC)
            )
            if kept_from is None:
                return RetainedThread(thread_id, None, dict(retention.NOTHING))
            return await retention.cut(conn, thread_id, kept_from, dry_run=dry_run)

    async def aretained_at(self, thread_id: str, checkpoint_id: str) -> datetime | None:
        """When retention removed this root checkpoint; ``None`` if it never did."""
        check_thread_id(thread_id)
        async with self.conn.connection() as conn:
            return await history.retained_at(conn, thread_id, checkpoint_id)

    async def athread_ids(self) -> list[str]:
        """Every thread with a saved checkpoint (``athreads`` lists only the newest)."""
        async with self.conn.connection() as conn:
            return await history.thread_ids(conn)

    async def aredact(self, thread_id: str, quotes: Sequence[str]) -> dict[str, int]:
        """Erases the quotes from every stored copy of a thread, at once (``erasure.redact``).

        Returns:
            Rows changed per table (``memagent_messages``: rows replaced).
        """
        check_thread_id(thread_id)
        await self._settle(thread_id)
        async with self.conn.connection() as conn:
            done = await erasure.redact(conn, thread_id, quotes, serde=self.serde)
        # A running turn may still hold a message as it was; matched against a replaced
        # row it would be stored as a reference to that (now deleted) row.
        self._messages.forget_rows(thread_id, done.replaced)
        return done.counts

    async def arecord_owner(self, thread_id: str, owner: str) -> None:
        """Records who owns a thread, unless it has an owner already (``ownership``)."""
        check_thread_id(thread_id)
        async with self.conn.connection() as conn:
            await ownership.record_owner(conn, thread_id, owner)

    async def athreads_of(self, user: str) -> list[str]:
        """The threads of a user this database knows of (``ownership.threads_of``)."""
        async with self.conn.connection() as conn:
            return await ownership.threads_of(conn, user)

    async def aaudit_threads_of(self, user: str) -> list[str]:
        """The threads the audit log ties to a user (``ownership.audit_threads_of``)."""
        async with self.conn.connection() as conn:
            return await ownership.audit_threads_of(conn, user)

    async def aerase_thread(self, thread_id: str) -> dict[str, int]:
        """Every row naming a thread, in one transaction (``erasure.erase_thread``).

        The thread's cached rows and unused message numbers go too: its counter row
        is gone, so numbers start again if the id is ever used again.
        """
        check_thread_id(thread_id)
        async with self.conn.connection() as conn:
            counts = await erasure.erase_thread(conn, thread_id)
        self._messages.forget_thread(thread_id)
        self._reserved.pop(thread_id, None)
        return counts

    async def apseudonymise_audit(
        self, user: str, pseudonym: str, thread_pseudonyms: Mapping[str, str]
    ) -> int:
        """The audit log without the user's name and thread ids; lines changed."""
        async with self.conn.connection() as conn:
            return await ownership.pseudonymise_audit(conn, user, pseudonym, thread_pseudonyms)

    async def ascan_for(self, user: str, thread_ids: Sequence[str]) -> Scan:
        """Every table searched for the user and their thread ids (``verification``)."""
        async with self.conn.connection() as conn:
            return await verification.scan_for(conn, user, thread_ids)

    async def avacuum(self, *, full: bool = False) -> dict[str, tuple[int, int]]:
        """VACUUM (or VACUUM FULL) on memagent's and langgraph's tables (``maintenance``).

        Returns:
            Per table, its size in bytes before and after.
        """
        async with self.conn.connection() as conn:
            return await maintenance.vacuum(conn, full=full)

    async def arecord_audit(
        self,
        operation: str,
        thread_id: str,
        *,
        surface: str,
        actor: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Appends one content-free line to the audit log; inside the lease, with its release."""
        check_thread_id(thread_id)
        line = audit.statement(operation, thread_id, surface=surface, actor=actor, detail=detail)
        if self.leases.holds(thread_id):
            self._writes.queue(thread_id, [line])
            return
        async with self.conn.connection() as conn, conn.cursor() as cur:
            await cur.executemany(*line)

    async def aaudit(self, thread_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest audit lines, for one thread or all."""
        async with self.conn.connection() as conn:
            return await audit.newest(conn, thread_id, limit)

    def thread_lease(
        self,
        thread_id: str,
        *,
        timeout: float | None = None,
        with_first_read: bool = False,
    ) -> AbstractAsyncContextManager[None]:
        """Holds a thread for one turn or memory operation (``ThreadLeases.hold``)."""
        return self.leases.hold(thread_id, timeout=timeout, with_first_read=with_first_read)

    def blocking_thread_lease(self, thread_id: str) -> AbstractContextManager[None]:
        """``thread_lease`` for synchronous callers on another thread than the saver's loop.

        Raises:
            asyncio.InvalidStateError: Called on the loop's own thread, where waiting
                for the loop would hang forever.
            ThreadBusyError: The thread stayed busy for the busy timeout.
        """
        return self.leases.blocking_hold(thread_id, self.loop)
