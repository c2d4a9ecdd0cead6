"""Redact reaches summaries: every stored copy of a summary made from an erased message.

docs/SPEC.md, "Context budget and compaction": after ``redact`` no row holds a summary
made from the erased text. A summary may restate a detail in other words ("twelve Main
Street" for "12 Main St"), so the quote's match cannot find it; what it covers can
(``agent.memory.summary.SummaryChains``: a summary stands for the messages it replaced
and, through its link, for everything its predecessor stood for). ``erasure.redact``
takes the message ids of the rows the quotes matched, before it scrubs them, and this
module finds the summaries made from any of them, directly or through their chains
(``find_summary_markers``), and replaces every stored copy by the marker
(``removed_summary``): their message rows (as new rows, like any redacted row), and the
message lists inside pending writes (a compaction step's, those of
``aupdate_state``, a rewind's) and older releases' blobs, which are decoded with the
saver's serializer, changed and encoded again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg import AsyncConnection
from psycopg.rows import DictRow

from agent.memory.summary import (
    SUMMARY_KEY,
    SummaryChains,
    is_removed_summary,
    is_summary,
    removed_summary,
)
from agent.store import sql

Connection = AsyncConnection[DictRow]

SUMMARY_LIKE = "%" + SUMMARY_KEY.replace("_", "\\_") + "%"
"""A ``LIKE`` pattern for the stored values that may hold a summary (its marking key)."""

MESSAGE_TYPE = "msgpack"
"""The only serialised form that can hold a message: the strict serializer never pickles."""


@dataclass
class SummaryMarkers:
    """The summaries a redact replaces by markers, and the marker rows it writes.

    Attributes:
        serde: The saver's serializer, to decode and encode values holding summaries.
        by_id: The marker of each summary made from an erased message, by message id.
        rows: Summary message rows to replace, by row number: the row and the
            marker's blob (``erasure.redact`` writes it as a new row).
    """

    serde: SerializerProtocol
    by_id: dict[str, BaseMessage] = field(default_factory=dict)
    rows: dict[int, tuple[DictRow, bytes]] = field(default_factory=dict)

    def replace(self, type_: str, blob: bytes | None) -> bytes | None:
        """A stored value with each of these summaries in it replaced; ``None`` if none is.

        Only a msgpack value can hold a message; it is decoded, changed where a summary
        sits (in any list, tuple or dict) and encoded again, so it loads as before.
        """
        if not self.by_id or blob is None or type_ != MESSAGE_TYPE:
            return None
        value = self.serde.loads_typed((type_, blob))
        swapped = self._swap(value)
        if swapped is value:
            return None
        return self.serde.dumps_typed(swapped)[1]  # a container of messages: msgpack again

    def _swap(self, value: Any) -> Any:
        """``value`` with the summaries replaced by their markers; the same object if none."""
        if isinstance(value, BaseMessage):
            if is_summary(value) and not is_removed_summary(value):
                return self.by_id.get(str(value.id), value)
            return value
        if isinstance(value, list | tuple):
            items = [self._swap(item) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return tuple(items) if isinstance(value, tuple) else items
        if isinstance(value, dict):
            swapped = {key: self._swap(item) for key, item in value.items()}
            if all(swapped[key] is item for key, item in value.items()):
                return value
            return swapped
        return value


async def find_summary_markers(
    conn: Connection, serde: SerializerProtocol, thread_id: str, erased_ids: set[str]
) -> SummaryMarkers:
    """The thread's stored summaries made from any of ``erased_ids``, with their markers.

    Every stored version of such a summary (a soft forget may have left several rows
    under its id) is replaced; one already a marker is left as it is. The candidate
    rows are locked (``FOR UPDATE``) in the caller's transaction. They are every
    summary row of the thread, so they hold every link of every chain still stored:
    the chains come from this one read.

    Args:
        conn: The connection of the redact's transaction.
        serde: The saver's serializer.
        thread_id: The thread.
        erased_ids: Message ids of the rows the quotes matched.
    """
    found = SummaryMarkers(serde)
    if not erased_ids:
        return found
    params = {"thread_id": thread_id, "summary": SUMMARY_LIKE}
    cur = await conn.execute(sql.REDACT_SELECT_SUMMARY_MESSAGES, params)
    decoded = [(row, serde.loads_typed((row["type"], row["blob"]))) for row in await cur.fetchall()]
    chains = SummaryChains(m for _, m in decoded if isinstance(m, BaseMessage))
    for row, message in decoded:
        if isinstance(message, BaseMessage) and chains.made_from(message, erased_ids):
            marker = removed_summary(message)
            found.by_id[str(message.id)] = marker
            type_, blob = serde.dumps_typed(marker)
            found.rows[row["seq"]] = ({**row, "type": type_}, blob)
    return found
