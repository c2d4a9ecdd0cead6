"""Per-thread leases: one turn or memory operation on a thread at a time, in any process.

A lease is a row of ``memagent_thread_leases`` (``agent.store.sql``). Unlike an
advisory lock it holds no connection while the model thinks, so a small pool serves
many threads at once, and it works behind PgBouncer in transaction mode. A holder
renews its row while it works (the heartbeat), so a turn longer than the lease is not
overtaken; a crashed holder's row expires after ``lease_seconds``.

A lease costs no round trip of its own on a turn: a run's lease is taken in the same
pipeline as the run's first read (``take_reading``), and every lease is released in
the same pipeline as the holder's last queued writes (``agent.store.writebehind``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from agent.bridge import run_blocking
from agent.errors import ThreadBusyError
from agent.store import sql
from agent.store.writebehind import Statement, WriteBehind
from agent.validation import check_thread_id

logger = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 600.0
"""How long a lease outlives a holder that stopped renewing it (a crashed process)."""

_HELD_LEASES: ContextVar[frozenset[tuple[str, str]]] = ContextVar(
    "memagent_held_leases", default=frozenset()
)
"""(leases, thread) of every thread lease the current task holds, and its child tasks.

Makes ``ThreadLeases.hold`` re-entrant: ``ChatSession`` holds the lease and runs the
graph, which takes it too; a graph node or tool that calls ``tools.admin`` runs in a
child task of the run. Without this each would wait for itself until the busy timeout.
"""


@dataclass
class _Lease:
    """One holder's lease on a thread; not ``taken`` yet while it waits for its first read."""

    thread_id: str
    holder: str
    deadline: float
    taken: bool = False
    heartbeat: asyncio.Task[None] | None = None
    delay: float = 0.01
    """The next wait before trying again, doubling up to a quarter second."""


_FIRST_READ_LEASES: ContextVar[Mapping[tuple[str, str], _Lease]] = ContextVar(
    "memagent_first_read_leases", default=MappingProxyType({})
)
"""The current task's leases that its first read of the thread takes (``hold(...,
with_first_read=True)``), by the same keys as ``_HELD_LEASES``."""


class ThreadLeases:
    """The thread leases of one saver's pool.

    Args:
        pool: The saver's pool.
        writes: The saver's queued writes, sent with a lease's release.
        busy_timeout: Seconds a second holder waits before ``ThreadBusyError``.
        lease_seconds: How long a lease row lasts without renewal; the holder renews
            it every third of that.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConnection[DictRow]],
        writes: WriteBehind,
        *,
        busy_timeout: float = 30.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self._pool = pool
        self._writes = writes
        self.busy_timeout = busy_timeout
        self.lease_seconds = lease_seconds
        self._scope = uuid.uuid4().hex
        """Names these leases in ``_HELD_LEASES``."""
        self._unreleased: dict[str, str] = {}
        """Per thread, a lease of ours whose turn has ended but whose release failed."""

    def holds(self, thread_id: str) -> bool:
        """Whether the current task holds the thread's lease, taken (so may queue writes)."""
        key = (self._scope, thread_id)
        if key not in _HELD_LEASES.get():
            return False
        lease = _FIRST_READ_LEASES.get().get(key)
        return lease is None or lease.taken

    def waiting_for_first_read(self, thread_id: str) -> bool:
        """Whether the current task's lease on the thread is taken by its next read."""
        lease = _FIRST_READ_LEASES.get().get((self._scope, thread_id))
        return lease is not None and not lease.taken

    @asynccontextmanager
    async def hold(
        self,
        thread_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a wait budget, not a cancel point
        with_first_read: bool = False,
    ) -> AsyncIterator[None]:
        """Holds a thread for one turn or memory operation.

        A second holder waits (polling, holding no connection) up to ``timeout``
        seconds, then gets ``ThreadBusyError``. One this process could not release
        because the database was unreachable is released by its next lease on the
        thread. Inside the lease (and in tasks started inside it) taking it again
        costs nothing. With ``with_first_read`` (a graph run, whose first database
        call is the read of its thread) the lease is taken by that read, in its round
        trip (``take_reading``), and any write before it takes the lease first
        (``take_before_write``).

        Raises:
            InvalidThreadIdError: The thread id cannot be stored.
            ThreadBusyError: The thread stayed busy for ``timeout`` seconds.
        """
        key = (self._scope, check_thread_id(thread_id))
        held = _HELD_LEASES.get()
        if key in held:
            yield
            return
        timeout = self.busy_timeout if timeout is None else timeout
        lease = _Lease(thread_id, uuid.uuid4().hex, time.monotonic() + timeout)
        waiting = _FIRST_READ_LEASES.get()
        if with_first_read:
            _FIRST_READ_LEASES.set({**waiting, key: lease})
        else:
            await self._take(lease)
        _HELD_LEASES.set(held | {key})
        failed = database_failed = False
        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError):
            failed = database_failed = True
            raise
        except BaseException:
            failed = True
            raise
        finally:
            # Not a token reset: the caller may close this in another context.
            _HELD_LEASES.set(held)
            _FIRST_READ_LEASES.set(waiting)
            if lease.heartbeat is not None:
                lease.heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lease.heartbeat
            if lease.taken:
                await self._release(lease, failed=failed, database_failed=database_failed)

    @contextmanager
    def blocking_hold(self, thread_id: str, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        """``hold`` for synchronous callers on another thread than the pool's loop.

        Raises:
            asyncio.InvalidStateError: Called on the loop's own thread, where waiting
                for the loop would hang forever.
            ThreadBusyError: The thread stayed busy for the busy timeout.
        """
        key = (self._scope, check_thread_id(thread_id))
        held = _HELD_LEASES.get()
        if key in held:
            yield
            return
        lease = self.hold(thread_id)
        instead = "the async call (ainvoke, astream, aupdate_state)"
        run_blocking(loop, lease.__aenter__(), instead=instead)
        _HELD_LEASES.set(held | {key})
        try:
            yield
        finally:
            _HELD_LEASES.set(held)
            run_blocking(loop, lease.__aexit__(None, None, None), instead=instead)

    async def take_before_write(self, thread_id: str) -> None:
        """Takes the current task's first-read lease now, if a write comes before the read."""
        lease = _FIRST_READ_LEASES.get().get((self._scope, thread_id))
        if lease is not None and not lease.taken:
            await self._take(lease)

    async def take_reading(
        self, thread_id: str, query: str, params: tuple[Any, ...]
    ) -> DictRow | None:
        """Takes the current task's first-read lease and runs ``query``, in one round trip.

        The lease's insert and the read are two statements of one pipeline: the read
        takes its snapshot after the insert returned, so when the lease was free it
        sees everything the previous holder wrote (released in the same transaction
        as its last writes). When the lease is busy the read is thrown away, and both
        are tried again after a wait.

        Returns:
            The read's first row (``None``: no row).

        Raises:
            ThreadBusyError: The thread stayed busy for the lease's timeout.
        """
        lease = _FIRST_READ_LEASES.get()[(self._scope, thread_id)]
        while True:
            async with self._pool.connection() as conn:
                async with conn.pipeline():
                    stale = await self._release_stale(conn, thread_id)
                    taken = await conn.execute(*self._acquire_statement(lease))
                    read = conn.cursor(binary=True)
                    await read.execute(query, params)
                self._forget_stale(thread_id, stale)
                if await taken.fetchone() is not None:
                    self._taken(lease)
                    return await read.fetchone()
            await self._wait_or_give_up(lease)

    async def _take(self, lease: _Lease) -> None:
        """Takes the lease row, waiting up to the lease's deadline."""
        while True:
            async with self._pool.connection() as conn:
                stale = await self._release_stale(conn, lease.thread_id)
                self._forget_stale(lease.thread_id, stale)
                cur = await conn.execute(*self._acquire_statement(lease))
                if await cur.fetchone() is not None:
                    self._taken(lease)
                    return
            await self._wait_or_give_up(lease)

    def _acquire_statement(self, lease: _Lease) -> tuple[str, tuple[str, str, float]]:
        return sql.ACQUIRE_THREAD_LEASE, (lease.thread_id, lease.holder, self.lease_seconds)

    async def _release_stale(self, conn: AsyncConnection[DictRow], thread_id: str) -> str | None:
        """Releases a lease of ours whose turn is over but whose release failed; its holder.

        In a pipeline the release is only sent; ``_forget_stale`` once it went through.
        """
        stale = self._unreleased.get(thread_id)
        if stale is not None:
            await conn.execute(sql.RELEASE_THREAD_LEASE, (thread_id, stale))
        return stale

    def _forget_stale(self, thread_id: str, stale: str | None) -> None:
        if stale is not None and self._unreleased.get(thread_id) == stale:
            del self._unreleased[thread_id]

    def _taken(self, lease: _Lease) -> None:
        lease.taken = True
        lease.heartbeat = asyncio.get_running_loop().create_task(self._renew_while_held(lease))

    async def _wait_or_give_up(self, lease: _Lease) -> None:
        if time.monotonic() >= lease.deadline:
            raise ThreadBusyError(lease.thread_id)
        await asyncio.sleep(lease.delay)
        lease.delay = min(lease.delay * 2, 0.25)

    async def _renew_while_held(self, lease: _Lease) -> None:
        """Pushes the row's expiry forward every third of the lease, until cancelled.

        A failed renewal is logged and tried again next time: the row still has two
        thirds of its time left, and the turn's own database calls report the outage.
        """
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                async with self._pool.connection() as conn:
                    await conn.execute(
                        sql.RENEW_THREAD_LEASE,
                        (self.lease_seconds, lease.thread_id, lease.holder),
                    )
            except (psycopg.OperationalError, psycopg.InterfaceError):
                logger.warning("could not renew the lease on thread %r", lease.thread_id)

    async def _release(self, lease: _Lease, *, failed: bool, database_failed: bool) -> None:
        """Sends the holder's queued writes and gives the lease row back, in one round trip.

        Writes that cannot be sent are an error of the holder's call, raised here
        unless the holder already failed (its error says why; this one would hide
        it). A release that fails alone is only logged; this process's next lease on
        the thread releases the row.
        """
        # Right after a database failure, do not make the caller wait a second time.
        release_wait = 1.0 if database_failed else None
        release: Statement = (sql.RELEASE_THREAD_LEASE, [(lease.thread_id, lease.holder)])
        had_writes = self._writes.pending(lease.thread_id)
        try:
            await self._writes.drain(lease.thread_id, [release], timeout=release_wait)
        except psycopg.Error:
            self._unreleased[lease.thread_id] = lease.holder
            if had_writes and not database_failed:
                with contextlib.suppress(psycopg.Error):  # the writes failed, maybe not this
                    await self._writes.drain(lease.thread_id, [release], timeout=release_wait)
                    self._forget_stale(lease.thread_id, lease.holder)
            if had_writes and not failed:
                raise
            # Raising here would hide why the turn failed, or fail a turn that was
            # saved; the row would keep the thread busy for lease_seconds, so this
            # process's next lease on the thread releases it instead.
            logger.warning("could not release the lease on thread %r", lease.thread_id)
