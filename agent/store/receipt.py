"""The receipt of erasing a user: what went, the proof that nothing is left, a digest.

It is what ``tools.admin.aerase_user`` returns, what ``memagent erase-user --json``
prints and what the audit log keeps, identical in all three. It holds counts only:
no content, no thread id, and the user only as their keyed pseudonym
(``agent.store.pseudonym``), so keeping it forever names nobody. The digest is a
SHA-256 over the canonical JSON of everything else, so a copy of the receipt can be
checked against the audit log's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from agent.store.verification import Scan

ERASED_TABLES = (
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "memagent_messages",
    "memagent_thread_owner",
    "memagent_retained",
)
"""The tables a receipt counts rows removed from, always all of them (zeros included),
so that every receipt has the same shape."""


@dataclass(frozen=True, slots=True)
class ServerErasure:
    """What the ``langgraph dev`` server removed through its API.

    Attributes:
        threads: Threads the server deleted (its record, and their runs with them).
        runs: Runs deleted, the input they were started with included.
    """

    threads: int = 0
    runs: int = 0

    def to_json(self) -> dict[str, int]:
        return {"threads": self.threads, "runs": self.runs}


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    """The proof of one ``erase-user``.

    Attributes:
        user: The user's pseudonym (``user:<hex>``), never the name.
        erased_at: When the erase finished (UTC).
        threads: How many threads of the user had rows that were removed.
        rows: Rows removed per table (every table of ``ERASED_TABLES``).
        audit_lines: Audit lines of the user's threads whose thread id and actor now
            read as pseudonyms.
        server: What the server removed; ``None`` when no server was asked.
        scan: The verification scan that ran after the erase.
        digest: ``sha256:<hex>`` over the canonical JSON of all of the above.
    """

    user: str
    erased_at: datetime
    threads: int
    rows: dict[str, int]
    audit_lines: int
    server: ServerErasure | None
    scan: Scan
    digest: str = field(default="")

    @classmethod
    def make(
        cls,
        *,
        user: str,
        threads: int,
        rows: dict[str, int],
        audit_lines: int,
        server: ServerErasure | None,
        scan: Scan,
        erased_at: datetime | None = None,
    ) -> ErasureReceipt:
        """A receipt with its time (now, by default) and its digest filled in."""
        unsigned = cls(
            user=user,
            erased_at=(erased_at or datetime.now(UTC)).astimezone(UTC),
            threads=threads,
            rows={table: rows.get(table, 0) for table in ERASED_TABLES},
            audit_lines=audit_lines,
            server=server,
            scan=scan,
        )
        return replace(unsigned, digest=digest_of(unsigned.body()))

    def body(self) -> dict[str, Any]:
        """Everything but the digest, as JSON: what the digest is computed over."""
        return {
            "operation": "erase-user",
            "user": self.user,
            "erased_at": self.erased_at.isoformat().replace("+00:00", "Z"),
            "threads": self.threads,
            "rows": dict(self.rows),
            "audit_lines": self.audit_lines,
            "server": None if self.server is None else self.server.to_json(),
            "scan": self.scan.to_json(),
        }

    def to_json(self) -> dict[str, Any]:
        """What the CLI's ``--json`` prints and the audit log keeps."""
        return {**self.body(), "digest": self.digest}


def digest_of(body: dict[str, Any]) -> str:
    """``sha256:<hex>`` of ``body`` as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
