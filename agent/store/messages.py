"""Each message stored once: the message rows, the range lists that refer to them, the cache.

langgraph stores a channel's whole value at every new version, so a thread of n
messages stores O(n²) bytes of messages. memagent stores a ``messages`` version as a
*range list* instead: ``[[first_seq, last_seq], ...]``, the thread's message rows
(``memagent_messages``, one per message version, numbered per thread) that make up
the list, in order. An append-only conversation is one range; a forget starts a new
one; a rewind reuses the target's ranges; a message replaced under the same id is a
new row. See docs/storage.md for the design and its measurements.

Two invariants keep every reader right, in every process: a row's content never
changes under its number (redact writes new rows), and a number is never reused
(numbers come from one database sequence for all threads, so not even a thread
deleted and made again gets one twice). So a decoded message cached under
``(thread_id, seq)`` is valid for as long as anyone can refer to it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from langchain_core.messages import BaseMessage

RANGES_TYPE = "memagent_ranges"
"""``checkpoint_blobs.type`` of a row holding a range list instead of a serialised value."""

MESSAGES_CHANNEL = "messages"
"""The channel stored as range lists; any other channel is stored as langgraph does."""

CACHE_MESSAGES = 50_000
"""Decoded messages kept per saver: about 25 threads of 1000 turns, tens of MB."""

Ranges = list[list[int]]


def encode_ranges(seqs: Sequence[int]) -> bytes:
    """The range list of ``seqs`` (in list order) as JSON bytes, readable from SQL too."""
    ranges: Ranges = []
    for seq in seqs:
        if ranges and ranges[-1][1] + 1 == seq:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return json.dumps(ranges, separators=(",", ":")).encode()


def decode_ranges(blob: bytes) -> list[int]:
    """The message numbers a range list stands for, in list order."""
    return [seq for first, last in json.loads(blob) for seq in range(first, last + 1)]


def storable_messages(value: Any) -> TypeGuard[list[BaseMessage]]:
    """Whether a ``messages`` value can be stored as a range list.

    Only a list of LangChain messages that all carry an id (``add_messages`` gives
    every message one); anything else in a channel of that name (a user's own graph)
    is stored as langgraph stores it.
    """
    return isinstance(value, list) and all(
        isinstance(message, BaseMessage) and message.id for message in value
    )


def detached(message: BaseMessage) -> BaseMessage:
    """A copy of a cached message that no caller can corrupt the cache through.

    A shallow copy shares the message's dicts and lists (content blocks, tool calls,
    ``additional_kwargs``), so a node that changed one in place would change the
    cached original and every later reader's copy. Every dict and list inside is
    copied (most are empty: a new one is cheaper than a copy); strings and numbers are
    immutable and shared. This is pydantic's own ``__copy__`` with the containers
    copied as it goes, at about half the cost of ``copy.copy`` followed by the
    containers, and a third of ``copy.deepcopy``, which costs as much as decoding.
    """
    fields = {}
    for name, value in message.__dict__.items():
        if value.__class__ is dict:
            value = _copy_containers(value) if value else {}
        elif value.__class__ is list:
            value = _copy_containers(value) if value else []
        fields[name] = value
    copied = _new_object(message.__class__)
    _set_attribute(copied, "__dict__", fields)
    _set_attribute(copied, "__pydantic_fields_set__", set(message.__pydantic_fields_set__))
    extra = message.__pydantic_extra__
    _set_attribute(copied, "__pydantic_extra__", None if extra is None else _copy_containers(extra))
    private = message.__pydantic_private__
    _set_attribute(copied, "__pydantic_private__", None if private is None else dict(private))
    return copied


_new_object = object.__new__
_set_attribute = object.__setattr__


def _copy_containers(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy_containers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_containers(item) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class RangeList:
    """A range list the serializer met where langgraph expected a value.

    The saver resolves range lists itself when it loads a checkpoint; this stands in
    for one on langgraph's other read path (rebuilding a channel from an older
    version, ``aget_delta_channel_history``) until the saver resolves it there too.
    """

    seqs: list[int]


class MessageCache:
    """Decoded message rows, least recently used first out, with an index by message id.

    The index lets a write find the row an incoming message already has (same id,
    equal content) without a query; a message changed since it was read compares
    unequal and becomes a new row, so nothing a node did in place is lost or leaks.
    """

    def __init__(self, max_messages: int = CACHE_MESSAGES) -> None:
        self.max_messages = max_messages
        self._rows: OrderedDict[tuple[str, int], BaseMessage] = OrderedDict()
        self._by_id: dict[tuple[str, str], set[int]] = {}

    def get(self, thread_id: str, seq: int) -> BaseMessage | None:
        """The cached message of a row, or ``None``; a hit counts as a use."""
        key = (thread_id, seq)
        message = self._rows.get(key)
        if message is not None:
            self._rows.move_to_end(key)
        return message

    def add(self, thread_id: str, seq: int, message: BaseMessage) -> None:
        """Caches a row's message; the caller must not keep or hand out ``message``."""
        key = (thread_id, seq)
        if key in self._rows:
            self._rows.move_to_end(key)
            return
        self._rows[key] = message
        self._by_id.setdefault((thread_id, str(message.id)), set()).add(seq)
        while len(self._rows) > self.max_messages:
            (old_thread, old_seq), old = self._rows.popitem(last=False)
            seqs = self._by_id.get((old_thread, str(old.id)))
            if seqs is not None:
                seqs.discard(old_seq)
                if not seqs:
                    del self._by_id[(old_thread, str(old.id))]

    def find(self, thread_id: str, message: BaseMessage) -> int | None:
        """The row holding exactly ``message`` (same id, equal content), if cached."""
        for seq in self._by_id.get((thread_id, str(message.id)), ()):
            cached = self._rows[(thread_id, seq)]
            if cached is message:  # handed out as itself (``sharing_cached_messages``)
                return seq
            # The fields alone: pydantic's ``==`` compares the same plus bookkeeping,
            # at five times the cost, for every message of the thread at every write.
            if type(cached) is type(message) and cached.__dict__ == message.__dict__:
                return seq
        return None

    def forget_thread(self, thread_id: str) -> None:
        """Drops every cached row of a thread (erased: its numbers may come back)."""
        self.forget_rows(thread_id, [seq for (thread, seq) in self._rows if thread == thread_id])

    def forget_rows(self, thread_id: str, numbers: Iterable[int]) -> None:
        """Drops some rows of a thread, e.g. those a redact replaced by new ones."""
        for key in [(thread_id, seq) for seq in numbers if (thread_id, seq) in self._rows]:
            message = self._rows.pop(key)
            seqs = self._by_id.get((thread_id, str(message.id)))
            if seqs is not None:
                seqs.discard(key[1])
                if not seqs:
                    del self._by_id[(thread_id, str(message.id))]


@dataclass
class SeqReservation:
    """Message numbers this saver has reserved for a thread but not used yet.

    Numbers are allocated in SQL (blocks from one sequence, so processes never
    collide) a block at a time, so most writes need no extra round trip and a
    thread's rows stay consecutive, which keeps its range lists short.
    """

    next_seq: int
    last_seq: int

    @property
    def left(self) -> int:
        """How many numbers remain."""
        return self.last_seq - self.next_seq + 1

    def take(self, count: int) -> list[int]:
        """Uses ``count`` numbers (at most ``left``)."""
        taken = list(range(self.next_seq, self.next_seq + count))
        self.next_seq += count
        return taken


def blocks_needed(count: int, block: int) -> int:
    """How many blocks of ``block`` numbers hold ``count`` numbers."""
    return -(-count // block)


def take_from_blocks(
    firsts: Iterable[int], block: int, count: int
) -> tuple[list[int], SeqReservation]:
    """``count`` numbers from freshly reserved blocks, and what is left of the last one.

    Blocks of one request need not be adjacent (another caller may take one in
    between), so the numbers are each block in turn; all but the last block are used
    whole, so what is left is one run of numbers.
    """
    numbers = [first + offset for first in sorted(firsts) for offset in range(block)]
    left = numbers[count:]
    last = numbers[-1]
    return numbers[:count], SeqReservation(left[0] if left else last + 1, last)
