"""Where a turn's time goes: reading, decoding and writing checkpoints, from outside.

The bench wraps four of the saver's entry points *on the one saver instance it
measures* (instance attributes that shadow the class's methods; nothing in ``agent/``
changes and the wrappers are removed afterwards):

* ``aget_tuple``: the turn's read of its thread, decoding included;
* ``serde.loads_typed``: decoding a stored value (inside the read, or wherever the
  saver decodes; it may run on a worker thread);
* ``aput`` and ``aput_writes``: the turn's writes, encoding included;
* ``serde.dumps_typed``: encoding a value for storage (inside the writes).

A call made while another timed call of the same saver is running (a saver whose
``aput`` reads, say) is part of the outer call's time, not counted twice.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

PHASES = ("read", "decode", "write", "encode")


@dataclass
class PhaseClock:
    """Seconds spent per phase since the last ``reset``.

    Attributes:
        seconds: Per phase, the time of the outermost timed calls.
        calls: Per phase, how many of them there were.
    """

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    _active: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Starts a new turn's count."""
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.calls = dict.fromkeys(PHASES, 0)

    def _add(self, phase: str, seconds: float) -> None:
        with self._lock:
            self.seconds[phase] += seconds
            self.calls[phase] += 1

    def timed_async(
        self, phase: str, method: Callable[..., Any], outer: set[str]
    ) -> Callable[..., Any]:
        """``method`` (a coroutine function) timed as ``phase`` unless one of ``outer`` runs."""

        @functools.wraps(method)  # keeps the signature langgraph inspects
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._active & outer:
                return await method(*args, **kwargs)
            self._active.add(phase)
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                self._active.discard(phase)
                self._add(phase, time.perf_counter() - started)

        return wrapper

    def timed_sync(self, phase: str, method: Callable[..., Any]) -> Callable[..., Any]:
        """``method`` timed as ``phase`` on whichever thread it runs."""

        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self._add(phase, time.perf_counter() - started)

        return wrapper


@contextmanager
def instrumented(saver: Any) -> Iterator[PhaseClock]:
    """Times ``saver``'s reads, writes and (de)serialization until the block ends."""
    clock = PhaseClock()
    io = {"read", "write"}
    patches: list[tuple[Any, str, Callable[..., Any]]] = [
        (saver, "aget_tuple", clock.timed_async("read", saver.aget_tuple, io)),
        (saver, "aput", clock.timed_async("write", saver.aput, io)),
        (saver, "aput_writes", clock.timed_async("write", saver.aput_writes, io)),
        (saver.serde, "loads_typed", clock.timed_sync("decode", saver.serde.loads_typed)),
        (saver.serde, "dumps_typed", clock.timed_sync("encode", saver.serde.dumps_typed)),
    ]
    shadowed = [(owner, name, vars(owner).get(name)) for owner, name, _ in patches]
    for owner, name, wrapper in patches:
        setattr(owner, name, wrapper)
    try:
        yield clock
    finally:
        for owner, name, before in shadowed:
            if before is None:
                delattr(owner, name)  # the class's method shows through again
            else:
                setattr(owner, name, before)
