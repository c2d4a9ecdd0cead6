"""Who owns which thread, and what the audit log says about a user: for erasing a person.

With auth on, the page and the server record a thread's owner the first time an
authenticated user uses it (``memagent_thread_owner``). A user's threads are those
rows, plus page threads made before ownership was recorded, which the page names
``<user>:<uuid>``. Their audit lines are turned into pseudonyms (``agent.store.pseudonym``)
rather than deleted: the log keeps what was done and when, without naming anyone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from agent.store import sql

Connection = AsyncConnection[DictRow]

PAGE_THREAD_SUFFIX = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""What follows ``<user>:`` in the id of a thread the page made (``new_thread_id``)."""


def is_page_thread_of(user: str, thread_id: str) -> bool:
    """Whether the page made ``thread_id`` for ``user``: exactly ``<user>:<uuid>``.

    Exact, so that user ``a`` is not taken for the owner of ``a:b:<uuid>`` (user
    ``a:b``'s thread).
    """
    prefix = f"{user}:"
    return thread_id.startswith(prefix) and bool(
        PAGE_THREAD_SUFFIX.fullmatch(thread_id[len(prefix) :])
    )


async def record_owner(conn: Connection, thread_id: str, owner: str) -> None:
    """Records the thread's owner unless it has one already."""
    await conn.execute(sql.RECORD_THREAD_OWNER, (thread_id, owner))


async def threads_of(conn: Connection, user: str) -> list[str]:
    """The user's threads: recorded as theirs, or named as the page names theirs."""
    owned = await (await conn.execute(sql.SELECT_OWNED_THREADS, (user,))).fetchall()
    prefix = f"{user}:"
    shaped = await (
        await conn.execute(
            sql.SELECT_THREADS_WITH_PREFIX, {"length": len(prefix), "prefix": prefix}
        )
    ).fetchall()
    found = {row["thread_id"] for row in owned}
    found.update(row["thread_id"] for row in shaped if is_page_thread_of(user, row["thread_id"]))
    return sorted(found)


async def audit_threads_of(conn: Connection, user: str) -> list[str]:
    """Threads the audit log ties to the user: they acted on it, or it is their page's.

    Finds threads deleted long ago, which no other table names any more.
    """
    prefix = f"{user}:"
    params = {"actor": user, "length": len(prefix), "prefix": prefix}
    rows = await (await conn.execute(sql.SELECT_AUDIT_THREADS_OF, params)).fetchall()
    return sorted(
        row["thread_id"]
        for row in rows
        if row["by_actor"] or is_page_thread_of(user, row["thread_id"])
    )


async def pseudonymise_audit(
    conn: Connection, user: str, pseudonym: str, thread_pseudonyms: Mapping[str, str]
) -> int:
    """Replaces the user's name and their thread ids in the audit log, at once.

    Returns:
        How many lines changed.
    """
    params = {
        "threads": list(thread_pseudonyms),
        "pseudonyms": list(thread_pseudonyms.values()),
        "user": user,
        "pseudonym": pseudonym,
    }
    return (await conn.execute(sql.PSEUDONYMISE_AUDIT, params)).rowcount
