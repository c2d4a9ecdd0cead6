"""Reliability under faults and load: lost connections, restarts, races.

Each test removes nothing from the product and fakes nothing in the database: the
connections are really killed, the server really restarts (on a PostgreSQL of this
module's own, never the shared one), the turns really run at the same time.

Related tests elsewhere: ``test_conformance.py`` (langgraph's checkpointer conformance
suite); ``test_admin.py::test_a_memory_operation_waits_for_the_running_turn``
(a memory operation is refused with ``ThreadBusyError`` while a turn holds the thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent.checkpointer import MemagentSaver, open_saver
from agent.errors import DatabaseUnavailableError
from agent.graph import make_graph
from agent.memory.timeline import read_timeline
from agent.session import ChatSession
from agent.settings import Settings
from agent.store import sql
from tests.fakes import ScriptedChatModel
from tests.helpers import (
    HANG_GUARD,
    Gate,
    config,
    create_database,
    table_counts,
    wait_for_lease,
    wait_until_waiting_for,
)
from tools import admin


def session_on(saver: MemagentSaver, *script: Any) -> tuple[ChatSession, ScriptedChatModel]:
    model = ScriptedChatModel(script=list(script))
    return ChatSession(make_graph(model, checkpointer=saver), saver, model), model


async def conversation(session: ChatSession, thread_id: str) -> list[tuple[str, str]]:
    """The head's messages as (kind, text), what the next turn will see."""
    state = await session.graph.aget_state(config(thread_id))
    return [(m.type, m.text) for m in state.values.get("messages", [])]


# --- 1. connections killed under the app ----------------------------------------------


def kill_app_connections(database_url: str) -> int:
    """Terminates every other backend on this test's database; returns how many.

    Waits (up to 5 s each) until the backends are gone, as an operator's kill is.
    """
    with psycopg.connect(database_url, autocommit=True) as admin_conn:
        row = admin_conn.execute(
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_the_next_turn_after_all_connections_were_killed_succeeds(
    settings: Settings, database_url: str
) -> None:
    async with open_saver(settings) as saver:
        session, _ = session_on(saver, "hello Ada", "still here")
        assert await session.send("t", "my name is Ada") == "hello Ada"
        assert kill_app_connections(database_url) >= 1

        assert await session.send("t", "are you there?") == "still here"
        assert await conversation(session, "t") == [
            ("human", "my name is Ada"),
            ("ai", "hello Ada"),
            ("human", "are you there?"),
            ("ai", "still here"),
        ]


async def test_the_pool_hands_out_no_connection_the_server_killed(
    saver: MemagentSaver, database_url: str
) -> None:
    """The pool's check finds the dead connections without a query of its own."""
    async with saver.conn.connection() as first, saver.conn.connection() as second:
        await first.execute("SELECT 1")
        await second.execute("SELECT 1")
    assert kill_app_connections(database_url) >= 2

    for _ in range(3):  # as many checkouts as there were dead connections, and more
        async with saver.conn.connection() as conn:
            cur = await conn.execute("SELECT 1 AS alive")
            assert await cur.fetchone() == {"alive": 1}


# --- 2. the PostgreSQL server restarts ------------------------------------------------


class OwnServer:
    """A PostgreSQL of this module's own, which its tests may stop and start."""

    def __init__(self, data_dir: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs, when XDG_RUNTIME_DIR is unset
            import pgserver
            from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        self._pg_ctl = pg_ctl
        self.server = pgserver.get_server(data_dir, cleanup_mode="delete")
        self.socket_dir = self.server.get_postmaster_info().socket_dir
        self.url = str(self.server.get_uri())

    def _ctl(self, *args: str) -> None:
        # pgserver's own pg_ctl, as pgserver's system user (it runs postgres as
        # "pgserver" when the tests run as root), on the same data dir and socket.
        self._pg_ctl(
            list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60
        )

    def stop(self) -> None:
        try:
            self._ctl("-w", "-t", "20", "-m", "fast", "stop")
        except subprocess.CalledProcessError:
            self._ctl("-w", "-m", "immediate", "stop")  # a crash is a restart too

    def start(self) -> None:
        for attempt in range(5):
            try:
                self._ctl(
                    "-w",
                    "-o",
                    '-h ""',
                    "-o",
                    f"-k {self.socket_dir}",
                    "-l",
                    str(self.server.log),
                    "start",
                )
                return
            except subprocess.CalledProcessError as error:
                if attempt == 4:
                    log = self.server.log.read_text()[-3000:]
                    raise RuntimeError(f"PostgreSQL did not start; its log ends:\n{log}") from error
                time.sleep(1)

    def new_database(self) -> str:
        return create_database(self.url, "memagent_restart")

    def close(self) -> None:
        # After a restart pgserver's handle still points at the old postmaster and
        # would delete the data dir under the running one: stop it here first.
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        self.server.cleanup()


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnServer]:
    server = OwnServer(tmp_path_factory.mktemp("own-pg") / "data")
    try:
        yield server
    finally:
        server.close()


async def test_turns_continue_across_a_server_restart(
    own_server: OwnServer, settings: Settings
) -> None:
    gate = Gate("answer to the turn in flight")
    async with open_saver(settings, database_url=own_server.new_database()) as saver:
        session, _ = session_on(saver, "first", "after the restart", gate, gate.reply)
        assert await session.send("t", "hello") == "first"

        await asyncio.to_thread(own_server.stop)
        await asyncio.to_thread(own_server.start)
        # The pool replaces the dead connections as it hands them out.
        reply = await asyncio.wait_for(session.send("t", "are you back?"), 10)
        assert reply == "after the restart"

        # A turn in flight while the server restarts quickly carries on, or fails
        # clearly and is resumed by sending the message again.
        turn = asyncio.create_task(session.send("t", "during the restart"))
        await gate.reached()
        await asyncio.to_thread(own_server.stop)
        await asyncio.to_thread(own_server.start)
        gate.release.set()
        try:
            reply = await asyncio.wait_for(turn, HANG_GUARD)
        except DatabaseUnavailableError:  # a write was on the wire when the server stopped
            reply = await asyncio.wait_for(session.send("t", "during the restart"), 10)
        assert reply == "answer to the turn in flight"

        assert await conversation(session, "t") == [
            ("human", "hello"),
            ("ai", "first"),
            ("human", "are you back?"),
            ("ai", "after the restart"),
            ("human", "during the restart"),
            ("ai", "answer to the turn in flight"),
        ]


async def test_a_turn_the_outage_interrupted_fails_clearly_and_resumes_on_retry(
    own_server: OwnServer, settings: Settings
) -> None:
    gate = Gate("never saved")
    # A short pool timeout so the interrupted turn gives up quickly while the server
    # is down (the default, 30 s, would only make the test slow).
    quick = dataclasses.replace(settings, pool_timeout=2.0)
    async with open_saver(quick, database_url=own_server.new_database()) as saver:
        session, model = session_on(saver, "first", gate, "answer to second")
        assert await session.send("t", "hello") == "first"

        turn = asyncio.create_task(session.send("t", "second"))
        await gate.reached()
        await asyncio.to_thread(own_server.stop)
        gate.release.set()  # the model answers while the database is gone
        with pytest.raises(DatabaseUnavailableError) as failure:
            await asyncio.wait_for(turn, HANG_GUARD)
        message = str(failure.value)
        assert "database could not be reached" in message
        assert "psycopg" not in message and "Traceback" not in message
        assert "\n" not in message

        await asyncio.to_thread(own_server.start)
        saver.conn.timeout = 30.0  # the retry may wait for the pool's next reconnect
        calls_before = len(model.inputs)
        reply = await asyncio.wait_for(session.send("t", "second"), 10)

    assert reply == "answer to second"
    retry_input = [str(m.text) for m in model.inputs[calls_before]]
    assert retry_input.count("second") == 1  # resumed, not sent twice
    async with open_saver(quick, database_url=saver.conninfo) as reopened:
        reopened_session, _ = session_on(reopened)
        assert await conversation(reopened_session, "t") == [
            ("human", "hello"),
            ("ai", "first"),
            ("human", "second"),
            ("ai", "answer to second"),
        ]
        state = await reopened_session.graph.aget_state(config("t"))
        assert state.next == ()  # nothing left half done
        turns = [e.preview for e in await read_timeline(reopened, "t", 10) if e.kind == "turn"]
        assert turns == ["second", "hello"]


# --- 3. many turns through a tiny pool --------------------------------------------------


async def test_fifty_concurrent_turns_share_a_pool_of_two_connections(
    settings: Settings,
) -> None:
    async with open_saver(settings, max_size=2) as saver:
        session, _ = session_on(saver)  # every reply is "ok"
        threads = [f"load-{n}" for n in range(50)]
        replies = await asyncio.wait_for(
            asyncio.gather(*(session.send(t, f"hello from {t}") for t in threads)), HANG_GUARD
        )
        assert replies == ["ok"] * 50
        for thread_id in threads[::7]:
            assert await conversation(session, thread_id) == [
                ("human", f"hello from {thread_id}"),
                ("ai", "ok"),
            ]


# --- 4. two things at once on one thread ------------------------------------------------


async def test_two_turns_sent_to_one_thread_at_once_both_stay(
    saver: MemagentSaver, database_url: str
) -> None:
    gate = Gate("reply to the first")
    session, _ = session_on(saver, gate, "reply to the second")
    first = asyncio.create_task(session.send("t", "one"))
    await gate.reached()
    lease = await asyncio.to_thread(wait_for_lease, database_url, "t")
    second = asyncio.create_task(session.send("t", "two"))
    await asyncio.to_thread(wait_until_waiting_for, lease)  # it waits for the first
    assert not second.done()
    gate.release.set()
    replies = await asyncio.wait_for(asyncio.gather(first, second), HANG_GUARD)

    assert replies == ["reply to the first", "reply to the second"]
    assert await conversation(session, "t") == [
        ("human", "one"),
        ("ai", "reply to the first"),
        ("human", "two"),
        ("ai", "reply to the second"),
    ]


async def test_a_rewind_waits_for_the_running_turn_then_applies(
    saver: MemagentSaver, database_url: str
) -> None:
    gate = Gate("reply to two")
    session, _ = session_on(saver, "reply to one", gate)
    await session.send("t", "one")
    [turn_one] = [e for e in await admin.atimeline(saver, "t") if e.kind == "turn"]

    turn = asyncio.create_task(session.send("t", "two"))
    await gate.reached()
    lease = await asyncio.to_thread(wait_for_lease, database_url, "t")
    rewind = asyncio.create_task(admin.arewind(saver, "t", turn_one.checkpoint_id))
    await asyncio.to_thread(wait_until_waiting_for, lease)
    assert not rewind.done()  # it waits for the turn instead of racing it
    gate.release.set()
    await asyncio.wait_for(asyncio.gather(turn, rewind), HANG_GUARD)

    # The rewind came last and holds: back to before "one" (its confirmation aside).
    assert [text for kind, text in await conversation(session, "t") if kind == "human"] == []
    history = [s async for s in session.graph.aget_state_history(config("t"))]
    said = {m.text for s in history for m in s.values.get("messages", [])}
    assert {"two", "reply to two"} <= said  # the turn is not lost: it can be rewound to


# --- 5. deleting a thread while a turn runs on it --------------------------------------


async def test_a_thread_deleted_during_a_turn_is_not_written_back(
    saver: MemagentSaver, database_url: str
) -> None:
    secret = "secret-4711-before-delete"
    gate = Gate("reply written while deleting")
    session, _ = session_on(saver, "noted", gate)
    await session.send("t", f"my code is {secret}")

    turn = asyncio.create_task(session.send("t", "and another thing"))
    await gate.reached()
    lease = await asyncio.to_thread(wait_for_lease, database_url, "t")
    delete = asyncio.create_task(admin.adelete(saver, "t"))
    # Without the lease, the delete would run now, mid-turn.
    await asyncio.to_thread(wait_until_waiting_for, lease)
    assert not delete.done()
    gate.release.set()
    _, erasure = await asyncio.wait_for(asyncio.gather(turn, delete), HANG_GUARD)

    assert erasure.rows["checkpoints"] > 0
    assert table_counts(database_url) == {
        "checkpoints": 0,
        "checkpoint_blobs": 0,
        "checkpoint_writes": 0,
        "memagent_messages": 0,
    }
    assert await conversation(session, "t") == []
    # The thread is usable again and starts empty.
    assert await session.send("t", "hello again") == "ok"
    assert secret not in " ".join(text for _, text in await conversation(session, "t"))


# --- 6. several processes start on one empty database -----------------------------------

STARTUP_SCRIPT = """
import asyncio, os, pathlib, sys, time
from agent.checkpointer import open_saver
from agent.settings import Settings

here = pathlib.Path(sys.argv[1])
(here / f"ready-{os.getpid()}").touch()
deadline = time.monotonic() + 60
while not (here / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.005)

async def main():
    async with open_saver(Settings.from_env()) as saver:
        await saver.athreads()

asyncio.run(main())
"""


def test_six_processes_starting_at_once_on_an_empty_database_all_succeed(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", STARTUP_SCRIPT, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(6)
    ]
    try:
        wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == 6)
        (tmp_path / "go").touch()  # all six run setup() at the same moment
        outcomes = [(p.wait(HANG_GUARD), p.stdout.read().decode()) for p in processes]  # type: ignore[union-attr]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert [code for code, _ in outcomes] == [0] * 6, [out for _, out in outcomes]
    with psycopg.connect(database_url) as conn:
        done = conn.execute("SELECT count(*) FROM memagent_migrations").fetchone()
    assert done == (len(sql.MIGRATIONS),)  # each migration ran exactly once


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition never became true")
        time.sleep(0.01)
