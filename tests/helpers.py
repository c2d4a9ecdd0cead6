"""Helpers the test files share: databases, raw rows, chats, conversations, identities.

Fixtures live in ``tests/conftest.py`` and the fake model in ``tests/fakes.py``; what is
here is plain code a test calls. No test file imports another test file: whatever two
of them need is written once, here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from agent.graph import make_graph
from agent.memory.summary import is_summary
from agent.memory.timeline import read_timeline
from agent.prompts import SUMMARY_PROMPT
from agent.session import ChatSession
from agent.store.saver import MemagentSaver
from agent.web import create_app
from tests.fakes import ScriptedChatModel, call, check_provider_valid
from tools.memory import FORGET, FORGET_DETAILS, REWIND

PROJECT = Path(__file__).resolve().parents[1]
README = PROJECT / "README.md"
UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
HANG_GUARD = 60.0
"""Seconds after which a stuck wait fails the test instead of hanging the run."""
THREAD_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "memagent_messages")
"""The tables a thread's conversation lives in: langgraph's three and memagent's messages.

Admin reports its erasures per table of these. The audit log is not among them: it keeps
no conversation and outlives a delete.
"""

# --- databases -------------------------------------------------------------------------


def with_dbname(url: str, dbname: str) -> str:
    """``url`` pointing at another database on the same server."""
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def create_database(admin_url: str, prefix: str = "memagent_test") -> str:
    """Creates a new, empty database on ``admin_url``'s server and returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_dbname(admin_url, name)


@contextmanager
def fresh_database(admin_url: str, prefix: str = "memagent_test") -> Iterator[str]:
    """A new, empty database for one test or one server, dropped afterwards."""
    url = create_database(admin_url, prefix)
    try:
        yield url
    finally:
        name = str(conninfo_to_dict(url)["dbname"])
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- raw rows: the ground truth, read past the saver -----------------------------------


def rows(database_url: str, query: str, *params: Any) -> list[dict[str, Any]]:
    """Runs one query on ``database_url``; rows as dicts."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return list(conn.execute(query, params).fetchall())


def count(database_url: str, query: str, *params: Any) -> int:
    """Runs a ``SELECT count(*) ...`` on ``database_url``; the count."""
    with psycopg.connect(database_url) as conn:
        return _count(conn, sql.SQL(query), params)


def _count(conn: psycopg.Connection[Any], query: sql.SQL | sql.Composed, params: Any = ()) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def table_counts(database_url: str) -> dict[str, int]:
    """Rows per thread table: the ground truth for "nothing was written"."""
    with psycopg.connect(database_url) as conn:
        return {
            table: _count(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            for table in THREAD_TABLES
        }


def thread_rows(database_url: str, thread_id: str) -> dict[str, int]:
    """Rows of one thread in each thread table."""
    with psycopg.connect(database_url) as conn:
        return {
            table: _count(
                conn,
                sql.SQL("SELECT count(*) FROM {} WHERE thread_id = %s").format(
                    sql.Identifier(table)
                ),
                (thread_id,),
            )
            for table in THREAD_TABLES
        }


def raw_rows(database_url: str, thread_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of every row of a thread, as stored: for byte-for-byte comparisons."""
    with psycopg.connect(database_url) as conn:
        return {
            table: conn.execute(
                sql.SQL("SELECT * FROM {} WHERE thread_id = %s ORDER BY 1, 2, 3, 4").format(
                    sql.Identifier(table)
                ),
                (thread_id,),
            ).fetchall()
            for table in THREAD_TABLES
        }


def tables_present(database_url: str) -> set[str]:
    """Which of the thread tables exist (an injected ``DROP TABLE`` would show here)."""
    found = rows(
        database_url,
        "SELECT tablename FROM pg_tables WHERE tablename = ANY(%s)",
        list(THREAD_TABLES),
    )
    return {row["tablename"] for row in found}


_SEARCHABLE_COLUMNS = """
SELECT c.table_schema, c.table_name, c.column_name, c.data_type
FROM information_schema.columns c
JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
WHERE t.table_type = 'BASE TABLE'
  AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
  AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea')
ORDER BY c.table_schema, c.table_name, c.ordinal_position
"""


def _searchable_columns(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str, str]]:
    """(schema, table, column, type) of every text, JSON and bytes column of the database.

    Everything a message, a reason or a serialized blob could be stored in; other types
    (numbers, times) cannot hold a needle. Read from ``information_schema``, so a table
    added later is searched without a change here.
    """
    return [tuple(row) for row in conn.execute(_SEARCHABLE_COLUMNS).fetchall()]


def needle_columns(database_url: str, needle: str) -> dict[str, int]:
    """Rows holding ``needle`` in any case, per ``table.column``, only where it is found.

    For a detail a user may have typed in any case: bytes are compared as escaped text,
    so a UTF-8 needle is found inside a msgpack blob too. ``{}`` means "nowhere".
    """
    hits: dict[str, int] = {}
    with psycopg.connect(database_url) as conn:
        for schema, table, column, data_type in _searchable_columns(conn):
            value = "encode({}, 'escape')" if data_type == "bytea" else "{}::text"
            query = sql.SQL("SELECT count(*) FROM {} WHERE " + value + " ILIKE %s").format(
                sql.Identifier(schema, table), sql.Identifier(column)
            )
            if found := _count(conn, query, (f"%{needle}%",)):
                name = table if schema == "public" else f"{schema}.{table}"
                hits[f"{name}.{column}"] = found
    return hits


def canary_rows(database_url: str, needle: str) -> dict[str, int]:
    """Rows holding ``needle`` anywhere, in raw form, per table, in every table of the database.

    The tables are found in ``information_schema``: every table with a text, JSON or
    bytea column is scanned, so a table added later (memagent's own, say) cannot hide a
    copy. Blobs are msgpack, which stores text as UTF-8, so the needle's bytes are
    searched in them; JSON is searched as text. The thread tables are always listed,
    so a test can say where the needle should be; any other table is listed only where
    the needle turns up, so ``== dict.fromkeys(THREAD_TABLES, 0)`` means "nowhere".
    """
    params = {"text": needle, "raw": needle.encode()}
    columns: dict[tuple[str, str], list[sql.Composable]] = {}
    with psycopg.connect(database_url) as conn:
        for schema, table, column, data_type in _searchable_columns(conn):
            test = (
                "position(%(raw)s::bytea in {}) > 0"
                if data_type == "bytea"
                else "strpos({}::text, %(text)s) > 0"
            )
            columns.setdefault((schema, table), []).append(
                sql.SQL(test).format(sql.Identifier(column))
            )
        found: dict[str, int] = {}
        for (schema, table), tests in columns.items():
            query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                sql.Identifier(schema, table), sql.SQL(" OR ").join(tests)
            )
            name = table if schema == "public" else f"{schema}.{table}"
            found[name] = _count(conn, query, params)
    missing = set(THREAD_TABLES) - set(found)
    assert not missing, f"the scan did not find the thread tables {missing}"
    return {name: count for name, count in found.items() if name in THREAD_TABLES or count > 0}


def rows_naming(database: str | psycopg.Connection[Any], needles: Sequence[str]) -> dict[str, int]:
    """Rows of every table that hold any of ``needles``, per table, only where found.

    The independent check that something (a thread id, a user's canary) is gone: every
    base table of the database, found through ``information_schema`` so a table added
    later is searched too, and every text, JSON and bytea column of it, JSON as its
    text and bytes as raw bytes (msgpack and JSON blobs keep text as UTF-8). Matching
    is exact and case-sensitive, as ids are. ``{}`` means "no row names any of them";
    a caller that allows the audit log drops ``"memagent_audit"`` from the result.

    Args:
        database: A database URL, or an open connection (read in its transaction, so
            a caller can check what a transaction of its own is about to commit).
        needles: The strings to look for; each non-empty.
    """
    assert needles and all(needles), "rows_naming needs non-empty needles"
    if isinstance(database, str):
        with psycopg.connect(database) as conn:
            return rows_naming(conn, needles)
    params = {"texts": list(needles), "raws": [needle.encode() for needle in needles]}
    columns: dict[tuple[str, str], list[sql.Composable]] = {}
    for schema, table, column, data_type in _searchable_columns(database):
        test = (
            "EXISTS (SELECT 1 FROM unnest(%(raws)s::bytea[]) n WHERE position(n in {}) > 0)"
            if data_type == "bytea"
            else "EXISTS (SELECT 1 FROM unnest(%(texts)s::text[]) n WHERE strpos({}::text, n) > 0)"
        )
        columns.setdefault((schema, table), []).append(sql.SQL(test).format(sql.Identifier(column)))
    found: dict[str, int] = {}
    for (schema, table), tests in columns.items():
        query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
            sql.Identifier(schema, table), sql.SQL(" OR ").join(tests)
        )
        if hits := _count(database, query, params):
            found[table if schema == "public" else f"{schema}.{table}"] = hits
    return found


# --- conversations ---------------------------------------------------------------------


def config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    """The run config that addresses a thread (at one checkpoint, if given)."""
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


class Chat:
    """One thread of memagent's graph, driven by a scripted model, with ways to inspect it.

    Works on any langgraph saver, so a test can run on PostgreSQL and in memory alike.
    Each turn returns the run's result: the state's values, plus ``__interrupt__`` when
    the graph stopped to ask (an erase for good waits for a confirmation).
    """

    def __init__(
        self,
        saver: BaseCheckpointSaver[Any],
        thread_id: str | None = None,
        *,
        extra_tools: Sequence[BaseTool] = (),
    ) -> None:
        self.saver = saver
        self.model = ScriptedChatModel()
        self.graph = make_graph(self.model, checkpointer=saver, extra_tools=extra_tools)
        self.thread_id = thread_id or str(uuid.uuid4())

    @property
    def config(self) -> RunnableConfig:
        return config(self.thread_id)

    async def say(self, text: str, *replies: AIMessage | str) -> dict[str, Any]:
        """One turn: the model answers with ``replies`` (default: "ok")."""
        self.model.script.extend(replies or ["ok"])
        result: dict[str, Any] = await self.graph.ainvoke(
            {"messages": [HumanMessage(text)]}, self.config
        )
        return result

    async def forget(self, reason: str | None = None) -> dict[str, Any]:
        """A turn in which the model calls ``forget_conversation``."""
        args = {"reason": reason} if reason else {}
        return await self.say("please forget this", self.model.calls(call(FORGET, **args)))

    async def forget_details(self, *quotes: str, for_good: bool = False) -> dict[str, Any]:
        """A turn in which the model calls ``forget_details`` with ``quotes``."""
        args: dict[str, Any] = {"quotes": list(quotes)}
        if for_good:
            args["for_good"] = True
        return await self.say("forget my address", self.model.calls(call(FORGET_DETAILS, **args)))

    async def rewind(self, checkpoint_id: str, *after: str) -> dict[str, Any]:
        """A turn in which the model calls ``rewind_to``, then answers ``after``."""
        step = self.model.calls(call(REWIND, checkpoint_id=checkpoint_id))
        return await self.say("go back", step, *after)

    async def resume(self, answer: Any) -> dict[str, Any]:
        """Answers the question the last turn stopped at."""
        result: dict[str, Any] = await self.graph.ainvoke(Command(resume=answer), self.config)
        return result

    async def messages(self) -> list[BaseMessage]:
        return list((await self.head()).values.get("messages", []))

    async def head(self) -> Any:
        return await self.graph.aget_state(self.config)

    async def history(self) -> list[Any]:
        """Root state snapshots, newest first."""
        return [s async for s in self.graph.aget_state_history(self.config)]

    async def history_ids(self) -> list[str]:
        """Root checkpoint ids, newest first."""
        return [s.config["configurable"]["checkpoint_id"] for s in await self.history()]

    async def turn_points(self) -> list[str]:
        """Rewind points of the turns on the head's branch, newest first."""
        entries = await read_timeline(self.saver, self.thread_id, 100)
        return [e.checkpoint_id for e in entries if e.kind == "turn"]


class Gate:
    """A model step that blocks until the test lets it go, so a turn is caught mid-way.

    The model runs in a worker thread (LangChain calls a sync model off the loop), so
    the gate is a ``threading.Event``; the test waits for ``entered`` off the loop.
    """

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, messages: list[BaseMessage]) -> AIMessage:
        self.entered.set()
        if not self.release.wait(HANG_GUARD):
            raise TimeoutError("the test never released the gate")
        return AIMessage(self.reply)

    async def reached(self) -> None:
        if not await asyncio.to_thread(self.entered.wait, HANG_GUARD):
            raise TimeoutError("the turn never reached the model")


# --- thread leases, watched from outside the saver ----------------------------------

_LEASE_ROW = """
SELECT holder, clock_timestamp() AS seen FROM memagent_thread_leases WHERE thread_id = %s
"""
_LATEST_LEASE_TRY = """
SELECT max(query_start) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND query_start > %s
  AND (query ILIKE '%%INSERT INTO memagent_thread_leases%%'
       OR query ~* '^\\s*select\\s+thread_id,\\s+checkpoint,\\s+checkpoint_ns,'
       OR query ILIKE '%%SELECT checkpoint_id FROM checkpoints%%')
"""
"""A try's latest statement: the lease insert, or the read of the same pipeline.

A run's (or ``tools.admin``'s) first read takes the lease in its round trip: the insert,
then the read of the head (``ThreadLeases.take_reading``), so the backend's latest
statement is that read. While the holder waits at a gate it reads nothing.
"""


@dataclass(frozen=True)
class HeldLease:
    """A thread's lease row (a row in ``memagent_thread_leases``) seen held."""

    database_url: str
    thread_id: str
    holder: str
    seen: datetime
    """The database's clock when the row was seen held."""


def wait_for_lease(database_url: str, thread_id: str) -> HeldLease:
    """Polls until the thread's lease row is held: proof the lease was really taken.

    Raises:
        TimeoutError: No lease row appeared within ``HANG_GUARD`` seconds.
    """
    deadline = time.monotonic() + HANG_GUARD
    with psycopg.connect(database_url, autocommit=True) as conn:
        while (row := conn.execute(_LEASE_ROW, (thread_id,)).fetchone()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"thread {thread_id!r} never got a lease row")
            time.sleep(0.01)
    return HeldLease(database_url, thread_id, holder=row[0], seen=row[1])


def wait_until_waiting_for(lease: HeldLease) -> None:
    """Returns once another caller is waiting for ``lease``: it tried twice, and failed.

    A try is an insert into the lease table (taking a lease writes its row), or the
    read sent in the same pipeline (``_LATEST_LEASE_TRY``), that started after the
    lease was seen held (``pg_stat_activity`` shows each backend's latest statement,
    running or done; the holder's heartbeat is an update, not a try); a second, later
    try means the first one failed and the caller is polling.
    The row keeps its holder throughout, so no try took the lease over. This is what
    a ``sleep`` cannot show: under load a caller that slept through the check may not
    have reached the lease at all, and a lease that did nothing would pass.

    Raises:
        AssertionError: The lease changed hands, or vanished, while watched.
        TimeoutError: Nobody tried twice within ``HANG_GUARD`` seconds.
    """
    deadline = time.monotonic() + HANG_GUARD
    since = lease.seen
    tries = 0
    with psycopg.connect(lease.database_url, autocommit=True) as conn:
        while tries < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nobody waited for the lease on {lease.thread_id!r}")
            time.sleep(0.01)
            latest = conn.execute(_LATEST_LEASE_TRY, (since,)).fetchone()
            row = conn.execute(_LEASE_ROW, (lease.thread_id,)).fetchone()
            assert row is not None and row[0] == lease.holder, (
                f"the lease on {lease.thread_id!r} changed hands while its holder held it"
            )
            if latest is not None and latest[0] is not None:
                since = latest[0]
                tries += 1


class SessionChat:
    """A ``ChatSession`` whose model is scripted, plus ways to look at its threads."""

    def __init__(self, session: ChatSession, model: ScriptedChatModel) -> None:
        self.session = session
        self.model = model

    @property
    def saver(self) -> MemagentSaver:
        return self.session.saver

    async def say(self, thread_id: str, text: str, *replies: AIMessage | str) -> str:
        """One turn through the session; returns the reply the user sees."""
        self.model.script.extend(replies or ["ok"])
        return await self.session.send(thread_id, text)

    async def state(self, thread_id: str) -> Any:
        return await self.session.graph.aget_state(config(thread_id))

    async def texts(self, thread_id: str) -> list[str]:
        return [m.text for m in (await self.state(thread_id)).values.get("messages", [])]

    async def tool_results(self, thread_id: str) -> list[str]:
        messages = (await self.state(thread_id)).values.get("messages", [])
        return [m.text for m in messages if isinstance(m, ToolMessage)]


def converse(thread_id: str, *lines: str) -> list[str]:
    """Turns with the configured model, in this process, as a user of ``ChatSession``.

    For tests of what the turns leave behind; ``run_chat_command`` is the chat itself.
    """

    async def turns() -> list[str]:
        async with ChatSession.open() as session:
            return [await session.send(thread_id, line) for line in lines]

    return asyncio.run(turns())


def run_chat_command(*lines: str, thread: str | None = None) -> str:
    """Runs ``python -m agent chat`` with ``lines`` as the user's input; returns its output."""
    args = [sys.executable, "-m", "agent", "chat"]
    if thread:
        args += ["--thread", thread]
    done = subprocess.run(
        args, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout + done.stderr


def readme_session(heading: str) -> list[str]:
    """A session block of the README (the first under ``### heading``), line by line."""
    readme = README.read_text(encoding="utf-8")
    block = readme.split(f"### {heading}\n\n```text\n", 1)[1]
    return block.split("```", 1)[0].splitlines()


@asynccontextmanager
async def web_client(prefix: str = "") -> AsyncIterator[httpx.AsyncClient]:
    """A client on a freshly started ``memagent web`` app, in this process."""
    app = create_app(prefix=prefix)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
            yield client


# --- model calls and the context budget ------------------------------------------------

Counter = Callable[[Sequence[BaseMessage], Sequence[BaseTool] | None], int]
"""Counts one model call: its messages (system prompt included) and its bound tools."""


def approximate_tokens(messages: Sequence[BaseMessage], tools: Sequence[BaseTool] | None) -> int:
    """The yardstick of docs/SPEC.md: ``count_tokens_approximately(messages, tools=...)``."""
    return count_tokens_approximately(messages, tools=list(tools) if tools else None)


def is_summariser_call(messages: Sequence[BaseMessage]) -> bool:
    """Whether a recorded call is a summariser's (its system prompt is the summary prompt)."""
    head = SUMMARY_PROMPT.split("{", 1)[0]
    return (
        bool(messages)
        and isinstance(messages[0], SystemMessage)
        and messages[0].text.startswith(head)
    )


def last_user_text(messages: Sequence[BaseMessage]) -> str:
    """The last thing the user said in a call's input (a summary is not the user)."""
    said = [m for m in messages if isinstance(m, HumanMessage) and not is_summary(m)]
    return said[-1].text if said else ""


def check_model_calls(
    calls: Sequence[Sequence[BaseMessage]],
    *,
    budget: int,
    tools: Sequence[BaseTool],
    sent: Sequence[str],
    count: Counter = approximate_tokens,
) -> None:
    """Checks model calls, in order, against docs/SPEC.md, "Context budget and compaction".

    Every call fits ``budget`` as ``count`` counts it: the chat model's with ``tools``
    bound, the summariser's with none. Every call is valid for a provider. The chat
    model's calls see, turn after turn, the message just sent as the last user message:
    taken in order (a turn that calls a tool calls the model twice), they name exactly
    ``sent``.
    """
    seen: list[str] = []
    for index, messages in enumerate(calls):
        check_provider_valid(messages)
        summariser = is_summariser_call(messages)
        tokens = count(messages, None if summariser else tools)
        who = "summariser" if summariser else "chat model"
        assert tokens <= budget, f"call {index} ({who}) received {tokens} > {budget} tokens"
        if not summariser and (not seen or seen[-1] != last_user_text(messages)):
            seen.append(last_user_text(messages))
    assert seen == list(sent)


_CJK = re.compile("[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")


def cjk_aware_tokens(messages: Sequence[BaseMessage], tools: Sequence[BaseTool] | None) -> int:
    """``approximate_tokens``, but each Chinese character (or CJK punctuation) one token.

    langchain's counter takes four characters for a token, which holds for English and
    undercounts Chinese, where a character is about a token.
    """
    cjk = sum(len(_CJK.findall(m.text)) for m in messages)
    return approximate_tokens(messages, tools) + cjk - cjk // 4


# --- identities: tokens from a real JWKS endpoint ----------------------------------------

ISSUER = "https://id.example.com/"
AUDIENCE = "memagent-api"


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid JWT claims for ``alice`` for an hour from ``ISSUER`` for ``AUDIENCE``.

    An override of ``None`` leaves that claim out.
    """
    now = int(datetime.now(UTC).timestamp())
    base: dict[str, Any] = {"sub": "alice", "iat": now, "exp": now + 3600}
    base.update(iss=ISSUER, aud=AUDIENCE)
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class IdentityProvider:
    """A real JWKS endpoint on 127.0.0.1 and the private key behind it, as an IdP has."""

    jwks_url: str
    key: rsa.RSAPrivateKey
    issuer: str = ISSUER
    audience: str = AUDIENCE
    kid: str = "key-1"

    def sign(
        self, claims: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None, kid: str = ""
    ) -> str:
        """A token signed RS256 with the provider's key (or ``key``), naming ``kid``."""
        headers = {"kid": kid or self.kid}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers=headers)

    def public_pem(self) -> bytes:
        """The public key in PEM, as anyone can derive it from the JWKS."""
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


NO_KEYS_PATH = "/no-keys/jwks.json"
"""Where ``serving_jwks`` publishes a key set without a single key."""


@contextmanager
def serving_jwks() -> Iterator[IdentityProvider]:
    """Serves ``/.well-known/jwks.json`` with one fresh RS256 public key until exit
    (and ``NO_KEYS_PATH``, an empty key set)."""
    key = new_rsa_key()
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid="key-1", alg="RS256", use="sig")
    body = json.dumps({"keys": [jwk]}).encode()

    published = {"/.well-known/jwks.json": body, NO_KEYS_PATH: json.dumps({"keys": []}).encode()}

    class JwksHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = published.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: requests are not test output."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), JwksHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield IdentityProvider(f"http://{host!s}:{port}/.well-known/jwks.json", key)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- the web page: `memagent web` running, and what other sites could send it ---------

MEMAGENT = Path(sys.executable).parent / "memagent"
WEB_START_SECONDS = 60.0
WEB_STOP_SECONDS = 20.0
_URL_LINE = re.compile(r"memagent web\s+(http://\S+)")
_BANNER_END = "Ctrl-C stops it."
"""The last line ``memagent web`` prints before it serves."""


@dataclass
class WebServer:
    """A running ``memagent web`` and everything it printed so far."""

    url: str
    process: subprocess.Popen[str]
    output: list[str]


def _collect(process: subprocess.Popen[str], lines: list[str], announced: threading.Event) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if _BANNER_END in line:
            announced.set()
    announced.set()  # the process ended: stop waiting


@contextmanager
def running_web(database_url: str, home: Path, *args: str, **settings: str) -> Iterator[WebServer]:
    """``memagent web ARGS...`` on ``database_url``; stopped with Ctrl-C (SIGINT) afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMAGENT_", "OPENAI_"))}
    env.update(
        DATABASE_URL=database_url,
        MEMAGENT_MODEL="offline",
        MEMAGENT_HOME=str(home),
        PYTHONUNBUFFERED="1",
        **settings,
    )
    process = subprocess.Popen(
        [str(MEMAGENT), "web", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    announced = threading.Event()
    threading.Thread(target=_collect, args=(process, lines, announced), daemon=True).start()
    try:
        announced.wait(WEB_START_SECONDS)
        found = next((m for line in lines if (m := _URL_LINE.search(line))), None)
        if found is None:
            pytest.fail("memagent web printed no address:\n" + "".join(lines))
        yield WebServer(found.group(1), process, lines)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(WEB_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


STATE_CHANGING_ENDPOINTS = (
    "/api/chat",
    "/api/forget",
    "/api/rewind",
    "/api/undo",
    "/api/forget-detail",
    "/api/erase",
    "/api/threads",
)
"""Every endpoint of the page's API that changes something (all ``POST``)."""

FOREIGN_ORIGINS = ("http://evil.example", "null")
"""What a browser sends as ``Origin`` from another site, and from a sandboxed frame or file."""

REBOUND_NAME = "rebind.attacker.example"
"""A name a DNS-rebinding page points at 127.0.0.1."""


def working_body(endpoint: str, thread_id: str, checkpoint_id: str, quote: str) -> dict[str, str]:
    """A body ``endpoint`` carries out on ``thread_id``: what an attacker would send.

    Each one works when sent as the page sends it, so a refusal is the guard's doing.
    """
    bodies = {
        "/api/chat": {"thread": thread_id, "text": "injected by another site"},
        "/api/forget": {"thread": thread_id},
        "/api/rewind": {"thread": thread_id, "checkpoint_id": checkpoint_id},
        "/api/undo": {"thread": thread_id},
        "/api/forget-detail": {"thread": thread_id, "quote": quote},
        "/api/erase": {"thread": thread_id, "quote": quote},
        "/api/threads": {},
    }
    return bodies[endpoint]


def simple_cross_site_post(url: str, body: dict[str, str], origin: str) -> httpx.Response:
    """What a page on ``origin`` can send without a CORS preflight: JSON as ``text/plain``."""
    return httpx.post(
        url,
        content=json.dumps(body),
        headers={"Origin": origin, "Content-Type": "text/plain;charset=UTF-8"},
        timeout=30,
    )


def assert_refused(response: httpx.Response) -> str:
    """The response is a 403 with the page's one-sentence JSON error; returns the error."""
    assert response.status_code == 403, (response.status_code, response.text)
    error = response.json()["error"]
    assert isinstance(error, str) and error.startswith("Refused: ")
    assert "\n" not in error and "Traceback" not in error
    return error


def stored_state(database_url: str, thread_id: str) -> tuple[Any, ...]:
    """A thread's rows byte for byte, its audit entries, and every thread table's count."""
    audit = rows(database_url, "SELECT * FROM memagent_audit WHERE thread_id = %s", thread_id)
    return raw_rows(database_url, thread_id), audit, table_counts(database_url)
