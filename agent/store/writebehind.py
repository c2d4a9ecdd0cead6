"""Writes of a leased turn, sent behind it: several checkpoints per round trip.

langgraph writes a plain turn as three checkpoints and two sets of writes, each
``aput``/``aput_writes`` a round trip and a commit of its own, one after another
(its ``async`` durability runs each put after the previous one finished). Inside a
thread lease nothing else writes the thread, so the saver may queue a turn's writes
and send them in order, several per pipeline (one transaction each): the queue is
sent a few milliseconds after its first write (``SEND_DELAY``; while the model thinks, the
input is stored as it is today), and whatever is still queued when the lease ends
goes in the same pipeline as the lease's release.

Every read of the thread through the saver first sends what is queued for it, so a
turn, a tool or a memory operation always reads its own writes. A failed send is
raised by the next read of the thread or by the lease's release (docs/SPEC.md,
"Decisions": write-behind).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

Statement = tuple[str, Sequence[Any]]
"""A query and the parameter sets to run it with (``executemany``)."""

SEND_DELAY = 0.005
"""Seconds the sender waits, after a thread's first queued write, before taking the queue.

A turn queues its input checkpoint, the first step's writes and the next checkpoint
within a fraction of a millisecond, and a short turn ends within a few; waiting that
long (a timer, not a busy loop: spinning the loop cost a millisecond of CPU per turn)
lets them share a round trip, most often the lease's release, while a turn that waits
for its model has its input stored a few milliseconds in.
"""


@dataclass
class _Queue:
    """One thread's statements not sent yet, and the one task that sends them."""

    statements: list[Statement] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while a batch is taken and sent, so batches reach the server in order."""
    sender: asyncio.Task[None] | None = None
    error: BaseException | None = None
    """The first failure of the sender, raised by the next ``drain``."""


class WriteBehind:
    """Per thread, the queued writes of the leased turns of one saver."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[DictRow]]) -> None:
        self._pool = pool
        self._queues: dict[str, _Queue] = {}

    def queue(self, thread_id: str, statements: Iterable[Statement]) -> None:
        """Queues statements for the thread, to be sent in order behind the caller."""
        queue = self._queues.setdefault(thread_id, _Queue())
        queue.statements.extend(s for s in statements if s[1])
        if queue.sender is None:
            # A context of its own: the sender must not see the caller's lease or
            # cursor (contextvars), and outlives neither the queue nor the saver.
            queue.sender = asyncio.get_running_loop().create_task(
                self._send_behind(thread_id, queue), context=contextvars.Context()
            )

    def pending(self, thread_id: str | None = None) -> bool:
        """Whether anything is queued or being sent (for one thread, or any)."""
        if thread_id is None:
            return bool(self._queues)
        return thread_id in self._queues

    async def drain(
        self,
        thread_id: str,
        then: Sequence[Statement] = (),
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the pool's wait, not a cancel point
    ) -> None:
        """Sends what is queued for the thread, with ``then`` in the same pipeline.

        Raises:
            psycopg.Error: Sending failed, now or earlier in the background; the
                statements are not queued any more either way.
        """
        queue = self._queues.get(thread_id)
        if queue is None:
            if then:
                await self._send(list(then), timeout)
            return
        try:
            async with queue.lock:
                batch, queue.statements = [*queue.statements, *then], []
                error, queue.error = queue.error, None
                if batch:
                    await self._send(batch, timeout)
        finally:
            self._forget_if_done(thread_id, queue)
        if error is not None:
            raise error

    async def drain_all(self) -> None:
        """Sends every thread's queue (for reads that span threads)."""
        for thread_id in list(self._queues):
            await self.drain(thread_id)

    async def _send_behind(self, thread_id: str, queue: _Queue) -> None:
        await asyncio.sleep(SEND_DELAY)
        try:
            while queue.statements:
                async with queue.lock:
                    batch, queue.statements = queue.statements, []
                    try:
                        if batch:
                            await self._send(batch, None)
                    except Exception as error:  # raised by the next drain
                        if queue.error is None:
                            queue.error = error
        finally:
            queue.sender = None
            self._forget_if_done(thread_id, queue)

    def _forget_if_done(self, thread_id: str, queue: _Queue) -> None:
        if (
            not queue.statements
            and queue.sender is None
            and queue.error is None
            and not queue.lock.locked()
            and self._queues.get(thread_id) is queue
        ):
            del self._queues[thread_id]

    async def _send(self, batch: list[Statement], timeout: float | None) -> None:  # noqa: ASYNC109
        """One pipeline (one transaction, one round trip) of every statement of ``batch``."""
        async with self._pool.connection(timeout=timeout) as conn:
            if psycopg.Pipeline.is_supported():
                async with conn.pipeline(), conn.cursor(binary=True) as cur:
                    for query, params in batch:
                        await cur.executemany(query, params)
            else:
                async with conn.transaction(), conn.cursor(binary=True) as cur:
                    for query, params in batch:
                        await cur.executemany(query, params)
