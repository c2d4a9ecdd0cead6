"""``ThreadStore``: what memagent adds to a langgraph saver, as one protocol.

The memory operations and their readers need more than langgraph's checkpoint API:
a timeline that reads no message blob, the links of every branch, the audit log,
per-thread leases and the erasures. ``agent.store.saver.MemagentSaver`` is the one
backend; code that may also run on a plain langgraph saver (the tools inside a
user's own graph, ``read_timeline``) checks ``isinstance(saver, ThreadStore)`` and
falls back to langgraph's API, rather than probing for single methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from langchain_core.messages import BaseMessage

from agent.memory.entries import TimelineEntry


@runtime_checkable
class ThreadStore(Protocol):
    """The thread-level reads and writes memagent needs besides langgraph's saver API."""

    async def atimeline(self, thread_id: str, limit: int) -> list[TimelineEntry]:
        """The head's lineage as timeline entries, newest first, reading no message."""
        ...

    async def atree_links(self, thread_id: str) -> list[dict[str, Any]]:
        """Every root checkpoint's id and parent, oldest first; time and metadata on points."""
        ...

    async def aturn_inputs(self, thread_id: str, checkpoint_ids: list[str]) -> dict[str, Any]:
        """The user message of each given turn point, by checkpoint id."""
        ...

    async def amessages_by_id(
        self, thread_id: str, message_ids: Sequence[str]
    ) -> list[BaseMessage]:
        """Every stored version of the given messages (one per row), oldest row first."""
        ...

    async def ahead_id(self, thread_id: str) -> str | None:
        """The id of the thread's newest root checkpoint, or ``None`` for no thread."""
        ...

    async def athreads(self, limit: int = 100) -> list[dict[str, Any]]:
        """Threads with their checkpoint count and last activity, most recent first."""
        ...

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
        ...

    async def aaudit(self, thread_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest audit lines, for one thread or all."""
        ...

    def thread_lease(
        self,
        thread_id: str,
        *,
        timeout: float | None = None,
        with_first_read: bool = False,
    ) -> AbstractAsyncContextManager[None]:
        """Holds the thread for one turn or memory operation (re-entrant); with
        ``with_first_read``, taken by the holder's first read of the thread."""
        ...

    def blocking_thread_lease(self, thread_id: str) -> AbstractContextManager[None]:
        """``thread_lease`` for synchronous callers on another thread."""
        ...

    async def aredact(self, thread_id: str, quotes: Sequence[str]) -> dict[str, int]:
        """Erases the quotes from every stored copy of the thread; rows changed per table."""
        ...

    async def adelete_thread_counted(self, thread_id: str) -> dict[str, int]:
        """Deletes every row of the thread in one transaction; rows removed per table."""
        ...

    async def apurge(self, thread_id: str) -> tuple[str | None, dict[str, int]]:
        """Erases everything older than the newest forget; the cut and rows removed."""
        ...

    def sharing_cached_messages(self) -> AbstractContextManager[None]:
        """Reads in this block may hand out cached messages themselves (see the saver)."""
        ...
