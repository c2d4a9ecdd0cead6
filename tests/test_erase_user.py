"""Erasing a user (docs/SPEC.md, "Data lifecycle"), thread ownership, and ``memagent vacuum``.

Two users chat on the web page with auth on (the app in this process, through httpx's
ASGI transport, as ``tests/test_web_api.py`` does), with forgets, detail forgets and a
rewind's fork. What is left after ``erase-user`` is read straight from PostgreSQL, in
every table the catalog lists; the server's route is in ``tests/test_server.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shlex
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner, Result
from langchain_core.messages import HumanMessage
from psycopg import sql

from agent import auth
from agent.checkpointer import MemagentSaver
from agent.cli import main
from agent.settings import Settings
from agent.store.pseudonym import KEY_FILE, thread_pseudonym, user_pseudonym
from agent.store.receipt import ERASED_TABLES, digest_of
from tests.helpers import (
    HANG_GUARD,
    README,
    Chat,
    Gate,
    converse,
    count,
    needle_columns,
    rows,
    wait_for_lease,
    wait_until_waiting_for,
    web_client,
)
from tools import admin

KEY = b"k" * 32
"""The pseudonym key the admin calls here use."""


# --- the ground truth, read past memagent ------------------------------------------------


def tables_with_thread_ids(database_url: str) -> list[str]:
    """Every table with a ``thread_id`` column, from the catalog."""
    found = rows(
        database_url,
        "SELECT table_name FROM information_schema.columns"
        " WHERE column_name = 'thread_id' AND table_schema = current_schema()"
        " ORDER BY table_name",
    )
    return [row["table_name"] for row in found]


def rows_of_threads(
    database_url: str, thread_ids: Sequence[str]
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row, as stored, of every table whose ``thread_id`` is one of ``thread_ids``."""
    with psycopg.connect(database_url) as conn:
        return {
            table: conn.execute(
                sql.SQL("SELECT * FROM {} t WHERE thread_id = ANY(%s) ORDER BY t::text").format(
                    sql.Identifier(table)
                ),
                (list(thread_ids),),
            ).fetchall()
            for table in tables_with_thread_ids(database_url)
        }


def rows_naming(database_url: str, needles: Sequence[str]) -> dict[str, int]:
    """Per ``table.column``, rows holding any of ``needles`` anywhere (any case)."""
    found: dict[str, int] = {}
    for needle in needles:
        for column, hits in needle_columns(database_url, needle).items():
            found[column] = found.get(column, 0) + hits
    return found


def counts_of(database_url: str, thread_ids: Sequence[str]) -> dict[str, int]:
    """Rows of ``thread_ids`` in each table a receipt counts."""
    return {
        table: count(
            database_url,
            f"SELECT count(*) FROM {table} WHERE thread_id = ANY(%s)",
            list(thread_ids),
        )
        for table in ERASED_TABLES
    }


# --- two users on the page -----------------------------------------------------------------


class Page:
    """The web page with auth on, as a signed-in user sends to it."""

    def __init__(self, client: httpx.AsyncClient, secret: str) -> None:
        self.client = client
        self.secret = secret

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {auth.issue_token(user, self.secret)}"}

    async def post(self, user: str, path: str, body: dict[str, Any]) -> httpx.Response:
        response = await self.client.post(path, json=body, headers=self.headers(user))
        assert response.status_code in (200, 201), response.text
        return response

    async def new_thread(self, user: str) -> str:
        return str((await self.post(user, "/api/threads", {})).json()["thread_id"])

    async def say(self, user: str, thread_id: str, text: str) -> None:
        reply = await self.post(user, "/api/chat", {"thread": thread_id, "text": text})
        assert json.loads(reply.text.splitlines()[-1]) == {"done": True}

    async def oldest_point(self, user: str, thread_id: str) -> str:
        shown = await self.client.get(
            "/api/conversation", params={"thread": thread_id}, headers=self.headers(user)
        )
        return str(shown.json()["tree"]["entries"][-1]["checkpoint_id"])


@pytest.fixture
def secret(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> str:
    """Auth on, for the page, with a fresh shared secret."""
    value = secrets.token_urlsafe(32)
    monkeypatch.setenv("MEMAGENT_AUTH", "true")
    monkeypatch.setenv("MEMAGENT_AUTH_SECRET", value)
    return value


class Users:
    """What two users left on the page: their threads and the secrets they told it."""

    def __init__(self) -> None:
        self.threads: dict[str, list[str]] = {"alice": [], "bob": []}
        self.canaries = {
            "alice": f"alice-canary-{uuid.uuid4().hex}",
            "bob": f"bob-canary-{uuid.uuid4().hex}",
        }


async def chat_as_both(secret: str, saver: MemagentSaver) -> Users:
    """Alice: two threads, with a detail forget, a rewind's fork and a forget; one more
    thread she deleted. Bob: one thread, with a forget."""
    users = Users()
    async with web_client() as client:
        page = Page(client, secret)
        for user in ("alice", "bob"):
            canary = users.canaries[user]
            first = await page.new_thread(user)
            users.threads[user].append(first)
            await page.say(user, first, f"my address is {canary}")
            await page.say(user, first, "my name is Ada")
            await page.post(user, "/api/forget-detail", {"thread": first, "quote": canary})
            target = await page.oldest_point(user, first)
            await page.post(user, "/api/rewind", {"thread": first, "checkpoint_id": target})
            await page.post(user, "/api/forget", {"thread": first})
        second = await page.new_thread("alice")
        users.threads["alice"].append(second)
        await page.say("alice", second, f"my pin is {users.canaries['alice']}")
        gone = await page.new_thread("alice")
        await page.say("alice", gone, "my dog is Rex")
    await admin.adelete(saver, gone, surface="web", actor="alice")
    users.threads["alice"].append(gone)
    return users


async def test_erase_user_leaves_nothing_of_her_and_every_row_of_bob_as_it_was(
    secret: str, saver: MemagentSaver, database_url: str
) -> None:
    users = await chat_as_both(secret, saver)
    alice = users.threads["alice"]
    assert rows(database_url, "SELECT owner FROM memagent_thread_owner ORDER BY owner") == [
        {"owner": "alice"},
        {"owner": "alice"},
        {"owner": "bob"},
    ], "the page records each live thread's owner (a delete removed the third's)"
    bob_before = rows_of_threads(database_url, users.threads["bob"])
    bob_audit = rows(database_url, "SELECT * FROM memagent_audit WHERE actor = 'bob' ORDER BY id")
    existed = counts_of(database_url, alice)
    assert existed["checkpoints"] > 0 and existed["memagent_thread_owner"] == 2
    with_rows = sum(any(counts_of(database_url, [t]).values()) for t in alice)

    receipt = await admin.aerase_user(saver, "alice", pseudonym_key=KEY)

    assert receipt.rows == existed, "the receipt counts exactly the rows that were there"
    assert receipt.threads == with_rows
    assert receipt.scan.clean and receipt.scan.tables >= len(ERASED_TABLES)
    assert receipt.server is None
    assert rows_naming(database_url, [users.canaries["alice"], *alice]) == {}
    assert rows(database_url, "SELECT * FROM memagent_audit WHERE actor = 'alice'") == []
    assert rows_of_threads(database_url, users.threads["bob"]) == bob_before
    assert (
        rows(database_url, "SELECT * FROM memagent_audit WHERE actor = 'bob' ORDER BY id")
        == bob_audit
    )
    assert needle_columns(database_url, users.canaries["bob"]) != {}, "bob's own words stay"

    pseudonym = user_pseudonym(KEY, "alice")
    kept = rows(
        database_url,
        "SELECT thread_id, actor, detail FROM memagent_audit WHERE operation = 'erase-user'",
    )
    assert kept == [{"thread_id": pseudonym, "actor": pseudonym, "detail": receipt.to_json()}]
    body = {k: v for k, v in receipt.to_json().items() if k != "digest"}
    assert receipt.digest == digest_of(body)
    renamed = rows(
        database_url,
        "SELECT DISTINCT thread_id FROM memagent_audit"
        " WHERE actor = %s AND operation <> 'erase-user'",
        pseudonym,
    )
    acted_on = (alice[0], alice[2])  # her first thread's memory changes, and the delete
    assert {row["thread_id"] for row in renamed} == {thread_pseudonym(KEY, t) for t in acted_on}
    assert receipt.audit_lines == count(
        database_url, "SELECT count(*) FROM memagent_audit WHERE thread_id LIKE 'thread:%%'"
    )

    again = await admin.aerase_user(saver, "alice", pseudonym_key=KEY)
    assert again.rows == dict.fromkeys(ERASED_TABLES, 0)
    assert (again.threads, again.audit_lines, again.scan.clean) == (0, 0, True)
    assert again.to_json().keys() == receipt.to_json().keys()
    assert again.user == receipt.user and again.digest != receipt.digest


async def test_an_unknown_user_is_a_receipt_of_zeros(
    saver: MemagentSaver, database_url: str
) -> None:
    chat = Chat(saver, "carol-thread")
    await chat.say("hello")
    before = rows_of_threads(database_url, ["carol-thread"])
    receipt = await admin.aerase_user(saver, "nobody", pseudonym_key=KEY)
    assert receipt.rows == dict.fromkeys(ERASED_TABLES, 0) and receipt.threads == 0
    assert receipt.scan.clean
    assert rows_of_threads(database_url, ["carol-thread"]) == before


async def test_a_page_thread_from_before_ownership_is_found_by_its_name(
    saver: MemagentSaver, database_url: str
) -> None:
    """A thread the page made before owners were recorded is ``<user>:<uuid>``; user
    ``a`` is not taken for the owner of user ``a:b``'s ``a:b:<uuid>``."""
    mine, theirs = f"a:{uuid.uuid4()}", f"a:b:{uuid.uuid4()}"
    for thread_id in (mine, theirs):
        await Chat(saver, thread_id).say("hello")
    receipt = await admin.aerase_user(saver, "a", pseudonym_key=KEY)
    assert receipt.threads == 1
    assert count(database_url, "SELECT count(*) FROM checkpoints WHERE thread_id = %s", mine) == 0
    assert count(database_url, "SELECT count(*) FROM checkpoints WHERE thread_id = %s", theirs) > 0


@pytest.mark.parametrize("user", ["", "   ", "al\x00ice", "x" * 300])
async def test_a_bad_user_name_is_refused_and_changes_nothing(
    saver: MemagentSaver, database_url: str, user: str
) -> None:
    await Chat(saver, "t").say("hello")
    before = rows_of_threads(database_url, ["t"])
    with pytest.raises(ValueError, match=r"[Uu]ser"):
        await admin.aerase_user(saver, user, pseudonym_key=KEY)
    assert rows_of_threads(database_url, ["t"]) == before
    assert count(database_url, "SELECT count(*) FROM memagent_audit") == 0


# --- ownership -----------------------------------------------------------------------------


async def test_without_auth_the_page_records_no_owner(
    settings: Settings, database_url: str
) -> None:
    async with web_client() as client:
        sent = await client.post("/api/chat", json={"thread": "t", "text": "hi"})
        assert sent.status_code == 200
    assert count(database_url, "SELECT count(*) FROM memagent_thread_owner") == 0


async def test_delete_prune_and_copy_keep_ownership_in_step(
    saver: MemagentSaver, database_url: str
) -> None:
    for thread_id in ("one", "two"):
        await Chat(saver, thread_id).say("hello")
        await saver.arecord_owner(thread_id, "alice")
    await saver.arecord_owner("one", "mallory")  # the first owner stays
    await saver.acopy_thread("one", "copy")
    owners = rows(database_url, "SELECT thread_id, owner FROM memagent_thread_owner ORDER BY 1")
    assert owners == [
        {"thread_id": "copy", "owner": "alice"},
        {"thread_id": "one", "owner": "alice"},
        {"thread_id": "two", "owner": "alice"},
    ]
    await admin.adelete(saver, "one")
    await saver.aprune(["two"], strategy="delete")
    owners = rows(database_url, "SELECT thread_id, owner FROM memagent_thread_owner")
    assert owners == [{"thread_id": "copy", "owner": "alice"}]


# --- pseudonyms --------------------------------------------------------------------------


async def test_the_pseudonym_key_is_the_setting_or_one_kept_outside_the_database(
    saver: MemagentSaver, settings: Settings, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    first = await admin.aerase_user(saver, "alice")
    key_file = settings.home / KEY_FILE
    assert key_file.stat().st_mode & 0o077 == 0, "the key is its owner's only"
    assert first.user == user_pseudonym(key_file.read_bytes(), "alice")
    assert (await admin.aerase_user(saver, "alice")).user == first.user, "the same key again"
    assert "alice" not in first.user and len(first.user) == len("user:") + 32

    monkeypatch.setenv("MEMAGENT_PSEUDONYM_KEY", "s" * 40)
    assert (await admin.aerase_user(saver, "alice")).user == user_pseudonym(b"s" * 40, "alice")
    monkeypatch.setenv("MEMAGENT_PSEUDONYM_KEY", "short")
    with pytest.raises(ValueError, match="at least 32"):
        await admin.aerase_user(saver, "alice")
    assert user_pseudonym(b"a" * 32, "alice") != user_pseudonym(b"b" * 32, "alice")


# --- the command -------------------------------------------------------------------------


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def test_erase_user_command_asks_first_and_prints_the_receipt(
    settings: Settings, database_url: str
) -> None:
    thread_id = f"alice:{uuid.uuid4()}"
    converse(thread_id, "my pin is 4711")
    existed = counts_of(database_url, [thread_id])

    declined = run("erase-user", "alice", input="n\n")
    assert declined.exit_code == 1
    assert "Erase every thread of user alice permanently?" in declined.stderr
    assert "Nothing was erased." in declined.stderr
    assert counts_of(database_url, [thread_id]) == existed

    erased = run("erase-user", "alice", "--yes", "--json")
    assert erased.exit_code == 0, erased.output
    receipt = json.loads(erased.stdout)
    assert receipt["rows"] == existed and receipt["threads"] == 1
    assert receipt["scan"]["clean"] is True and receipt["digest"].startswith("sha256:")
    assert "alice" not in erased.stdout, "the receipt names nobody"

    text = run("erase-user", "alice", "--yes")
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("Erased user alice: 0 threads; 0 checkpoints")
    assert "nothing found" in text.stdout
    audit = run("audit")
    assert "erase-user" in audit.stdout and "scan clean" in audit.stdout


@pytest.mark.parametrize("user", ["", "a\x01b"])
def test_erase_user_command_refuses_a_bad_name_in_one_line(settings: Settings, user: str) -> None:
    result = run("erase-user", user, "--yes")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("Error: ")


def test_erase_user_command_with_an_unreachable_server_erases_nothing(
    settings: Settings, database_url: str
) -> None:
    converse(f"alice:{uuid.uuid4()}", "hello")
    before = count(database_url, "SELECT count(*) FROM checkpoints")
    result = run("erase-user", "alice", "--yes", "--server", "http://127.0.0.1:9")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("Error: The server at http://127.0.0.1:9 could not be used")
    assert count(database_url, "SELECT count(*) FROM checkpoints") == before


# --- vacuum --------------------------------------------------------------------------------


def test_vacuum_full_gives_the_space_of_erased_rows_back(
    settings: Settings, database_url: str
) -> None:
    converse("big", "hello")
    with psycopg.connect(database_url) as conn:  # make the thread big enough to measure
        conn.execute(
            "INSERT INTO memagent_messages (thread_id, seq, message_id, type, blob)"
            " SELECT 'big', 1000 + g, 'm' || g, 'bytes', decode(repeat(md5(g::text), 64), 'hex')"
            " FROM generate_series(1, 2000) g"
        )
    assert run("delete", "big", "--yes").exit_code == 0

    plain = run("vacuum", "--json")
    assert plain.exit_code == 0, plain.output
    tables = json.loads(plain.stdout)["tables"]
    assert {"checkpoints", "checkpoint_blobs", "checkpoint_writes", "memagent_messages"} <= set(
        tables
    )
    assert json.loads(plain.stdout)["full"] is False

    full = run("vacuum", "--full", "--json")
    assert full.exit_code == 0, full.output
    messages = json.loads(full.stdout)["tables"]["memagent_messages"]
    assert messages["bytes_after"] < tables["memagent_messages"]["bytes_before"]
    text = run("vacuum")
    assert text.exit_code == 0 and "the space of removed rows can be reused" in text.stdout
    text = run("vacuum", "--full")
    assert text.exit_code == 0 and "VACUUM FULL done on" in text.stdout


def test_vacuum_with_the_database_gone_is_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2")
    result = run("vacuum", "--full")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("Error: database unavailable:")
    assert result.stderr.strip().count("\n") == 0


async def test_the_scan_reports_what_it_still_finds(saver: MemagentSaver) -> None:
    """The scan is a check, not a formality: another user who typed one of the erased
    thread ids still has it in their rows, untouched, and the receipt says so."""
    theirs = f"alice:{uuid.uuid4()}"
    await Chat(saver, theirs).say("hello")
    await Chat(saver, "bob-thread").say(f"alice's thread is {theirs}")
    receipt = await admin.aerase_user(saver, "alice", pseudonym_key=KEY)
    assert receipt.threads == 1
    assert not receipt.scan.clean
    assert receipt.scan.found.get("memagent_messages", 0) >= 1
    assert receipt.to_json()["scan"]["clean"] is False


# --- the README section --------------------------------------------------------------------

DOC_THREADS = {
    "alice:0b6f3c2e-4a1d-4c8e-9f7a-2d5e8b1c3a90": (
        "my name is Alice",
        "my city is Paris",
        "forget this",
    ),
    "alice:7c2d9e41-8b3a-4f6e-a1d2-5e9f0c8b7a63": ("my pin is 4711",),
    "bob:1e4a7d20-3c9b-4e8f-b6a1-9d2c5f8e0b47": ("my name is Bob",),
}
"""What the README's example starts from (it says so in words)."""
VARYING = [
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z?"), "<time>"),
    (re.compile(r"[0-9a-f]{32,64}"), "<hex>"),
    (re.compile(r"\d+"), "<n>"),
]
"""Times, digests and pseudonyms, and numbers (the JSON receipt's are compared exactly)."""


def lifecycle_commands() -> list[tuple[str, list[str]]]:
    """Each ``$ memagent ...`` line of the README's "Data lifecycle" console blocks."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Data lifecycle\n", 1)[1].split("\n## ", 1)[0]
    steps: list[tuple[str, list[str]]] = []
    in_console = False
    for line in section.splitlines():
        if line.startswith("```"):
            in_console = line.strip() == "```console"
        elif in_console and line.startswith("$ "):
            steps.append((line[2:], []))
        elif in_console and steps:
            steps[-1][1].append(line)
    return steps


def shape(lines: list[str]) -> list[str]:
    shaped = []
    for line in lines:
        for pattern, stand_in in VARYING:
            line = pattern.sub(stand_in, line)
        shaped.append(line.rstrip())
    return shaped


def test_every_command_in_the_data_lifecycle_doc_works_as_written(settings: Settings) -> None:
    for thread_id, said in DOC_THREADS.items():
        converse(thread_id, *said)
    steps = lifecycle_commands()
    assert [shlex.split(command)[1] for command, _ in steps] == [
        "erase-user",
        "erase-user",
        "audit",
        "vacuum",
        "vacuum",
    ]
    for command, shown in steps:
        args = shlex.split(command)[1:]
        result = run(*args, input="y\n" if "--yes" not in args else None)
        assert result.exit_code == 0, (args, result.output)
        if args[-1] == "--json":
            got, doc = json.loads(result.stdout), json.loads("\n".join(shown))
            assert got.keys() == doc.keys()
            for key in ("operation", "threads", "rows", "audit_lines", "server"):
                assert got[key] == doc[key], key
            assert (got["scan"]["found"], got["scan"]["clean"]) == ({}, True)
            continue
        assert shape(result.output.splitlines()) == shape(shown), command


async def test_erase_waits_for_a_running_turn_which_then_cannot_write_the_thread_back(
    saver: MemagentSaver, database_url: str
) -> None:
    thread_id = f"alice:{uuid.uuid4()}"
    chat = Chat(saver, thread_id)
    await chat.say("my pin is 4711")
    gate = Gate("a late reply")
    chat.model.script.append(gate)
    turn = asyncio.create_task(
        chat.graph.ainvoke({"messages": [HumanMessage("one more")]}, chat.config)
    )
    await gate.reached()
    lease = await asyncio.to_thread(wait_for_lease, database_url, thread_id)
    erase = asyncio.create_task(admin.aerase_user(saver, "alice", pseudonym_key=KEY))
    await asyncio.to_thread(wait_until_waiting_for, lease)
    gate.release.set()
    await asyncio.wait_for(turn, HANG_GUARD)
    receipt = await asyncio.wait_for(erase, HANG_GUARD)
    assert receipt.threads == 1 and receipt.scan.clean
    assert all(not found for found in rows_of_threads(database_url, [thread_id]).values())
    assert rows_naming(database_url, ["a late reply", "4711"]) == {}
