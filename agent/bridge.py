"""Blocking calls into an event loop that runs on another thread.

The saver's connection pool belongs to the loop it was opened on, so a synchronous
caller (``tools.admin``'s sync twins, ``SyncChat``, langgraph's sync ``update_state``
on the compiled graph) must hand its coroutine to that loop and wait. On the loop's
own thread that wait could never end, and on a stopped loop nothing would ever run
it: both are refused here at once, with what to call instead. This is the one copy
of that guard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_blocking(
    loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, T], *, instead: str
) -> T:
    """Runs ``work`` on ``loop`` from another thread and returns its result.

    Args:
        loop: The loop that owns the resources ``work`` uses.
        work: The coroutine; closed unrun when refused.
        instead: What to call on the loop's own thread, for the error message
            (e.g. "`await tools.admin.aforget(...)`").

    Raises:
        asyncio.InvalidStateError: Called on ``loop``'s own thread, or ``loop`` is not
            running (nothing would ever run ``work``).
    """
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        work.close()
        raise asyncio.InvalidStateError(
            "A blocking memagent call was made on its event loop's own thread, where it "
            f"would wait for itself forever. Use {instead} there instead."
        )
    if loop.is_closed() or not loop.is_running():
        work.close()
        raise asyncio.InvalidStateError(
            "A blocking memagent call needs the saver's event loop, which is not running "
            "(was the saver opened in an asyncio.run() that has ended?). Keep the loop "
            f"running, e.g. with agent.sync.SyncChat, or use {instead} inside it."
        )
    return asyncio.run_coroutine_threadsafe(work, loop).result()
