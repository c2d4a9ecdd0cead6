"""A blocking facade over ``ChatSession`` for code that is not async.

The saver's connection pool belongs to one event loop, so the facade runs that loop
in a background thread and hands every call to it with
``asyncio.run_coroutine_threadsafe``. The same loop serves ``tools.admin``'s sync
twins: pass ``chat.saver`` to them from any thread but the loop's own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel

from agent.bridge import run_blocking
from agent.session import ChatSession
from agent.settings import Settings
from agent.store.saver import MemagentSaver

T = TypeVar("T")


class SyncChat:
    """``with SyncChat() as chat: chat.send("thread", "hello")``.

    Args:
        settings: Defaults to ``Settings.from_env()``.
        model: Overrides the configured model.
    """

    def __init__(self, settings: Settings | None = None, *, model: BaseChatModel | None = None):
        self._settings = settings
        self._model = model
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="memagent-loop", daemon=True
        )
        self._stack = AsyncExitStack()
        self._session: ChatSession | None = None

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        """Runs ``work`` on the facade's loop and waits for it (``agent.bridge``)."""
        return run_blocking(self._loop, work, instead="`await chat.session.send(...)`")

    def __enter__(self) -> SyncChat:
        running = threading.Event()
        self._loop.call_soon_threadsafe(running.set)
        self._thread.start()
        running.wait()
        try:
            self._session = self._call(
                self._stack.enter_async_context(ChatSession.open(self._settings, model=self._model))
            )
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._call(self._stack.aclose())
        finally:
            self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    @property
    def session(self) -> ChatSession:
        """The async session the facade drives (for its labels, graph and saver)."""
        if self._session is None:
            raise RuntimeError("SyncChat is not open: use it in a `with` block.")
        return self._session

    @property
    def saver(self) -> MemagentSaver:
        """The saver, for ``tools.admin``'s sync twins."""
        return self.session.saver

    def send(self, thread_id: str, text: str) -> str:
        """Runs one turn and returns the agent's reply (see ``ChatSession.send``)."""
        return self._call(self.session.send(thread_id, text))
