"""What a memory operation reports back: its result, and the JSON every surface answers.

``tools.admin`` returns these; the CLI's ``--json`` and the web API answer their
``to_json()``, so the three agree on the shape of a change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MemoryChange:
    """What a forget or rewind wrote.

    Attributes:
        thread_id: The thread changed.
        checkpoint_id: The new head, carrying the ``memory_cleared`` or ``rewound_to``
            metadata.
        rewound_to: The target of a rewind; ``None`` for a forget.
    """

    thread_id: str
    checkpoint_id: str
    rewound_to: str | None = None

    def to_json(self) -> dict[str, Any]:
        """What the CLI's ``--json`` and the web API answer for the change."""
        data: dict[str, Any] = {"thread_id": self.thread_id, "checkpoint_id": self.checkpoint_id}
        if self.rewound_to is not None:
            data["rewound_to"] = self.rewound_to
        return data


@dataclass(frozen=True, slots=True)
class Erasure:
    """What a delete, purge or redact removed (a redact: rows changed).

    Attributes:
        thread_id: The thread erased.
        rows: Rows removed per table.
        kept_from: For a purge, the forget checkpoint the thread now starts at.
    """

    thread_id: str
    rows: dict[str, int]
    kept_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        """What the CLI's ``--json`` and the web API answer for the erasure."""
        data: dict[str, Any] = {"thread_id": self.thread_id, "rows": self.rows}
        if self.kept_from is not None:
            data["kept_from"] = self.kept_from
        return data


@dataclass(frozen=True, slots=True)
class Compaction:
    """What a compaction wrote.

    Attributes:
        thread_id: The thread compacted.
        checkpoint_id: The new head, carrying the ``memory_compacted`` metadata.
        replaced: How many messages the summary stands for in the head.
        tokens_before: The next model call's size before, in tokens.
        tokens_after: Its size with the summary in place.
    """

    thread_id: str
    checkpoint_id: str
    replaced: int
    tokens_before: int
    tokens_after: int

    def to_json(self) -> dict[str, Any]:
        """What the CLI's ``--json`` and the web API answer for the compaction."""
        return {
            "thread_id": self.thread_id,
            "checkpoint_id": self.checkpoint_id,
            "replaced": self.replaced,
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
        }
