"""Per-thread leases: one turn or memory operation on a thread at a time, in any process.

A lease is a row of ``memagent_thread_leases`` (``agent.store.sql``). Unlike an
advisory lock it holds no connection while the model thinks, so a small pool serves
many threads at once, and it works behind PgBouncer in transaction mode. A holder
renews its row while it works (the heartbeat), so a turn longer than the lease is not
overtaken; a crashed holder's row expires after ``lease_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from agent.bridge import run_blocking
from agent.errors import ThreadBusyError
from agent.store import sql
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


class ThreadLeases:
    """The thread leases of one saver's pool.

    Args:
        pool: The saver's pool.
        busy_timeout: Seconds a second holder waits before ``ThreadBusyError``.
        lease_seconds: How long a lease row lasts without renewal; the holder renews
            it every third of that.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConnection[DictRow]],
        *,
        busy_timeout: float = 30.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self._pool = pool
        self.busy_timeout = busy_timeout
        self.lease_seconds = lease_seconds
        self._scope = uuid.uuid4().hex
        """Names these leases in ``_HELD_LEASES``."""
        self._unreleased: dict[str, str] = {}
        """Per thread, a lease of ours whose turn has ended but whose release failed."""

    @asynccontextmanager
    async def hold(
        self,
        thread_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a wait budget, not a cancel point
    ) -> AsyncIterator[None]:
        """Holds a thread for one turn or memory operation.

        A second holder waits (polling, holding no connection) up to ``timeout``
        seconds, then gets ``ThreadBusyError``. One this process could not release
        because the database was unreachable is released by its next lease on the
        thread. Inside the lease (and in tasks started inside it) taking it again
        costs nothing.

        Raises:
            InvalidThreadIdError: The thread id cannot be stored.
            ThreadBusyError: The thread stayed busy for ``timeout`` seconds.
        """
        key = (self._scope, check_thread_id(thread_id))
        held = _HELD_LEASES.get()
        if key in held:
            yield
            return
        holder = await self._acquire(thread_id, timeout)
        heartbeat = asyncio.create_task(self._renew_while_held(thread_id, holder))
        _HELD_LEASES.set(held | {key})
        database_failed = False
        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError):
            database_failed = True
            raise
        finally:
            # Not a token reset: the caller may close this in another context.
            _HELD_LEASES.set(held)
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self._release(thread_id, holder, database_failed=database_failed)

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

    async def _acquire(self, thread_id: str, timeout: float | None) -> str:  # noqa: ASYNC109
        """Takes the thread's lease row, waiting up to ``timeout``; returns the holder id."""
        timeout = self.busy_timeout if timeout is None else timeout
        holder = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            async with self._pool.connection() as conn:
                stale = self._unreleased.get(thread_id)
                if stale is not None:  # ours, and its turn is over: nothing can still use it
                    await conn.execute(sql.RELEASE_THREAD_LEASE, (thread_id, stale))
                    if self._unreleased.get(thread_id) == stale:
                        del self._unreleased[thread_id]
                cur = await conn.execute(
                    sql.ACQUIRE_THREAD_LEASE, (thread_id, holder, self.lease_seconds)
                )
                if await cur.fetchone() is not None:
                    return holder
            if time.monotonic() >= deadline:
                raise ThreadBusyError(thread_id)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def _renew_while_held(self, thread_id: str, holder: str) -> None:
        """Pushes the row's expiry forward every third of the lease, until cancelled.

        A failed renewal is logged and tried again next time: the row still has two
        thirds of its time left, and the turn's own database calls report the outage.
        """
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                async with self._pool.connection() as conn:
                    await conn.execute(
                        sql.RENEW_THREAD_LEASE, (self.lease_seconds, thread_id, holder)
                    )
            except (psycopg.OperationalError, psycopg.InterfaceError):
                logger.warning("could not renew the lease on thread %r", thread_id)

    async def _release(self, thread_id: str, holder: str, *, database_failed: bool) -> None:
        """Gives the lease row back; if the database is gone, the next lease releases it."""
        # Right after a database failure, do not make the caller wait a second time.
        release_wait = 1.0 if database_failed else None
        try:
            async with self._pool.connection(timeout=release_wait) as conn:
                await conn.execute(sql.RELEASE_THREAD_LEASE, (thread_id, holder))
        except (psycopg.OperationalError, psycopg.InterfaceError):
            # Raising here would hide why the turn failed, and the row would keep the
            # thread busy for lease_seconds; this process's next lease on the thread
            # releases it instead.
            logger.warning("could not release the lease on thread %r", thread_id)
            self._unreleased[thread_id] = holder
