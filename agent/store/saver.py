"""memagent's checkpointer: langgraph's ``AsyncPostgresSaver`` plus what memagent needs.

This is the only code that talks to the database once it is open (``database.py``
opens it). Everything the library does (checkpoints, history, ``aupdate_state``,
pruning) stays the library's; ``MemagentSaver`` adds memory metadata, a race-free
``setup``, an atomic counted delete, purge, the cheap timeline and tree reads, the
audit log and per-thread leases.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

import ormsgpack
import psycopg
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_metadata,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde._msgpack import SAFE_MSGPACK_METHODS, SAFE_MSGPACK_TYPES
from langgraph.checkpoint.serde.jsonplus import (
    EXT_DELTA_SNAPSHOT,
    EXT_METHOD_SINGLE_ARG,
    EXT_NUMPY_ARRAY,
    JsonPlusSerializer,
)
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from psycopg import AsyncClientCursor, AsyncConnection, AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agent.errors import PurgeRefusedError, ThreadBusyError, UnstorableValueError
from agent.redaction import candidate_patterns, quote_pattern, scrub, scrub_typed
from agent.state import MEMORY_EVENT_CHANNEL
from agent.store import sql
from agent.store.messages import (
    MESSAGES_CHANNEL,
    RANGES_TYPE,
    MessageCache,
    RangeList,
    SeqReservation,
    decode_ranges,
    detached,
    encode_ranges,
    storable_messages,
)
from agent.timeline import TimelineEntry, entry_from
from agent.validation import check_thread_id

logger = logging.getLogger(__name__)

LOAD_OFF_LOOP_BYTES = 256 * 1024
"""Checkpoints whose blobs are larger than this are decoded in a worker thread."""
SEQ_BLOCK = 64
"""Message numbers reserved per round trip: one reservation serves about 30 turns."""
MAX_RESERVATIONS = 10_000
"""Threads whose unused reservation is remembered; older ones are dropped (a gap)."""
RANGES_BYTES = RANGES_TYPE.encode()
_SHARING_CACHED_MESSAGES: ContextVar[bool] = ContextVar(
    "memagent_sharing_cached_messages", default=False
)
_CURRENT_CONNECTION: ContextVar[AsyncConnection[DictRow] | None] = ContextVar(
    "memagent_current_connection", default=None
)


class StoreSerializer(JsonPlusSerializer):
    """langgraph's serializer, which also reads memagent's range lists (as ``RangeList``)."""

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        if data[0] == RANGES_TYPE:
            return RangeList(decode_ranges(data[1]))
        return super().loads_typed(data)


_HELD_LEASES: ContextVar[frozenset[tuple[str, str]]] = ContextVar(
    "memagent_held_leases", default=frozenset()
)
"""(saver, thread) of every thread lease the current task holds, and its child tasks.

Makes ``thread_lease`` re-entrant: ``ChatSession`` holds the lease and runs the graph,
which takes it too; a graph node or tool that calls ``tools.admin`` runs in a child
task of the run. Without this each would wait for itself until the busy timeout.
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


class StrictSerializer(StoreSerializer):
    """langgraph's serializer, refusing to write a value it would not read back as itself.

    On load, a type outside langgraph's safe list and the allow-list comes back as a
    plain dict (with only a log line), so a user's own dataclass in the state would
    silently change type at the next turn. Every value is checked as it is written
    instead: its encoding is walked (no object is built, about an eighth of the
    encoding's cost) and a type that would not be revived is refused before anything
    is stored. langgraph's safe lists are private (``_msgpack``); the tests of this
    check fail if they change shape.
    """

    def __init__(self, allowed: Iterable[tuple[str, str]] = ()) -> None:
        self.allowed_types = frozenset(allowed)
        """``(module, class)`` of the user's own types to revive besides the safe ones."""
        self._revivable = frozenset(SAFE_MSGPACK_TYPES) | self.allowed_types
        super().__init__(
            pickle_fallback=False, allowed_msgpack_modules=list(self.allowed_types) or None
        )

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        typed = super().dumps_typed(obj)
        if typed[0] == "msgpack":
            unrevivable = self._unrevivable_types(typed[1])
            if unrevivable:
                raise UnstorableValueError(unrevivable[0])
        return typed

    def _unrevivable_types(self, encoded: bytes) -> list[str]:
        """``module.Class`` of every value in ``encoded`` that loading would leave a dict.

        (An ext hook that raised would be reported by ormsgpack as a bare ValueError,
        so the hook collects instead.)
        """
        found: list[str] = []

        def check(code: int, data: bytes) -> None:
            value = ormsgpack.unpackb(data, ext_hook=check, option=_UNPACK_OPTION)
            if code in _EXT_WITHOUT_TYPE:
                return
            module, name = value[0], value[1]
            if code == EXT_METHOD_SINGLE_ARG:
                revivable = (module, name, value[3]) in SAFE_MSGPACK_METHODS
            else:
                revivable = (module, name) in self._revivable
            if not revivable:
                found.append(f"{module}.{name}")

        ormsgpack.unpackb(encoded, ext_hook=check, option=_UNPACK_OPTION)
        return found


_UNPACK_OPTION = ormsgpack.OPT_NON_STR_KEYS
_EXT_WITHOUT_TYPE = frozenset({EXT_DELTA_SNAPSHOT, EXT_NUMPY_ARRAY})


def strict_serializer(allowed: Iterable[tuple[str, str]] = ()) -> StrictSerializer:
    """A serializer that rebuilds only types langgraph and LangChain know to be safe.

    With no allow-list, a crafted row could name any importable callable and have it
    run on load; with an empty one, only langgraph's built-in safe types (messages,
    documents, datetimes, ...) are revived, and a value of any other type is refused
    when written (``StrictSerializer``). ``allowed`` adds the user's own trusted types
    (``Settings.serde_allow``).
    """
    return StrictSerializer(allowed)


def stamp_memory_event(
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
) -> tuple[RunnableConfig, CheckpointMetadata]:
    """Puts a memory operation's marker on the checkpoint that carries it.

    A checkpoint whose step wrote ``memory_event`` is the one that made the change,
    whether the write came from the ``apply_memory`` node of a run or from
    ``aupdate_state`` in ``tools.admin``; both therefore get the same metadata. A
    rewind's checkpoint also gets the target as its parent, so the fork is visible in
    the thread's history and in Studio.
    """
    if MEMORY_EVENT_CHANNEL not in new_versions:
        return config, metadata
    event = checkpoint["channel_values"].get(MEMORY_EVENT_CHANNEL)
    if not isinstance(event, dict):
        return config, metadata
    stamped: dict[str, Any] = {**metadata, "timestamp": event["timestamp"]}
    if event["kind"] == "forget":
        stamped["memory_cleared"] = True
        if event.get("reason"):
            stamped["reason"] = event["reason"]
    elif event["kind"] == "forget_details":  # counts only: the quotes are what is forgotten
        stamped["memory_redacted"] = int(event.get("count", 0))
        if event.get("erased"):
            stamped["memory_erased"] = True
        if event.get("reason"):  # already free of the quotes (``forget_details_update``)
            stamped["reason"] = event["reason"]
    else:
        stamped["rewound_to"] = event["target"]
        config = {
            **config,
            "configurable": {**config["configurable"], "checkpoint_id": event["target"]},
        }
    return config, stamped  # type: ignore[return-value]


def _storable(value: Any) -> Any:
    """``value`` with every string made storable in a JSONB column (see below)."""
    if isinstance(value, str):
        text = value.replace("\x00", "")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: replaced, as msgpack blobs do
            text = text.encode("utf-8", "replace").decode("utf-8")
        return text
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


RUN_METADATA_KEYS = frozenset({"run_id", "thread_id", "assistant_id", "graph_id"})
"""The run's ``configurable``/``metadata`` keys a checkpoint's metadata keeps.

langgraph itself puts ``source``, ``step`` and ``parents`` there, and memagent its
memory markers; from the run, the server's history view and Studio show the run
(``run_id``) and filter by assistant and graph, and ``DELETE_FOR_RUNS`` and
``ChatSession``'s resume find a run's checkpoints by ``run_id``.
"""


def storable_metadata(
    config: RunnableConfig, metadata: CheckpointMetadata
) -> tuple[RunnableConfig, CheckpointMetadata]:
    """The checkpoint's metadata, made storable, and a config that adds nothing to it.

    langgraph copies the run's ``metadata`` and ``configurable`` entries into the
    checkpoint's metadata (a JSONB column) and strips NUL only from top-level string
    values. A NUL in a key, or a lone surrogate anywhere (both can come from an API
    caller or a model), makes PostgreSQL refuse the whole checkpoint, so the turn
    fails. This does the library's merge here, cleans every key and string of it, and
    leaves out of the config what the merge already took (or could not store).

    Only the run's keys in ``RUN_METADATA_KEYS`` are merged: anything else a caller
    passes in a config (an e-mail address, a customer name) would otherwise be
    copied, in plain text, into every checkpoint of the run.
    """
    kept: RunnableConfig = {
        "metadata": {k: v for k, v in config.get("metadata", {}).items() if k in RUN_METADATA_KEYS},
        "configurable": {
            k: v for k, v in config.get("configurable", {}).items() if k in RUN_METADATA_KEYS
        },
    }
    merged = _storable(get_checkpoint_metadata(kept, metadata))
    configurable = {
        key: value
        for key, value in config.get("configurable", {}).items()
        if key in ("thread_id", "checkpoint_ns", "checkpoint_id") or key.startswith("__")
    }
    return {**config, "metadata": {}, "configurable": configurable}, merged


def memory_metadata(
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
) -> tuple[RunnableConfig, CheckpointMetadata]:
    """What a checkpoint is stored with: memory markers on, run data kept to what is needed."""
    config, metadata = stamp_memory_event(config, checkpoint, metadata, new_versions)
    return storable_metadata(config, metadata)


class MemoryMetadataMixin:
    """Adds ``memory_metadata`` to an ``InMemorySaver``'s ``put`` (its ``aput`` calls it)."""

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        config, metadata = memory_metadata(config, checkpoint, metadata, new_versions)
        return super().put(config, checkpoint, metadata, new_versions)  # type: ignore[misc]


class MemagentInMemorySaver(MemoryMetadataMixin, InMemorySaver):
    """langgraph's in-memory saver with memagent's memory metadata, for tests and demos."""


class MemagentSaver(AsyncPostgresSaver):
    """``AsyncPostgresSaver`` plus what memagent needs from its database.

    Everything the library does (checkpoints, history, ``aupdate_state``, pruning)
    keeps its API; what changes is how a conversation is stored: each message once,
    in ``memagent_messages``, and each version of the ``messages`` channel as a range
    list referring to those rows (``agent.store.messages``, docs/storage.md). The
    class also adds memory metadata, a race-free ``setup``, an atomic counted delete,
    purge, a cheap timeline, the audit log and per-thread leases.
    """

    conn: AsyncConnectionPool[AsyncConnection[DictRow]]

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConnection[DictRow]],
        conninfo: str,
        *,
        busy_timeout: float = 30.0,
        serde_allow: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(pool, serde=strict_serializer(serde_allow))
        self.conninfo = conninfo
        self.busy_timeout = busy_timeout
        self.lease_seconds = 600.0
        self._unreleased_leases: dict[str, str] = {}
        """Per thread, a lease of ours whose turn has ended but whose release failed."""
        self._messages = MessageCache()
        self._reserved: OrderedDict[str, SeqReservation] = OrderedDict()
        self.request_user: Callable[[], str | None] = lambda: None
        """Who asked for the current call, for the audit of calls the server makes
        directly (``adelete_thread``); the server's factory sets it."""
        self._lease_scope = uuid.uuid4().hex
        """Names this saver's leases in ``_HELD_LEASES``."""

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        check_config_thread(config)
        return await super().aget_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        check_config_thread(config)
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
        one pipeline) with two changes: the memory metadata, and the messages, of which
        only those not stored yet are written. Message rows go first in the pipeline,
        the range list next and the checkpoint last, so a crash part way leaves at most
        rows nothing refers to, never a checkpoint that refers to a missing row.
        """
        check_config_thread(config)
        config, metadata = memory_metadata(config, checkpoint, metadata, new_versions)
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
        async with self._cursor(pipeline=True) as cur:
            if message_rows:
                await cur.executemany(sql.INSERT_MESSAGE, message_rows)
            if blob_rows:
                await cur.executemany(self.UPSERT_CHECKPOINT_BLOBS_SQL, blob_rows)
            await cur.execute(
                self.UPSERT_CHECKPOINTS_SQL,
                (
                    thread_id,
                    checkpoint_ns,
                    checkpoint["id"],
                    configurable.get("checkpoint_id"),
                    Jsonb(stored),
                    Jsonb(get_serializable_checkpoint_metadata(config, metadata)),
                ),
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
        """The library's ``aput_writes``, encoding on the event loop.

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
        async with self._cursor(pipeline=True) as cur:
            await cur.executemany(query, params)

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
            block = max(count - len(taken), SEQ_BLOCK)
            async with self.conn.connection() as conn:
                cur = await conn.execute(sql.RESERVE_MESSAGE_SEQS, (thread_id, block))
                row = await cur.fetchone()
            assert row is not None  # an upsert with RETURNING always returns its row
            reservation = SeqReservation(row["last_seq"] - block + 1, row["last_seq"])
            self._reserved[thread_id] = reservation
            taken += reservation.take(count - len(taken))
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
        """The library's row decoding, plus range lists and large blobs off the loop.

        A ``messages`` range list becomes the list of its messages. The library
        decodes blobs on the event loop; for a long thread stored by an older release
        (one blob of thousands of messages) that would stall every other task on the
        loop for tens of milliseconds, so large blobs are decoded in a worker thread.
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
        row = {
            **value,
            "checkpoint": {**checkpoint, "channel_values": {**inline, **loaded}},
            "channel_values": blobs,
        }
        return await super()._load_checkpoint_tuple(row)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """The library's rebuild of channels from older versions, with range lists resolved.

        langgraph takes this path when a checkpoint lists a channel version it has no
        value for (a crafted or damaged row); its seed may then be a range list.
        """
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
        if current is not None:
            yield current
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
            token = _CURRENT_CONNECTION.set(None if pipeline else conn)
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
                _CURRENT_CONNECTION.reset(token)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """The library's prune, which also drops the message rows nothing refers to any more."""
        for thread_id in thread_ids:
            check_thread_id(str(thread_id))
        await super().aprune(thread_ids, strategy=strategy)
        async with self.conn.connection() as conn:
            for thread_id in thread_ids:
                await conn.execute(
                    sql.DELETE_UNREFERENCED_MESSAGES,
                    {"thread_id": str(thread_id), "ranges_type": RANGES_TYPE},
                )

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

    async def atimeline(self, thread_id: str, limit: int) -> list[TimelineEntry]:
        """The head's lineage as timeline entries, newest first, without message blobs."""
        check_thread_id(thread_id)
        async with self.conn.connection() as conn:
            cur = await conn.execute(sql.SELECT_TIMELINE, {"thread_id": thread_id, "limit": limit})
            rows = await cur.fetchall()
        entries = []
        for row in rows:
            turn_input = (
                self.serde.loads_typed((row["input_type"], row["input_blob"]))
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

    async def ahas_checkpoint(self, thread_id: str, checkpoint_id: str) -> bool:
        """Whether ``checkpoint_id`` is a root checkpoint of ``thread_id``."""
        check_thread_id(thread_id)
        async with self.conn.connection() as conn:
            cur = await conn.execute(sql.SELECT_ROOT_CHECKPOINT_EXISTS, (thread_id, checkpoint_id))
            return await cur.fetchone() is not None

    async def ahead_id(self, thread_id: str) -> str | None:
        """The id of the thread's head (newest root checkpoint); one index entry, no state."""
        check_thread_id(thread_id)
        async with self.conn.connection() as conn:
            cur = await conn.execute(sql.SELECT_HEAD_ID, (thread_id,))
            row = await cur.fetchone()
        return None if row is None else str(row["checkpoint_id"])

    async def atree_links(self, thread_id: str) -> list[dict[str, Any]]:
        """Every root checkpoint's id and parent, oldest first; time and metadata on points.

        Points are the checkpoints a tree shows (turns, forgets, rewinds); the others
        only connect them. No message blob is read.
        """
        check_thread_id(thread_id)
        async with self.conn.connection() as conn:
            cur = await conn.execute(sql.SELECT_TREE_LINKS, (thread_id,))
            return list(await cur.fetchall())

    async def aturn_inputs(self, thread_id: str, checkpoint_ids: list[str]) -> dict[str, Any]:
        """The user-message write of each given turn point, decoded, by checkpoint id."""
        check_thread_id(thread_id)
        if not checkpoint_ids:
            return {}
        async with self.conn.connection() as conn:
            cur = await conn.execute(sql.SELECT_TURN_INPUTS, (thread_id, checkpoint_ids))
            rows = await cur.fetchall()
        return await asyncio.to_thread(
            lambda: {
                row["checkpoint_id"]: self.serde.loads_typed((row["type"], row["blob"]))
                for row in rows
            }
        )

    async def athreads(self, limit: int = 100) -> list[dict[str, Any]]:
        """Threads with their checkpoint count and last activity, most recent first."""
        async with self.conn.connection() as conn:
            cur = await conn.execute(sql.SELECT_THREADS, (limit,))
            return list(await cur.fetchall())

    async def adelete_thread_counted(self, thread_id: str) -> dict[str, int]:
        """Deletes every row of a thread in one transaction; rows removed per table."""
        check_thread_id(thread_id)
        counts: dict[str, int] = {}
        async with self.conn.connection() as conn, conn.transaction():
            for table, statement in sql.DELETE_THREAD:
                cur = await conn.execute(statement, (thread_id,))
                counts[table] = cur.rowcount
        return counts

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
        async with self.conn.connection() as conn, conn.transaction():
            for _table, statement in sql.COPY_THREAD:
                await conn.execute(statement, params)

    async def adelete_for_runs(self, run_ids: Iterable[str]) -> None:
        """Removes what the given runs wrote, so their threads return to before them.

        The server calls this when a run is cancelled with ``multitask_strategy=
        "rollback"``. Checkpoints of other runs are untouched.
        """
        ids = [str(run_id) for run_id in run_ids]
        if not ids:
            return
        async with self.conn.connection() as conn, conn.transaction():
            cur = await conn.execute(sql.DELETE_FOR_RUNS, (ids,))
            for row in await cur.fetchall():
                await conn.execute(sql.PURGE_UNREFERENCED_BLOBS, (row["thread_id"],))
                await conn.execute(
                    sql.DELETE_UNREFERENCED_MESSAGES,
                    {"thread_id": row["thread_id"], "ranges_type": RANGES_TYPE},
                )

    async def apurge(self, thread_id: str) -> tuple[str | None, dict[str, int]]:
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
        check_thread_id(thread_id)
        counts = {
            "checkpoint_writes": 0,
            "checkpoints": 0,
            "checkpoint_blobs": 0,
            "memagent_messages": 0,
        }
        async with self.conn.connection() as conn, conn.transaction():
            row = await (await conn.execute(sql.SELECT_NEWEST_FORGET, (thread_id,))).fetchone()
            if row is None:
                return None, counts
            cut = row["checkpoint_id"]
            links = await (
                await conn.execute(sql.SELECT_ROOT_LINKS_FROM, (thread_id, cut))
            ).fetchall()
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
            cur = await conn.execute(
                sql.DELETE_UNREFERENCED_MESSAGES,
                {"thread_id": thread_id, "ranges_type": RANGES_TYPE},
            )
            counts["memagent_messages"] = cur.rowcount
        return cut, counts

    async def aredact(self, thread_id: str, quotes: Sequence[str]) -> dict[str, int]:
        """Replaces the quotes by the marker in every stored copy of a thread, at once.

        One transaction covers every checkpoint of every branch and namespace: the
        ``checkpoints`` rows (inline values and metadata), ``checkpoint_blobs``,
        ``checkpoint_writes`` and the message rows. A changed message gets a new row
        under a new number (see ``agent.store.messages``) and every range list that
        named the old row is rewritten to name the new one, so checkpoint and message
        ids stay as they were and every checkpoint still loads.

        Args:
            thread_id: The thread.
            quotes: Checked quotes (``agent.validation.check_quotes``), matched
                case-insensitively.

        Returns:
            Rows changed per table (``memagent_messages``: rows replaced).
        """
        check_thread_id(thread_id)
        pattern = quote_pattern(quotes)
        binary, text = candidate_patterns(quotes)
        params: dict[str, Any] = {
            "thread_id": thread_id,
            "binary": binary,
            "text": text,
            "ranges_type": RANGES_TYPE,
        }
        counts = dict.fromkeys(
            ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "memagent_messages"), 0
        )
        replaced: dict[int, int] = {}
        async with self.conn.connection() as conn, conn.transaction():
            rows = await (await conn.execute(sql.REDACT_SELECT_MESSAGES, params)).fetchall()
            changed = [
                (row, blob)
                for row in rows
                if (blob := scrub_typed(row["type"], row["blob"], pattern)) is not None
            ]
            if changed:
                cur = await conn.execute(sql.RESERVE_MESSAGE_SEQS, (thread_id, len(changed)))
                last = (await cur.fetchone() or {"last_seq": 0})["last_seq"]
                new_rows = []
                for offset, (row, blob) in enumerate(changed):
                    seq = last - len(changed) + 1 + offset
                    replaced[row["seq"]] = seq
                    new_rows.append((thread_id, seq, row["message_id"], row["type"], blob))
                async with conn.cursor() as cur:
                    await cur.executemany(sql.INSERT_MESSAGE, new_rows)
                await conn.execute(sql.REDACT_DELETE_MESSAGES, (thread_id, list(replaced)))
                counts["memagent_messages"] = len(changed)
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
            for row in await (await conn.execute(sql.REDACT_SELECT_BLOBS, params)).fetchall():
                if (blob := scrub_typed(row["type"], row["blob"], pattern)) is not None:
                    key = (thread_id, row["checkpoint_ns"], row["channel"], row["version"])
                    blob_updates.append((blob, *key))
            write_updates = []
            for row in await (await conn.execute(sql.REDACT_SELECT_WRITES, params)).fetchall():
                if (blob := scrub_typed(row["type"], row["blob"], pattern)) is not None:
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
                    counts[table] = len(updates)
        # A running turn may still hold a message as it was; matched against a replaced
        # row it would be stored as a reference to that (now deleted) row.
        self._messages.forget_rows(thread_id, replaced)
        return counts

    async def arecord_audit(
        self,
        operation: str,
        thread_id: str,
        *,
        surface: str,
        actor: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Appends one content-free line to the audit log."""
        check_thread_id(thread_id)
        async with self.conn.connection() as conn:
            await conn.execute(
                sql.INSERT_AUDIT, (operation, thread_id, surface, actor, Jsonb(detail or {}))
            )

    async def aaudit(self, thread_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest audit lines, for one thread or all."""
        async with self.conn.connection() as conn:
            cur = await conn.execute(sql.SELECT_AUDIT, {"thread_id": thread_id, "limit": limit})
            return list(await cur.fetchall())

    @asynccontextmanager
    async def thread_lease(
        self,
        thread_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a wait budget, not a cancel point
    ) -> AsyncIterator[None]:
        """Holds a thread for one turn or memory operation.

        A second holder waits (polling, holding no connection) up to ``timeout``
        seconds, then gets ``ThreadBusyError``. A lease outlives a crashed holder by
        at most ``lease_seconds``; one this saver could not release because the
        database was unreachable is released by its next lease on the thread. The
        lease is re-entrant: inside it (and in tasks started inside it) taking it
        again costs nothing (see ``_HELD_LEASES``).

        Raises:
            InvalidThreadIdError: The thread id cannot be stored.
            ThreadBusyError: The thread stayed busy for ``timeout`` seconds.
        """
        key = (self._lease_scope, check_thread_id(thread_id))
        held = _HELD_LEASES.get()
        if key in held:
            yield
            return
        holder = await self._acquire_lease(thread_id, timeout)
        _HELD_LEASES.set(held | {key})
        database_failed = False
        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError):
            database_failed = True
            raise
        finally:
            _HELD_LEASES.set(held)
            await self._release_lease(thread_id, holder, database_failed=database_failed)

    @contextmanager
    def blocking_thread_lease(self, thread_id: str) -> Iterator[None]:
        """``thread_lease`` for synchronous callers on another thread than the saver's loop.

        The pool belongs to the saver's loop, so the lease is taken and released there,
        as langgraph's own sync methods of this saver do.

        Raises:
            asyncio.InvalidStateError: Called on the loop's own thread, where waiting
                for the loop would hang forever.
            ThreadBusyError: The thread stayed busy for the busy timeout.
        """
        key = (self._lease_scope, check_thread_id(thread_id))
        held = _HELD_LEASES.get()
        if key in held:
            yield
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise asyncio.InvalidStateError(
                "A synchronous call on memagent's saver was made on the saver's own event "
                "loop thread, where it would wait for itself forever; use the async call "
                "(ainvoke, astream, aupdate_state) there."
            )
        holder = asyncio.run_coroutine_threadsafe(
            self._acquire_lease(thread_id, None), self.loop
        ).result()
        _HELD_LEASES.set(held | {key})
        try:
            yield
        finally:
            _HELD_LEASES.set(held)
            asyncio.run_coroutine_threadsafe(
                self._release_lease(thread_id, holder, database_failed=False), self.loop
            ).result()

    async def _acquire_lease(self, thread_id: str, timeout: float | None) -> str:  # noqa: ASYNC109
        """Takes the thread's lease row, waiting up to ``timeout``; returns the holder id."""
        timeout = self.busy_timeout if timeout is None else timeout
        holder = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            async with self.conn.connection() as conn:
                stale = self._unreleased_leases.get(thread_id)
                if stale is not None:  # ours, and its turn is over: nothing can still use it
                    await conn.execute(sql.RELEASE_THREAD_LEASE, (thread_id, stale))
                    if self._unreleased_leases.get(thread_id) == stale:
                        del self._unreleased_leases[thread_id]
                cur = await conn.execute(
                    sql.ACQUIRE_THREAD_LEASE, (thread_id, holder, self.lease_seconds)
                )
                if await cur.fetchone() is not None:
                    return holder
            if time.monotonic() >= deadline:
                raise ThreadBusyError(thread_id)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def _release_lease(self, thread_id: str, holder: str, *, database_failed: bool) -> None:
        """Gives the lease row back; if the database is gone, the next lease releases it."""
        # Right after a database failure, do not make the caller wait a second time.
        release_wait = 1.0 if database_failed else None
        try:
            async with self.conn.connection(timeout=release_wait) as conn:
                await conn.execute(sql.RELEASE_THREAD_LEASE, (thread_id, holder))
        except (psycopg.OperationalError, psycopg.InterfaceError):
            # Raising here would hide why the turn failed, and the row would keep the
            # thread busy for lease_seconds; this saver's next lease on the thread
            # releases it instead.
            logger.warning("could not release the lease on thread %r", thread_id)
            self._unreleased_leases[thread_id] = holder
