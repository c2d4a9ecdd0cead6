"""A deleted thread leaves no row naming it, on every route, but the audit log's.

A thread id can be personal (an e-mail, a user's own name), so "deleted" must mean no
table still holds it. The check is ``rows_naming``: every text, JSON and bytea column
of every table of the database, read raw. The server's ``DELETE /threads/{id}`` is
checked in ``tests/test_server.py`` (it ends in the saver's ``adelete_thread``, also
called directly here); the web page's delete is its API call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import psycopg
import pytest
from click.testing import CliRunner

from agent.checkpointer import MemagentSaver, open_saver
from agent.cli import main
from agent.errors import CheckpointRetainedError
from agent.settings import Settings
from agent.store import sql
from tests.helpers import Chat, rows, rows_naming, web_client
from tools import admin

THREAD = "alice@example.org:trip-planning"
"""A thread id that names a person, as real ones do."""
COPY = "copy-of-the-trip"
"""A copy of it (Studio's "copy thread"), which must survive the delete."""

Delete = Callable[[MemagentSaver, str], Awaitable[object]]


async def _admin(saver: MemagentSaver, thread_id: str) -> object:
    return await admin.adelete(saver, thread_id)


async def _admin_blocking(saver: MemagentSaver, thread_id: str) -> object:
    return await asyncio.to_thread(admin.delete, saver, thread_id)


async def _server_call(saver: MemagentSaver, thread_id: str) -> object:
    """What ``DELETE /threads/{id}`` of ``langgraph dev`` calls on the checkpointer."""
    await saver.adelete_thread(thread_id)
    return None


async def _cli(saver: MemagentSaver, thread_id: str) -> object:
    def run() -> object:
        result = CliRunner().invoke(main, ["delete", thread_id, "--yes", "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return await asyncio.to_thread(run)


async def _page(saver: MemagentSaver, thread_id: str) -> object:
    """The web page's "Delete thread" button (the page asks first, then posts this)."""
    async with web_client() as client:
        response = await client.post("/api/delete", json={"thread": thread_id})
    assert response.status_code == 200, response.text
    return response.json()


async def rich_thread(saver: MemagentSaver, thread_id: str) -> Chat:
    """A thread with every kind of row: turns, a forget, a rewind, a detail forget,
    what retention cut, a copy of it, and a lease a crashed process left behind."""
    chat = Chat(saver, thread_id)
    for n in range(4):
        await chat.say(f"turn {n}: my street is Elm {n}")
    await chat.forget("start over")
    await chat.rewind((await chat.turn_points())[-2])
    await chat.forget_details("Elm 0")
    await chat.say("after")
    await admin.aretain(saver, thread_id, keep_turns=2)
    await saver.acopy_thread(thread_id, COPY)
    async with saver.conn.connection() as conn:
        await conn.execute(
            "INSERT INTO memagent_thread_leases VALUES (%s, 'crashed', now() - interval '1 hour')",
            (thread_id,),
        )
    return chat


@pytest.mark.parametrize(
    "delete",
    [_admin, _admin_blocking, _server_call, _cli, _page],
    ids=["tools.admin", "blocking-twin", "saver.adelete_thread", "cli", "web-page"],
)
async def test_delete_leaves_no_row_naming_the_thread_but_the_audit_log(
    saver: MemagentSaver, database_url: str, settings: Settings, delete: Delete
) -> None:
    chat = await rich_thread(saver, THREAD)
    other = Chat(saver, "bob")
    await other.say("hello")
    assert set(rows_naming(database_url, [THREAD])) >= {
        "checkpoints",
        "checkpoint_blobs",
        "checkpoint_writes",
        "memagent_messages",
        "memagent_thread_leases",
        "memagent_retained",
    }  # the scan sees the thread while it is there
    copy_before = rows(
        database_url, "SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", COPY
    )
    bob_before = rows_naming(database_url, ["bob"])
    retained = [r["checkpoint_id"] for r in rows(database_url, "SELECT * FROM memagent_retained")]

    await delete(saver, THREAD)

    assert set(rows_naming(database_url, [THREAD])) == {"memagent_audit"}
    assert rows_naming(database_url, ["bob"]) == bob_before
    assert copy_before == rows(
        database_url, "SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", COPY
    )
    assert await chat.messages() == []

    # The thread starts afresh under the same id, and the copy and bob go on.
    again = Chat(saver, THREAD)
    await again.say("a new start")
    assert [m.text for m in await again.messages()] == ["a new start", "ok"]
    copy = Chat(saver, COPY)
    with pytest.raises(CheckpointRetainedError):  # the copy shares what retention cut
        await admin.arewind(saver, COPY, retained[0])
    await copy.say("the copy goes on")
    assert (await copy.messages())[-2].text == "the copy goes on"


async def test_message_numbers_are_never_reused_after_a_delete(
    saver: MemagentSaver, database_url: str
) -> None:
    """No counter row names the thread, and still a thread made again under the same id
    gets numbers no earlier row of it had: a process caching rows by number (another
    saver here) cannot mistake an old message for a new one."""
    first = Chat(saver, THREAD)
    await first.say("the old secret")
    old = {r["seq"] for r in rows(database_url, "SELECT seq FROM memagent_messages")}
    async with open_saver(database_url=database_url) as other_process:
        reader = Chat(other_process, THREAD)
        assert "the old secret" in [m.text for m in await reader.messages()]  # now cached

        await admin.adelete(saver, THREAD)
        await Chat(saver, THREAD).say("the new text")

        new = {r["seq"] for r in rows(database_url, "SELECT seq FROM memagent_messages")}
        assert new and not new & old
        assert [m.text for m in await reader.messages()] == ["the new text", "ok"]


async def test_an_older_database_is_migrated_to_numbers_above_every_old_one(
    database_url: str, settings: Settings
) -> None:
    """A database of the release with per-thread counters: the counters go, and new
    numbers start above every number any counter or row ever had."""
    counter_table = next(v for v, m in enumerate(sql.MIGRATIONS) if "memagent_message_seq (" in m)
    async with open_saver(database_url=database_url):
        pass  # langgraph's tables and memagent's, then back to that release below
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SEQUENCE memagent_message_blocks")
        conn.execute("DROP TABLE memagent_retained")
        conn.execute("DELETE FROM memagent_migrations WHERE v > %s", (counter_table,))
        conn.execute(sql.MIGRATIONS[counter_table])
        conn.execute("INSERT INTO memagent_message_seq VALUES ('gone', 900), ('kept', 40)")
        conn.execute(
            "INSERT INTO memagent_messages VALUES ('kept', 1000, 'm', 'json', '\\x7b7d'::bytea)"
        )

    async with open_saver(database_url=database_url) as saver:
        await Chat(saver, "kept").say("hello")

    assert rows(database_url, "SELECT to_regclass('memagent_message_seq') AS t") == [{"t": None}]
    seqs = [r["seq"] for r in rows(database_url, "SELECT seq FROM memagent_messages ORDER BY 1")]
    assert seqs[0] == 1000 and min(seqs[1:]) > 1000
