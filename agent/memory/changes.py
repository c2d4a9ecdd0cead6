"""What a memory operation reports back: its result, and the JSON every surface answers.

``tools.admin`` returns these; the CLI's ``--json`` and the web API answer their
``to_json()``, so the three agree on the shape of a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.prompts import ERASE_NOT_REACHED, ERASE_SERVER_RUNS


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
class ServerRunsErased:
    """What an erase for good did on a ``langgraph dev`` server, and what it could not.

    Attributes:
        runs_removed: The thread's run records deleted because their input held a quote.
        not_reached: Where a copy may remain that memagent cannot erase, in words.
    """

    runs_removed: int
    not_reached: tuple[str, ...]

    def sentences(self) -> str:
        """What the user is told of it, after the erase's confirmation."""
        said = ERASE_SERVER_RUNS.format(count=self.runs_removed) if self.runs_removed else ""
        if self.not_reached:
            said += " " + ERASE_NOT_REACHED.format(places="; ".join(self.not_reached))
        return said.strip()

    def to_json(self) -> dict[str, Any]:
        """The ``server`` part of an erasure's JSON."""
        return {"runs_removed": self.runs_removed, "not_reached": list(self.not_reached)}


@dataclass(frozen=True, slots=True)
class Erasure:
    """What a delete, purge or redact removed (a redact: rows changed).

    Attributes:
        thread_id: The thread erased.
        rows: Rows removed per table.
        kept_from: For a purge, the forget checkpoint the thread now starts at.
        server: For a redact with a server, what it removed there and what not.
    """

    thread_id: str
    rows: dict[str, int]
    kept_from: str | None = None
    server: ServerRunsErased | None = None

    def to_json(self) -> dict[str, Any]:
        """What the CLI's ``--json`` and the web API answer for the erasure."""
        data: dict[str, Any] = {"thread_id": self.thread_id, "rows": self.rows}
        if self.kept_from is not None:
            data["kept_from"] = self.kept_from
        if self.server is not None:
            data["server"] = self.server.to_json()
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


@dataclass(frozen=True, slots=True)
class RetainedThread:
    """What retention removed from one thread (a dry run: would remove).

    Attributes:
        thread_id: The thread.
        kept_from: The oldest checkpoint kept (a rewind point, or the head); ``None``
            when the policy keeps the whole thread.
        rows: Rows removed per table.
        bytes: What those rows occupied, as stored.
        checkpoints: Root checkpoints removed; each now answers "removed by retention".
        tombstones: Memory changes among them, which the timeline still lists.
    """

    thread_id: str
    kept_from: str | None
    rows: dict[str, int]
    bytes: int = 0
    checkpoints: int = 0
    tombstones: int = 0

    def to_json(self) -> dict[str, Any]:
        """One thread of what ``memagent retain --json`` prints."""
        return {
            "thread_id": self.thread_id,
            "kept_from": self.kept_from,
            "rows": self.rows,
            "bytes": self.bytes,
            "checkpoints": self.checkpoints,
            "tombstones": self.tombstones,
        }


@dataclass(frozen=True, slots=True)
class Retention:
    """What a retention over one thread or all did.

    Attributes:
        policy: ``{"keep_turns": N}`` or ``{"older_than": "30d"}``, as asked.
        dry_run: Nothing was changed; the counts are what a real run would remove.
        threads: Per thread retained, in thread id order.
        busy: Threads skipped because a turn held them for longer than the busy
            timeout (a retention over all threads only); run it again for them.
        refused: Threads skipped because no older part of them can be cut (one
            using a ``DeltaChannel``; a retention over all threads only).
    """

    policy: dict[str, Any]
    dry_run: bool
    threads: list[RetainedThread]
    busy: list[str]
    refused: list[str] = field(default_factory=list)

    @property
    def rows(self) -> dict[str, int]:
        """Rows removed per table, over every thread."""
        totals: dict[str, int] = {}
        for thread in self.threads:
            for table, count in thread.rows.items():
                totals[table] = totals.get(table, 0) + count
        return totals

    def to_json(self) -> dict[str, Any]:
        """What ``memagent retain --json`` prints."""
        return {
            **self.policy,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "bytes": sum(thread.bytes for thread in self.threads),
            "threads": [thread.to_json() for thread in self.threads],
            "busy": self.busy,
            "refused": self.refused,
        }
