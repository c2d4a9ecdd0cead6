"""``langgraph dev`` on memagent's Postgres saver, tested end to end through the SDK.

Each server is a real ``langgraph dev`` subprocess, started from this venv's bin
directory with the project's own ``langgraph.json`` (copied into a scratch working
directory, next to links to ``agent/`` and ``tools/``, so the server's
``.langgraph_api/`` state is private to it) on a fresh database, with the offline
model. One plain server and one with ``MEMAGENT_AUTH=true`` serve the whole module;
both are always stopped (their process group is terminated, then killed) even when a
test or the startup fails. The ground truth for what was saved is PostgreSQL itself.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from psycopg.conninfo import conninfo_to_dict

from agent import auth as memagent_auth
from agent.checkpointer import MemagentSaver, open_saver
from agent.model import OFFLINE_LABEL
from agent.prompts import (
    ERASE_CONFIRMATION,
    ERASE_DECLINED,
    ERASE_NOT_REACHED_THREAD_STATE,
    ERASE_QUESTION,
    REMOVED_MARKER,
)
from agent.prompts import (
    ERASE_NOT_REACHED_LOGS as LOGS,
)
from agent.store.receipt import ERASED_TABLES
from tests.helpers import (
    FOREIGN_ORIGINS,
    PROJECT,
    REBOUND_NAME,
    STATE_CHANGING_ENDPOINTS,
    THREAD_TABLES,
    assert_refused,
    check_model_calls,
    claims,
    free_port,
    fresh_database,
    needle_columns,
    rows,
    rows_naming,
    serving_jwks,
    simple_cross_site_post,
    stored_state,
    thread_rows,
    wait_for_lease,
    wait_until_waiting_for,
    working_body,
)
from tools import admin

LANGGRAPH = Path(sys.executable).parent / "langgraph"
GRAPH = "agent"
STARTUP_SECONDS = 90.0
STOP_SECONDS = 20.0

# --- running a server -------------------------------------------------------------


@dataclass
class Server:
    """A running ``langgraph dev`` and what a test needs to talk to it."""

    url: str
    database_url: str
    log: Path
    secret: str | None = None

    def client(self, user: str | None = None, **headers: str) -> SyncLangGraphClient:
        """An SDK client; with ``user``, carrying that user's bearer token."""
        if user is not None:
            assert self.secret is not None, "this server runs without auth"
            token = memagent_auth.issue_token(user, self.secret)
            headers["Authorization"] = f"Bearer {token}"
        return get_sync_client(url=self.url, api_key=None, headers=headers)

    def log_tail(self, lines: int = 60) -> str:
        """The end of the server's output, for failure messages."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def server_env(workdir: Path, overrides: dict[str, str]) -> dict[str, str]:
    """The server's environment: this one minus anything memagent or LangSmith reads."""
    dropped = ("MEMAGENT_", "LANGSMITH_", "LANGCHAIN_", "LANGGRAPH_", "OPENAI_")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(dropped) and key != "DATABASE_URL"
    }
    env.update(
        MEMAGENT_MODEL="offline",
        MEMAGENT_HOME=str(workdir / "home"),
        LANGGRAPH_NO_VERSION_CHECK="true",  # no network
        LANGSMITH_TRACING="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Terminates the server and everything it started; kills them if they linger."""
    for sig, wait in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, STOP_SECONDS)):
        if process.poll() is not None:
            break
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
    # Children left in the group (none expected) go too.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def prepare_workdir(workdir: Path) -> None:
    """A scratch project directory: the project's ``langgraph.json`` and its packages."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT / "langgraph.json", workdir / "langgraph.json")
    for package in ("agent", "tools"):
        (workdir / package).symlink_to(PROJECT / package, target_is_directory=True)


@contextmanager
def running_server(
    workdir: Path, env: dict[str, str], secret: str | None = None
) -> Iterator[Server]:
    """Starts ``langgraph dev`` in ``workdir`` and yields it once ``/ok`` answers."""
    prepare_workdir(workdir)
    port = free_port()
    log = workdir.parent / f"{workdir.name}.log"
    server = Server(
        url=f"http://127.0.0.1:{port}",
        database_url=env.get("DATABASE_URL", ""),
        log=log,
        secret=secret,
    )
    command = [str(LANGGRAPH), "dev", "--no-browser", "--no-reload"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"langgraph dev exited with {process.returncode}:\n{server.log_tail()}")
            with suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/ok", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev did not answer /ok in time:\n{server.log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        stop_process_group(process)


@pytest.fixture(scope="module")
def server(postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``langgraph dev`` without auth, on a fresh database."""
    with fresh_database(postgres_server_url, "memagent_server") as database_url:
        workdir = tmp_path_factory.mktemp("server") / "app"
        env = server_env(workdir, {"DATABASE_URL": database_url})
        with running_server(workdir, env) as running:
            yield running


@pytest.fixture(scope="module")
def auth_server(
    postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``langgraph dev`` with ``MEMAGENT_AUTH=true``, on a fresh database."""
    secret = secrets.token_urlsafe(32)
    with fresh_database(postgres_server_url, "memagent_server") as database_url:
        workdir = tmp_path_factory.mktemp("auth-server") / "app"
        env = server_env(
            workdir,
            {
                "DATABASE_URL": database_url,
                "MEMAGENT_AUTH": "true",
                memagent_auth.SECRET_VARIABLE: secret,
            },
        )
        with running_server(workdir, env, secret) as running:
            yield running


# --- talking to it ----------------------------------------------------------------


def say(client: SyncLangGraphClient, thread_id: str, text: str) -> list[dict[str, Any]]:
    """Sends one user message and returns the thread's messages after the turn."""
    turn: Any = {"messages": [{"role": "user", "content": text}]}
    result = client.runs.wait(thread_id, GRAPH, input=turn)
    assert isinstance(result, dict) and "messages" in result, result
    return list(result["messages"])


def texts(messages: list[dict[str, Any]], kind: str | None = None) -> list[str]:
    """The contents of ``messages`` (only those of type ``kind`` if given)."""
    return [str(m["content"]) for m in messages if kind is None or m["type"] == kind]


def state_messages(client: SyncLangGraphClient, thread_id: str) -> list[dict[str, Any]]:
    """The head's messages."""
    state = client.threads.get_state(thread_id)
    return list(state["values"].get("messages", []))  # type: ignore[union-attr]


def owner(client: SyncLangGraphClient, thread_id: str) -> Any:
    """The owner the server stamped on a thread's metadata."""
    return (client.threads.get(thread_id)["metadata"] or {}).get(memagent_auth.OWNER_KEY)


def history(client: SyncLangGraphClient, thread_id: str) -> list[dict[str, Any]]:
    """The thread's root checkpoints through the API, newest first."""
    return [dict(entry) for entry in client.threads.get_history(thread_id, limit=1000)]


def checkpoint_id(entry: dict[str, Any]) -> str:
    """The id of a history entry's checkpoint."""
    return str(entry["checkpoint"]["checkpoint_id"])


def turn_points(client: SyncLangGraphClient, thread_id: str) -> list[dict[str, Any]]:
    """The rewind points (``input`` checkpoints with a user message to come), oldest first."""
    points = [h for h in history(client, thread_id) if h["metadata"].get("source") == "input"]
    return list(reversed(points))


def http_status(call: Any, *args: Any, **kwargs: Any) -> int:
    """The HTTP status a failing SDK call got (fails the test if it succeeded)."""
    with pytest.raises(httpx.HTTPStatusError) as caught:
        call(*args, **kwargs)
    return caught.value.response.status_code


# --- the plain server ---------------------------------------------------------------


def test_server_uses_the_memagent_saver(server: Server) -> None:
    """The server loaded memagent's saver (not its own) and persists into PostgreSQL."""
    config = json.loads((PROJECT / "langgraph.json").read_text())
    assert config["checkpointer"]["serde"]["pickle_fallback"] is False
    assert config["auth"]["disable_studio_auth"] is True
    assert "Using custom checkpointer: MemagentSaver" in server.log.read_text(errors="replace")
    client = server.client()
    thread = client.threads.create()
    assert memagent_auth.OWNER_KEY not in (thread["metadata"] or {})  # auth off: no stamp
    say(client, thread["thread_id"], "my name is Ada")
    assert thread_rows(server.database_url, thread["thread_id"])["checkpoints"] > 0


def test_forget_through_the_api(server: Server) -> None:
    """ "forget this" clears the head, leaves one ``memory_cleared`` checkpoint, keeps the rest."""
    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    say(client, thread_id, "my name is Ada")
    say(client, thread_id, "my color is green")
    before = {checkpoint_id(h) for h in history(client, thread_id)}

    say(client, thread_id, "forget this")

    remaining = state_messages(client, thread_id)
    assert texts(remaining, "human") == []
    assert not any("Ada" in t or "green" in t for t in texts(remaining))
    cleared = rows(
        server.database_url,
        "SELECT checkpoint_id, metadata FROM checkpoints"
        " WHERE thread_id = %s AND checkpoint_ns = '' AND metadata @> '{\"memory_cleared\": true}'",
        thread_id,
    )
    assert len(cleared) == 1, cleared
    assert isinstance(cleared[0]["metadata"]["timestamp"], int)
    assert cleared[0]["metadata"]["reason"]
    marked = [h for h in history(client, thread_id) if h["metadata"].get("memory_cleared")]
    assert [checkpoint_id(h) for h in marked] == [cleared[0]["checkpoint_id"]]
    assert before <= {checkpoint_id(h) for h in history(client, thread_id)}  # soft forget

    answer = texts(say(client, thread_id, "what is my name?"), "ai")[-1]
    assert "don't know your name" in answer


def test_rewind_through_the_tool(server: Server) -> None:
    """ "undo" and "go back to <id>" rewind; history shows the fork; a forget can be undone."""
    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    for text in ("my name is Ada", "my color is green", "my pet is a cat"):
        say(client, thread_id, text)
    points = turn_points(client, thread_id)  # before "my name", "my color", "my pet"

    say(client, thread_id, "undo")
    assert texts(state_messages(client, thread_id), "human") == [
        "my name is Ada",
        "my color is green",
    ]
    head = history(client, thread_id)[0]
    assert head["metadata"]["rewound_to"] == checkpoint_id(points[2])
    assert head["parent_checkpoint"]["checkpoint_id"] == checkpoint_id(points[2])

    say(client, thread_id, f"go back to {checkpoint_id(points[1])}")
    assert texts(state_messages(client, thread_id), "human") == ["my name is Ada"]
    rewinds = [
        h["metadata"]["rewound_to"]
        for h in history(client, thread_id)
        if h["metadata"].get("rewound_to")
    ]
    assert rewinds == [checkpoint_id(points[1]), checkpoint_id(points[2])]

    before_forget = checkpoint_id(history(client, thread_id)[0])
    say(client, thread_id, "forget this")
    assert texts(state_messages(client, thread_id), "human") == []
    say(client, thread_id, f"go back to {before_forget}")
    assert texts(state_messages(client, thread_id), "human") == ["my name is Ada"]
    assert "Ada" in texts(say(client, thread_id, "what is my name?"), "ai")[-1]


def test_studio_fork_and_edit_with_update_state(server: Server) -> None:
    """Studio's own time travel (``update_state`` at a checkpoint) works on the saver."""
    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    for text in ("my name is Ada", "my color is green"):
        say(client, thread_id, text)
    before_color = turn_points(client, thread_id)[1]

    forked = client.threads.update_state(thread_id, None, checkpoint_id=checkpoint_id(before_color))
    head = history(client, thread_id)[0]
    assert checkpoint_id(head) == forked["checkpoint"]["checkpoint_id"]
    assert head["parent_checkpoint"]["checkpoint_id"] == checkpoint_id(before_color)
    assert texts(state_messages(client, thread_id), "human") == ["my name is Ada"]
    assert "don't know your color" in texts(say(client, thread_id, "what is my color?"), "ai")[-1]

    edited = client.threads.update_state(
        thread_id,
        {"messages": [{"role": "user", "content": "my color is blue"}]},
        checkpoint_id=checkpoint_id(before_color),
    )
    stored = rows(
        server.database_url,
        "SELECT metadata FROM checkpoints WHERE thread_id = %s AND checkpoint_id = %s",
        thread_id,
        edited["checkpoint"]["checkpoint_id"],
    )
    assert stored and stored[0]["metadata"]["source"] == "update"
    assert not {"memory_cleared", "rewound_to"} & set(stored[0]["metadata"])
    assert texts(state_messages(client, thread_id), "human") == [
        "my name is Ada",
        "my color is blue",
    ]
    assert "blue" in texts(say(client, thread_id, "what is my color?"), "ai")[-1]


def test_delete_thread_removes_every_row(server: Server) -> None:
    """``DELETE /threads/<id>`` goes through the saver's atomic delete."""
    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    say(client, thread_id, "my name is Ada")
    keep = client.threads.create()["thread_id"]
    say(client, keep, "my name is Bob")
    assert thread_rows(server.database_url, thread_id)["checkpoint_writes"] > 0

    client.threads.delete(thread_id)

    assert http_status(client.threads.get_state, thread_id) == 404
    assert thread_rows(server.database_url, thread_id) == dict.fromkeys(THREAD_TABLES, 0)
    assert texts(state_messages(client, keep), "human") == ["my name is Bob"]

    # Pruning: "delete" is the same delete; "keep_latest" is refused by langgraph dev.
    assert http_status(client.threads.prune, [keep], strategy="keep_latest") == 422
    assert thread_rows(server.database_url, keep)["checkpoints"] > 0
    client.threads.prune([keep], strategy="delete")
    assert thread_rows(server.database_url, keep) == dict.fromkeys(THREAD_TABLES, 0)


async def test_a_server_run_waits_for_another_process_holding_the_thread(
    server: Server,
) -> None:
    """A run through the server holds the same thread lease as the CLI and ``tools.admin``.

    The server's own run queue is per server process; a ``memagent forget`` from a
    shell, or a second server on the same database, only meets it in the database.
    """
    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    say(client, thread_id, "my name is Ada")
    before = thread_rows(server.database_url, thread_id)
    async with open_saver(database_url=server.database_url) as saver:
        async with saver.thread_lease(thread_id):  # as a memory operation in another process
            lease = await asyncio.to_thread(wait_for_lease, server.database_url, thread_id)
            turn: Any = {"messages": [{"role": "user", "content": "my color is green"}]}
            run = await asyncio.to_thread(client.runs.create, thread_id, GRAPH, input=turn)
            await asyncio.to_thread(wait_until_waiting_for, lease)  # the server's run tries
            waited = thread_rows(server.database_url, thread_id) == before
        await asyncio.to_thread(client.runs.join, thread_id, run["run_id"])
    assert waited
    assert texts(state_messages(client, thread_id), "human") == [
        "my name is Ada",
        "my color is green",
    ]


def test_copy_thread_keeps_history_exact(server: Server) -> None:
    """``POST /threads/<id>/copy`` copies checkpoints, memory markers and parents as they are."""
    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    for text in (
        "my name is Ada",
        "forget this",
        "my color is red",
        "my pet is a dog",
        "undo",
        "hi",
    ):
        say(client, thread_id, text)

    # The SDK types copy() as returning None; the server answers with the new thread.
    copied: Any = client.threads.copy(thread_id)  # type: ignore[func-returns-value]
    copy_id = copied["thread_id"]

    def shape(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (
                checkpoint_id(h),
                (h["parent_checkpoint"] or {}).get("checkpoint_id"),
                h["metadata"].get("source"),
                h["metadata"].get("memory_cleared"),
                h["metadata"].get("rewound_to"),
                texts(h["values"].get("messages", [])),
            )
            for h in entries
        ]

    assert shape(history(client, copy_id)) == shape(history(client, thread_id))
    assert thread_rows(server.database_url, copy_id) == thread_rows(server.database_url, thread_id)
    say(client, copy_id, "my name is Eve")
    assert "Eve" not in " ".join(texts(state_messages(client, thread_id)))


@pytest.mark.db  # starts an embedded PostgreSQL of its own
@pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR")  # pgserver's runtime dir on CI
def test_server_on_embedded_postgres(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Without ``DATABASE_URL`` the server runs on the embedded PostgreSQL, and the data stays.

    The server's exit should also stop that database (nobody else uses it here) and
    leave pgserver's list of users empty; otherwise it runs on with a dead user listed
    and pgserver never stops it again.
    """
    import pgserver

    workdir = tmp_path_factory.mktemp("embedded") / "app"
    pgdata = workdir / "home" / "pgdata"
    with running_server(workdir, server_env(workdir, {})) as running:
        client = running.client()
        thread_id = client.threads.create()["thread_id"]
        say(client, thread_id, "my name is Ada")
        say(client, thread_id, "forget this")
        assert texts(state_messages(client, thread_id), "human") == []
    users_file = pgdata / ".handle_pids.json"
    users_left = json.loads(users_file.read_text()) if users_file.exists() else []
    still_running = (pgdata / "postmaster.pid").exists()

    embedded = pgserver.get_server(pgdata, cleanup_mode="delete")  # the data, again
    try:
        cleared = rows(
            str(embedded.get_uri()),
            "SELECT count(*) AS n FROM checkpoints"
            " WHERE thread_id = %s AND metadata ? 'memory_cleared'",
            thread_id,
        )
        assert cleared[0]["n"] == 1
    finally:
        embedded.cleanup()
        stop_leftover_postgres(pgdata)

    assert (still_running, users_left) == (False, [])


def stop_leftover_postgres(pgdata: Path) -> None:
    """Stops the embedded PostgreSQL this test started if the server left it running.

    pgserver stops it when its last user lets go; a server that never did (killed, or
    before ``release_embedded_postgres`` existed) stays listed as a user, so the postmaster
    (the pid in its own pid file) is told to shut down here.
    """
    pid_file = pgdata / "postmaster.pid"
    if pid_file.exists():
        with suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGINT)


def test_server_names_its_model_and_database(server: Server) -> None:
    """Start-up says, in one line, which model and which database memagent uses."""
    lines = [
        line
        for line in server.log.read_text(errors="replace").splitlines()
        if line.startswith("memagent: ")
    ]
    info = conninfo_to_dict(server.database_url)
    database = f"PostgreSQL at {info['host']}:{info.get('port', 5432)}/{info['dbname']}"
    assert lines == [f"memagent: model {OFFLINE_LABEL}, database {database}"]


@pytest.mark.parametrize("reload", [False, True], ids=["no-reload", "auto-reload"])
def test_bad_auth_setting_stops_the_server_with_one_line(
    reload: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``MEMAGENT_AUTH=true`` with a short secret: one clear line, no traceback, no server.

    With auto-reload the reloader must not stay behind, watching files with nothing
    listening. No database is needed: the server stops before it opens one.
    """
    workdir = tmp_path_factory.mktemp("bad-auth") / "app"
    prepare_workdir(workdir)
    env = server_env(
        workdir,
        {
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/never_opened",
            "MEMAGENT_AUTH": "true",
            "MEMAGENT_AUTH_SECRET": "too-short",
        },
    )
    command = [str(LANGGRAPH), "dev", "--no-browser", "--port", str(free_port())]
    if not reload:
        command.append("--no-reload")
    process = subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=STARTUP_SECONDS)
    except subprocess.TimeoutExpired:
        stop_process_group(process)
        output, _ = process.communicate()
        pytest.fail(f"langgraph dev is still running:\n{output.decode(errors='replace')}")
    finally:
        stop_process_group(process)
    text = output.decode(errors="replace")
    ours = [line for line in text.splitlines() if line.startswith("memagent: ")]
    assert ours == [
        "memagent: MEMAGENT_AUTH_SECRET must be a random string of at least 32 characters "
        "(it signs the tokens MEMAGENT_AUTH=true asks for), e.g. the output of "
        '`python -c "import secrets; print(secrets.token_urlsafe(32))"`.'
    ], text
    assert "Traceback" not in text, text
    if not reload:
        assert process.returncode != 0, text


# --- the server with auth ---------------------------------------------------------------


def test_auth_requires_a_valid_token(auth_server: Server) -> None:
    """No token, a forged token, or Studio's bypass header: 401. ``/ok`` stays open."""
    assert httpx.get(f"{auth_server.url}/ok", timeout=5).status_code == 200
    anonymous = auth_server.client()
    assert http_status(anonymous.threads.search) == 401
    assert http_status(anonymous.threads.create) == 401
    forged = memagent_auth.issue_token("alice", "not-the-server-secret-but-long-enough")
    assert http_status(auth_server.client(Authorization=f"Bearer {forged}").threads.search) == 401
    studio = auth_server.client(**{"x-auth-scheme": "langsmith"})
    assert http_status(studio.threads.search) == 401
    assert isinstance(auth_server.client("alice").threads.search(), list)  # a valid token works


def test_auth_refuses_expired_and_unsigned_tokens(auth_server: Server) -> None:
    """Through the server too: an expired token, or one with ``alg: none``, gets 401."""
    assert auth_server.secret is not None
    long_ago = datetime.now(UTC) - timedelta(days=10)
    expired = memagent_auth.issue_token("alice", auth_server.secret, days=1, now=long_ago)
    _, payload, _ = memagent_auth.issue_token("alice", auth_server.secret).split(".")
    unsigned_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=")
    unsigned = f"{unsigned_header.decode()}.{payload}."
    for token in (expired, unsigned):
        client = auth_server.client(Authorization=f"Bearer {token}")
        assert http_status(client.threads.search) == 401


def test_users_only_reach_their_own_threads(auth_server: Server) -> None:
    """User B gets 404 for everything on user A's thread, and cannot take it over."""
    alice, bob = auth_server.client("alice"), auth_server.client("bob")
    thread = alice.threads.create(metadata={memagent_auth.OWNER_KEY: "bob"})
    thread_id = thread["thread_id"]
    assert (thread["metadata"] or {})[memagent_auth.OWNER_KEY] == "alice"  # the stamp wins
    say(alice, thread_id, "my name is Ada")
    run_id = alice.runs.list(thread_id)[0]["run_id"]

    assert http_status(bob.threads.get, thread_id) == 404
    assert http_status(bob.threads.get_state, thread_id) == 404
    assert http_status(bob.threads.get_history, thread_id) == 404
    assert http_status(bob.runs.list, thread_id) == 404
    assert http_status(bob.runs.get, thread_id, run_id) == 404
    assert http_status(say, bob, thread_id, "forget this") == 404
    assert http_status(bob.threads.update_state, thread_id, {"messages": []}) == 404
    assert http_status(bob.threads.update, thread_id, metadata={"owner": "bob"}) == 404
    assert http_status(bob.threads.delete, thread_id) == 404
    assert http_status(bob.threads.copy, thread_id) == 409  # the server's "not found" for copy
    assert thread_id not in {t["thread_id"] for t in bob.threads.search()}
    assert thread_id in {t["thread_id"] for t in alice.threads.search()}

    assert texts(state_messages(alice, thread_id), "human") == ["my name is Ada"]
    assert owner(alice, thread_id) == "alice"

    # A thread made on the fly by a run belongs to whoever ran it.
    made = str(uuid.uuid4())
    alice.runs.wait(made, GRAPH, input={"messages": []}, if_not_exists="create")
    assert owner(alice, made) == "alice"
    assert http_status(bob.threads.get, made) == 404


def test_assistants_shared_and_private(auth_server: Server) -> None:
    """Everyone can use the graph's assistant; an assistant a user makes is theirs."""
    alice, bob = auth_server.client("alice"), auth_server.client("bob")
    shared = {a["assistant_id"] for a in alice.assistants.search()}
    assert shared == {a["assistant_id"] for a in bob.assistants.search()} and shared
    own = bob.assistants.create(GRAPH, name="bob's", metadata={memagent_auth.OWNER_KEY: "alice"})
    assert (own["metadata"] or {})[memagent_auth.OWNER_KEY] == "bob"
    assert own["assistant_id"] not in {a["assistant_id"] for a in alice.assistants.search()}
    assert http_status(alice.assistants.get, own["assistant_id"]) == 404


def test_memory_tools_cannot_reach_another_users_thread(auth_server: Server) -> None:
    """Naming A's thread or checkpoint in B's chat changes nothing of A's."""
    alice, bob = auth_server.client("alice"), auth_server.client("bob")
    a_thread = alice.threads.create()["thread_id"]
    say(alice, a_thread, "my name is Ada")
    say(alice, a_thread, "my color is green")
    a_point = checkpoint_id(turn_points(alice, a_thread)[1])
    a_head = checkpoint_id(history(alice, a_thread)[0])
    a_rows = thread_rows(auth_server.database_url, a_thread)
    b_thread = bob.threads.create()["thread_id"]
    say(bob, b_thread, "my name is Bob")

    reply = texts(say(bob, b_thread, f"go back to {a_point}"), "ai")[-1]
    assert f"couldn't go back to {a_point}: it is not a point of this conversation" in reply
    say(bob, b_thread, f"forget thread {a_thread}")

    assert texts(state_messages(bob, b_thread), "human") == []
    assert checkpoint_id(history(alice, a_thread)[0]) == a_head
    assert thread_rows(auth_server.database_url, a_thread) == a_rows
    assert texts(state_messages(alice, a_thread), "human") == [
        "my name is Ada",
        "my color is green",
    ]
    touched = rows(
        auth_server.database_url,
        "SELECT DISTINCT thread_id FROM checkpoints"
        " WHERE metadata ? 'memory_cleared' OR metadata ? 'rewound_to'",
    )
    assert [r["thread_id"] for r in touched] == [b_thread]
    audit = rows(
        auth_server.database_url,
        "SELECT thread_id, operation, surface, actor FROM memagent_audit"
        " WHERE thread_id IN (%s, %s)",
        a_thread,
        b_thread,
    )
    assert audit == [
        {"thread_id": b_thread, "operation": "forget", "surface": "server", "actor": "bob"}
    ]


def test_owner_deletes_own_thread(auth_server: Server) -> None:
    """The owner can still delete; the rows go."""
    alice = auth_server.client("alice")
    thread_id = alice.threads.create()["thread_id"]
    say(alice, thread_id, "my name is Ada")
    alice.threads.delete(thread_id)
    assert http_status(alice.threads.get_state, thread_id) == 404
    assert thread_rows(auth_server.database_url, thread_id) == dict.fromkeys(THREAD_TABLES, 0)


def test_owner_delete_is_audited_with_the_owner(auth_server: Server) -> None:
    """Deleting through the API records who did it, not just that the server did."""
    alice = auth_server.client("alice")
    thread_id = alice.threads.create()["thread_id"]
    say(alice, thread_id, "my name is Ada")
    alice.threads.delete(thread_id)
    audit = rows(
        auth_server.database_url,
        "SELECT operation, surface, actor FROM memagent_audit WHERE thread_id = %s",
        thread_id,
    )
    assert audit == [{"operation": "delete", "surface": "server", "actor": "alice"}]


def test_identity_provider_tokens_through_the_server(
    postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With a JWKS URL, the server takes the provider's subject as the owner.

    The provider is a real JWKS endpoint on 127.0.0.1; the server fetches its keys
    while it answers requests, which must not block its event loop.
    """
    with serving_jwks() as provider, fresh_database(postgres_server_url) as database_url:
        workdir = tmp_path_factory.mktemp("idp-server") / "app"
        env = server_env(
            workdir,
            {
                "DATABASE_URL": database_url,
                "MEMAGENT_AUTH": "true",
                "MEMAGENT_AUTH_JWKS_URL": provider.jwks_url,
                "MEMAGENT_AUTH_ISSUER": provider.issuer,
                "MEMAGENT_AUTH_AUDIENCE": provider.audience,
            },
        )
        with running_server(workdir, env) as running:
            token = provider.sign(claims(sub="auth0|64f1c2"))
            alice = running.client(Authorization=f"Bearer {token}")
            thread_id = alice.threads.create()["thread_id"]
            say(alice, thread_id, "my name is Ada")
            assert owner(alice, thread_id) == "auth0|64f1c2"
            for wrong in (claims(aud="another-api"), claims(iss="https://other/")):
                stranger = running.client(Authorization=f"Bearer {provider.sign(wrong)}")
                assert http_status(stranger.threads.search) == 401
            secret_token = memagent_auth.issue_token("auth0|64f1c2", "k" * 64)
            forged = running.client(Authorization=f"Bearer {secret_token}")
            assert http_status(forged.threads.get, thread_id) == 401


# --- the pieces, in process -----------------------------------------------------------


async def test_copy_thread_rows(saver: MemagentSaver, database_url: str) -> None:
    """``acopy_thread`` duplicates every row under the new id, metadata included."""
    from agent.graph import make_graph
    from agent.model import OfflineChatModel

    graph = make_graph(OfflineChatModel(), checkpointer=saver)
    source: RunnableConfig = {"configurable": {"thread_id": "source"}}
    for text in ("my name is Ada", "forget this", "my color is red", "undo"):
        await graph.ainvoke({"messages": [{"role": "user", "content": text}]}, source)

    await saver.acopy_thread("source", "target")
    await saver.acopy_thread("source", "target")  # again: no duplicate rows, no error

    def listing(thread: str) -> list[tuple[Any, ...]]:
        return [
            (r["checkpoint_id"], r["parent_checkpoint_id"], r["checkpoint"], r["metadata"])
            for r in rows(
                database_url,
                "SELECT * FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_id",
                thread,
            )
        ]

    assert listing("target") == listing("source")
    assert thread_rows(database_url, "target") == thread_rows(database_url, "source")
    target: RunnableConfig = {"configurable": {"thread_id": "target"}}
    assert (await graph.aget_state(target)).values == (await graph.aget_state(source)).values


async def test_delete_for_runs_rolls_back_only_those_runs(
    saver: MemagentSaver, database_url: str
) -> None:
    """``adelete_for_runs`` drops a run's checkpoints and writes: the thread is as before it."""
    from agent.graph import make_graph
    from agent.model import OfflineChatModel

    graph = make_graph(OfflineChatModel(), checkpointer=saver)
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    for run_id, text in ((first, "my name is Ada"), (second, "my color is red")):
        await graph.ainvoke(
            {"messages": [{"role": "user", "content": text}]},
            {**config, "metadata": {"run_id": run_id}},
        )
    after_first = rows(
        database_url,
        "SELECT checkpoint_id FROM checkpoints WHERE metadata ->> 'run_id' = %s",
        first,
    )
    assert after_first

    await saver.adelete_for_runs([second])

    left = rows(database_url, "SELECT metadata ->> 'run_id' AS run FROM checkpoints")
    assert {r["run"] for r in left} == {first}
    orphans = rows(
        database_url,
        "SELECT count(*) AS n FROM checkpoint_writes w WHERE NOT EXISTS (SELECT 1 FROM"
        " checkpoints c WHERE c.thread_id = w.thread_id AND c.checkpoint_id = w.checkpoint_id)",
    )
    assert orphans[0]["n"] == 0
    state = await graph.aget_state(config)
    assert [m.content for m in state.values["messages"] if m.type == "human"] == ["my name is Ada"]
    await saver.adelete_for_runs([])


# --- the web page, mounted through langgraph.json's http.app ----------------------


def test_the_server_offers_the_web_page_on_its_database(server: Server) -> None:
    page = httpx.get(f"{server.url}/memagent", follow_redirects=True, timeout=10)
    assert page.status_code == 200
    assert "<title>memagent</title>" in page.text
    assert httpx.get(f"{server.url}/memagent/static/app.js", timeout=10).status_code == 200

    thread_id = f"web-{uuid.uuid4()}"
    sent = httpx.post(
        f"{server.url}/memagent/api/chat",
        json={"thread": thread_id, "text": "my name is Ada"},
        timeout=60,
    )
    assert sent.status_code == 200, sent.text
    assert json.loads(sent.text.splitlines()[-1]) == {"done": True}
    saved = rows(
        server.database_url, "SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", thread_id
    )
    assert saved[0]["n"] > 0, "the page's turn is not in the server's database"
    assert httpx.get(f"{server.url}/ok", timeout=10).status_code == 200


def test_the_web_page_in_the_server_takes_the_same_tokens(auth_server: Server) -> None:
    assert httpx.get(f"{auth_server.url}/memagent/", timeout=10).status_code == 200
    refused = httpx.get(f"{auth_server.url}/memagent/api/threads", timeout=10)
    assert refused.status_code == 401
    assert "token" in refused.json()["error"]
    assert auth_server.secret is not None
    token = memagent_auth.issue_token("alice", auth_server.secret)
    mine = httpx.get(
        f"{auth_server.url}/memagent/api/threads",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert mine.status_code == 200
    assert mine.json() == {"threads": []}


# --- who may call the mounted page, and the server's CORS (issue 19) --------------------

STUDIO = "https://smith.langchain.com"
PAGE_ADDRESS = "Elm-guard 12 Main St"


@dataclass
class PageThread:
    """A conversation made through the server's page, the attacks' target."""

    server: Server
    thread_id: str
    checkpoint_id: str

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        port = self.server.url.rsplit(":", 1)[1]
        return f"http://{host}:{port}/memagent{path}"


def page_say(url: str, thread_id: str, text: str, **headers: str) -> None:
    """One turn through the page's API (JSON, as the page or a script sends it)."""
    sent = httpx.post(url, json={"thread": thread_id, "text": text}, headers=headers, timeout=60)
    assert sent.status_code == 200, sent.text
    assert json.loads(sent.text.splitlines()[-1]) == {"done": True}


@pytest.fixture(scope="module")
def page_thread(server: Server) -> PageThread:
    """Two turns through ``/memagent/``; the first turn's point is the rewind target."""
    thread_id = f"guard-{uuid.uuid4()}"
    chat = f"{server.url}/memagent/api/chat"
    page_say(chat, thread_id, f"my address is {PAGE_ADDRESS}")
    page_say(chat, thread_id, "my name is Ada")
    shown = httpx.get(
        f"{server.url}/memagent/api/conversation", params={"thread": thread_id}, timeout=10
    )
    oldest = shown.json()["tree"]["entries"][-1]["checkpoint_id"]
    return PageThread(server, thread_id, oldest)


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
@pytest.mark.parametrize("endpoint", STATE_CHANGING_ENDPOINTS)
def test_the_servers_page_refuses_cross_site_posts(
    page_thread: PageThread, endpoint: str, origin: str
) -> None:
    database_url, thread_id = page_thread.server.database_url, page_thread.thread_id
    before = stored_state(database_url, thread_id)
    body = working_body(endpoint, thread_id, page_thread.checkpoint_id, PAGE_ADDRESS)
    response = simple_cross_site_post(page_thread.url(endpoint), body, origin)
    assert_refused(response)
    assert "thread_id" not in response.json()
    assert stored_state(database_url, thread_id) == before


@pytest.mark.parametrize("path", ["/api/conversation?thread={thread}", "/api/threads", "/"])
def test_the_servers_page_reads_nothing_under_a_rebound_name(
    page_thread: PageThread, path: str
) -> None:
    port = page_thread.server.url.rsplit(":", 1)[1]
    response = httpx.get(
        page_thread.url(path.format(thread=page_thread.thread_id)),
        headers={"Host": f"{REBOUND_NAME}:{port}"},
        timeout=10,
    )
    assert "rebound its name" in assert_refused(response)
    for secret in (page_thread.thread_id, PAGE_ADDRESS, "Ada"):
        assert secret not in response.text


def test_the_servers_page_works_from_itself_localhost_and_scripts(page_thread: PageThread) -> None:
    own = page_thread.url("").removesuffix("/memagent")
    page_say(page_thread.url("/api/chat"), "guard-own", "my city is Paris", Origin=own)
    at_localhost = page_thread.url("", host="localhost").removesuffix("/memagent")
    shown = httpx.get(
        page_thread.url("/api/conversation", host="localhost"),
        params={"thread": "guard-own"},
        headers={"Origin": at_localhost},
        timeout=10,
    )
    assert shown.status_code == 200, shown.text
    assert shown.json()["messages"][0]["text"] == "my city is Paris"
    forgot = httpx.post(page_thread.url("/api/forget"), json={"thread": "guard-own"}, timeout=10)
    assert forgot.status_code == 200, forgot.text


def test_the_servers_own_api_answers_studio_and_no_other_site(server: Server) -> None:
    """``http.cors``: Studio's origin may call the API (preflight and request), and the
    memagent guard is not in its way; another site gets no CORS grant."""
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    granted = httpx.options(
        f"{server.url}/threads/search", headers={"Origin": STUDIO, **preflight}, timeout=10
    )
    assert granted.status_code == 200
    assert granted.headers["access-control-allow-origin"] == STUDIO
    searched = httpx.post(
        f"{server.url}/threads/search", json={"limit": 1}, headers={"Origin": STUDIO}, timeout=10
    )
    assert searched.status_code == 200, searched.text
    assert searched.headers["access-control-allow-origin"] == STUDIO

    evil = "http://evil.example"
    refused = httpx.options(
        f"{server.url}/threads/search", headers={"Origin": evil, **preflight}, timeout=10
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    read = httpx.post(
        f"{server.url}/threads/search", json={"limit": 1}, headers={"Origin": evil}, timeout=10
    )
    assert "access-control-allow-origin" not in read.headers  # the browser hides the answer


def test_the_servers_page_and_api_answer_a_bad_token_alike(auth_server: Server) -> None:
    assert auth_server.secret is not None
    long_ago = datetime.now(UTC) - timedelta(days=10)
    expired = memagent_auth.issue_token("alice", auth_server.secret, days=1, now=long_ago)
    forged = memagent_auth.issue_token("alice", "not-the-server-secret-but-long-enough")
    for header in (
        {},
        {"Authorization": "Bearer x.y"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {forged}"},
    ):
        page = httpx.get(f"{auth_server.url}/memagent/api/threads", headers=header, timeout=10)
        api = httpx.post(f"{auth_server.url}/threads/search", json={}, headers=header, timeout=10)
        assert page.status_code == api.status_code == 401, (page.text, api.text)
        assert page.json()["error"] == api.json()["detail"]


# --- human in the loop, and history on the message-once storage (issues 13, 11) -----


def unique_address() -> str:
    """An address said in one test only, so a scan of the shared database finds only it."""
    return f"Elm-{uuid.uuid4().hex[:10]} 12 Main St"


def ask_erase_for_good(client: SyncLangGraphClient, thread_id: str, address: str) -> Any:
    """Tells the offline model an address, then to forget it for good; the run pauses."""
    say(client, thread_id, f"my address is {address}")
    say(client, thread_id, "my name is Ada")
    turn: Any = {"messages": [{"role": "user", "content": "forget my address for good"}]}
    return client.runs.wait(thread_id, GRAPH, input=turn)


def thread_tables(database_url: str) -> list[str]:
    """Every table with a ``thread_id`` column: where a thread's rows can be."""
    found = rows(
        database_url,
        "SELECT table_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND column_name = 'thread_id' ORDER BY table_name",
    )
    return [r["table_name"] for r in found]


def thread_snapshot(database_url: str, thread_id: str) -> dict[str, set[str]]:
    """Every row of a thread in every table, each as its full text."""
    return {
        table: {
            r["row"]
            for r in rows(
                database_url,
                f"SELECT t::text AS row FROM {table} t WHERE thread_id = %s",
                thread_id,
            )
        }
        for table in thread_tables(database_url)
    }


def test_erase_for_good_is_an_sdk_interrupt_and_a_yes_erases_every_copy(server: Server) -> None:
    """The run pauses with a normal interrupt; ``Command(resume=True)`` erases for good."""
    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    address = unique_address()

    paused = ask_erase_for_good(client, thread_id, address)

    question = {
        "action": "erase_for_good",
        "question": ERASE_QUESTION,
        "thread_id": thread_id,
        "quotes": [address],
    }
    assert [i["value"] for i in paused["__interrupt__"]] == [question], paused
    state: Any = client.threads.get_state(thread_id)
    assert state["next"] == ["apply_memory"]
    assert [i["value"] for i in state["interrupts"]] == [question]
    waiting = [t for t in state["tasks"] if t["interrupts"]]
    assert [(t["name"], [i["value"] for i in t["interrupts"]]) for t in waiting] == [
        ("apply_memory", [question])
    ]
    assert client.threads.get(thread_id)["status"] == "interrupted"
    assert needle_columns(server.database_url, address)  # nothing erased yet

    client.runs.wait(thread_id, GRAPH, command={"resume": True})

    assert needle_columns(server.database_url, address) == {}
    assert client.threads.get(thread_id)["status"] == "idle"
    head = state_messages(client, thread_id)
    assert texts(head, "human")[:2] == [f"my address is {REMOVED_MARKER}", "my name is Ada"]
    assert texts(head, "ai")[-1].startswith(ERASE_CONFIRMATION)
    entries = history(client, thread_id)
    for entry in entries:  # every checkpoint still loads, none holds the address
        at = client.threads.get_state(thread_id, checkpoint_id=checkpoint_id(entry))
        assert address.lower() not in json.dumps(at["values"]).lower()
    assert "Ada" in texts(say(client, thread_id, "what is my name?"), "ai")[-1]
    assert address.lower() not in json.dumps(state_messages(client, thread_id)).lower()

    audit = rows(
        server.database_url,
        "SELECT operation, surface, actor, detail FROM memagent_audit WHERE thread_id = %s",
        thread_id,
    )
    assert [(a["operation"], a["surface"]) for a in audit] == [("redact", "server")]
    detail = audit[0]["detail"]
    assert detail["confirmed"] is True and detail["memagent_messages"] >= 1
    assert all(isinstance(value, int) for value in detail.values()), detail  # counts only


@pytest.mark.parametrize("answer", [False, "no"])
def test_erase_for_good_resumed_with_no_erases_nothing(server: Server, answer: Any) -> None:
    """``Command(resume=False)``: every row stays as it was, the address is still known."""
    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    address = unique_address()
    ask_erase_for_good(client, thread_id, address)
    hits = needle_columns(server.database_url, address)
    before = thread_snapshot(server.database_url, thread_id)

    client.runs.wait(thread_id, GRAPH, command={"resume": answer})

    after = thread_snapshot(server.database_url, thread_id)
    for table, kept in before.items():
        if table != "memagent_thread_leases":  # the run's lease comes and goes
            assert kept <= after[table], table  # no row changed or went
    assert needle_columns(server.database_url, address) == hits
    head = state_messages(client, thread_id)
    assert texts(head, "human")[0] == f"my address is {address}"
    assert texts(head, "ai")[-1] == ERASE_DECLINED
    assert client.threads.get(thread_id)["status"] == "idle"
    audit = rows(
        server.database_url, "SELECT detail FROM memagent_audit WHERE thread_id = %s", thread_id
    )
    assert [a["detail"] for a in audit] == [{"confirmed": False}]


def runs_holding(client: SyncLangGraphClient, thread_id: str, text: str) -> list[str]:
    """The ids of the thread's runs on the server whose stored record holds ``text``."""
    runs = client.runs.list(thread_id, limit=100)
    return [str(run["run_id"]) for run in runs if text.lower() in json.dumps(run).lower()]


def run_inputs(client: SyncLangGraphClient, thread_id: str) -> list[Any]:
    """What each of the thread's runs was started with (input or command), oldest first."""
    runs = sorted(client.runs.list(thread_id, limit=100), key=lambda run: run["created_at"])
    return [run["kwargs"].get("input") or run["kwargs"].get("command") for run in runs]  # type: ignore[typeddict-item]


def test_erase_for_good_in_the_server_deletes_the_runs_that_said_it(server: Server) -> None:
    """The erase also deletes, through the server's API, the thread's runs whose input
    held the detail, keeps its other runs and every checkpoint, and says what it could
    not reach; another thread that said the same stays as it was."""
    client = server.client()
    thread_id, other = (client.threads.create()["thread_id"] for _ in range(2))
    address = unique_address()
    say(client, other, f"my address is {address}")
    other_runs = client.runs.list(other, limit=100)
    other_rows = needle_columns(server.database_url, address)  # the other thread's only
    ask_erase_for_good(client, thread_id, address)
    said_it = runs_holding(client, thread_id, address)
    assert len(said_it) == 1
    before = root_checkpoint_ids(server.database_url, thread_id)

    client.runs.wait(thread_id, GRAPH, command={"resume": True})

    assert runs_holding(client, thread_id, address) == []
    remaining = run_inputs(client, thread_id)
    assert said_it[0] not in {str(run["run_id"]) for run in client.runs.list(thread_id)}
    assert [m["content"] for i in remaining[:2] for m in i["messages"]] == [
        "my name is Ada",
        "forget my address for good",
    ]
    assert remaining[2] == {"resume": True}
    assert before <= root_checkpoint_ids(server.database_url, thread_id)  # none rolled back
    record = client.threads.get(thread_id)
    assert address.lower() not in json.dumps([record["values"], record["metadata"]]).lower()
    assert REMOVED_MARKER in json.dumps(record["values"])
    assert needle_columns(server.database_url, address) == other_rows
    assert client.runs.list(other, limit=100) == other_runs
    assert len(runs_holding(client, other, address)) == 1
    reply = texts(state_messages(client, thread_id), "ai")[-1]
    assert reply == (
        f"{ERASE_CONFIRMATION} The server also deleted 1 earlier run record(s) that held it."
        f" Out of memagent's reach, so it may still be there: {LOGS}."
    )
    audit = rows(
        server.database_url, "SELECT detail FROM memagent_audit WHERE thread_id = %s", thread_id
    )
    assert [a["detail"]["server_runs"] for a in audit] == [1]
    assert "Ada" in texts(say(client, thread_id, "what is my name?"), "ai")[-1]


def test_redact_with_server_deletes_the_threads_runs_that_said_it(
    server: Server, tmp_path: Path
) -> None:
    """``memagent redact THREAD --text T --server URL``, beside the server: the database
    is erased, then the server deletes the thread's runs that said it, and only those."""
    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    address = unique_address()
    say(client, thread_id, f"my address is {address.upper()}")
    say(client, thread_id, "my name is Ada")
    before = root_checkpoint_ids(server.database_url, thread_id)
    env = server_env(tmp_path, {"DATABASE_URL": server.database_url})
    memagent = Path(sys.executable).parent / "memagent"
    command = [str(memagent), "redact", thread_id, "--text", address, "--yes", "--json"]

    done = subprocess.run(
        [*command, "--server", server.url], env=env, capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    latest_state = ERASE_NOT_REACHED_THREAD_STATE
    assert result["server"] == {"runs_removed": 1, "not_reached": [latest_state, LOGS]}
    assert runs_holding(client, thread_id, address) == []
    assert [m["content"] for i in run_inputs(client, thread_id) for m in i["messages"]] == [
        "my name is Ada"
    ]
    assert root_checkpoint_ids(server.database_url, thread_id) == before  # none rolled back
    assert needle_columns(server.database_url, address) == {}
    assert REMOVED_MARKER in json.dumps(client.threads.get_state(thread_id)["values"])
    # As the result says: the server's copy of the last state, until the next run ends.
    assert address.lower() in json.dumps(client.threads.get(thread_id)["values"]).lower()
    assert "Ada" in texts(say(client, thread_id, "what is my name?"), "ai")[-1]
    assert address.lower() not in json.dumps(client.threads.get(thread_id)["values"]).lower()

    again = subprocess.run(
        command, env={**env, "MEMAGENT_SERVER_URL": server.url}, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["server"] == {"runs_removed": 0, "not_reached": [LOGS]}
    audit = rows(
        server.database_url,
        "SELECT surface, detail FROM memagent_audit WHERE thread_id = %s ORDER BY id",
        thread_id,
    )
    assert [(a["surface"], a["detail"]["server_runs"]) for a in audit] == [("cli", 1), ("cli", 0)]


def message_view(message: Any) -> tuple[Any, ...]:
    """What a message says, alike for an SDK dict and a message object (ids left out)."""
    get = message.get if isinstance(message, dict) else lambda key: getattr(message, key, None)
    calls = [(c["name"], c["args"]) for c in get("tool_calls") or []]
    return (get("type"), get("content"), calls, get("tool_call_id"))


def root_checkpoint_ids(database_url: str, thread_id: str) -> set[str]:
    """The thread's root checkpoints, as stored."""
    found = rows(
        database_url,
        "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = ''",
        thread_id,
    )
    return {r["checkpoint_id"] for r in found}


async def test_history_lists_every_checkpoint_with_its_messages(server: Server) -> None:
    """``get_history`` gives every stored checkpoint, each with the messages
    langgraph's ``InMemorySaver`` has at the same step of the same conversation."""
    from langgraph.checkpoint.memory import InMemorySaver

    from agent.graph import make_graph
    from agent.model import OfflineChatModel

    script = (
        "my name is Ada",
        "my color is green",
        "forget this",
        "my pet is a cat",
        "my address is 1 Elm Rd",
        "forget my address",
        "what is my pet?",
    )
    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    reference = make_graph(OfflineChatModel(), checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "reference"}}
    for text in script:
        say(client, thread_id, text)
        await reference.ainvoke({"messages": [{"role": "user", "content": text}]}, config)

    entries = history(client, thread_id)
    expected = [snapshot async for snapshot in reference.aget_state_history(config)]
    assert {checkpoint_id(h) for h in entries} == root_checkpoint_ids(
        server.database_url, thread_id
    )
    assert len(entries) == len(expected)
    for entry, snapshot in zip(entries, expected, strict=True):
        assert (entry["metadata"]["source"], entry["metadata"]["step"]) == (
            snapshot.metadata["source"],  # type: ignore[index]
            snapshot.metadata["step"],  # type: ignore[index]
        )
        assert entry["next"] == list(snapshot.next)
        assert [message_view(m) for m in entry["values"].get("messages", [])] == [
            message_view(m) for m in snapshot.values.get("messages", [])
        ]
    # A message keeps its id from checkpoint to checkpoint until a memory change.
    for child, parent in itertools.pairwise(entries):
        assert child["parent_checkpoint"]["checkpoint_id"] == checkpoint_id(parent)
        if {"memory_cleared", "memory_redacted"} & set(child["metadata"]):
            continue
        ids = [m["id"] for m in parent["values"].get("messages", [])]
        assert [m["id"] for m in child["values"].get("messages", [])][: len(ids)] == ids


async def test_a_long_thread_through_the_server_keeps_every_call_within_the_budget(
    server: Server,
) -> None:
    """60 turns through the API: the state before every model call fits the budget.

    The server builds its graph from settings; this module's server sets no
    ``MEMAGENT_CONTEXT_TOKENS``, so its budget is the offline model's default. The
    offline model cannot record what it received, but its summaries never fail, so each
    call receives exactly the head it is run on: the checkpoints whose next step is the
    model, read back from the database.
    """
    from langchain_core.messages import SystemMessage

    from agent.graph import make_graph
    from agent.memory.budget import OFFLINE_CONTEXT_TOKENS
    from agent.model import OfflineChatModel
    from agent.prompts import SYSTEM_PROMPT
    from tools.memory import memory_tools

    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    sent = [
        f"turn {n}: my fact {n} is the number {n * 7}, and please keep it in mind while we"
        " go on planning the trip for the week ahead"
        for n in range(60)
    ]
    for text in sent:
        assert f'Noted: "{text}"' in texts(say(client, thread_id, text), "ai")[-1]

    async with open_saver(database_url=server.database_url) as saver:
        graph = make_graph(OfflineChatModel(), checkpointer=saver)
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        snapshots = [s async for s in graph.aget_state_history(config)]
    calls = [
        [SystemMessage(SYSTEM_PROMPT), *s.values["messages"]]
        for s in reversed(snapshots)
        if s.next == ("agent",)
    ]
    check_model_calls(calls, budget=OFFLINE_CONTEXT_TOKENS, tools=memory_tools(), sent=sent)
    compacted = [
        h["metadata"] for h in history(client, thread_id) if "memory_compacted" in h["metadata"]
    ]
    assert len(compacted) >= 3, "the thread never outgrew the budget: the test proves nothing"
    assert all(m["tokens_after"] < m["tokens_before"] for m in compacted)


def test_fork_from_an_old_checkpoint_leaves_the_old_branch_intact(server: Server) -> None:
    """``update_state`` at an old checkpoint and a run: a new branch; the old one as it was."""
    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    for text in ("my name is Ada", "my color is green", "my pet is a cat"):
        say(client, thread_id, text)
    old = checkpoint_id(turn_points(client, thread_id)[1])  # before "my color is green"
    old_branch = {checkpoint_id(h): h["values"] for h in history(client, thread_id)}

    client.threads.update_state(
        thread_id,
        {"messages": [{"role": "user", "content": "my color is blue"}]},
        checkpoint_id=old,
    )
    answer = texts(say(client, thread_id, "what is my color?"), "ai")[-1]

    assert "blue" in answer and "green" not in answer
    assert texts(state_messages(client, thread_id), "human") == [
        "my name is Ada",
        "my color is blue",
        "what is my color?",
    ]
    entries = {checkpoint_id(h): h for h in history(client, thread_id)}
    assert set(old_branch) < set(entries)
    for cid, values in old_branch.items():
        assert entries[cid]["values"] == values
        assert client.threads.get_state(thread_id, checkpoint_id=cid)["values"] == values
    lineage, cid = [], checkpoint_id(history(client, thread_id)[0])
    while cid != old:
        lineage.append(cid)
        cid = entries[cid]["parent_checkpoint"]["checkpoint_id"]
    assert not set(lineage) & set(old_branch)  # the new branch forks off right at ``old``
    assert "pet" not in json.dumps(state_messages(client, thread_id))


async def test_a_copy_continues_alone_and_outlives_its_original(server: Server) -> None:
    """``threads.copy``: the same history; both go on apart; deleting the original
    leaves every checkpoint of the copy loadable, read cold from the database."""
    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    for text in ("my name is Ada", "my address is 1 Elm Rd", "forget my address", "hi"):
        say(client, thread_id, text)
    copied: Any = client.threads.copy(thread_id)  # type: ignore[func-returns-value]
    copy_id = copied["thread_id"]

    def past(thread: str) -> list[tuple[Any, ...]]:
        return [
            (
                checkpoint_id(h),
                (h["parent_checkpoint"] or {}).get("checkpoint_id"),
                h["next"],
                h["values"],
            )
            for h in history(client, thread)
        ]

    shared = past(thread_id)
    assert past(copy_id) == shared
    say(client, copy_id, "my pet is a dog")
    say(client, thread_id, "my pet is a cat")
    assert texts(state_messages(client, copy_id), "human")[-1] == "my pet is a dog"
    assert texts(state_messages(client, thread_id), "human")[-1] == "my pet is a cat"
    assert past(copy_id)[-len(shared) :] == shared

    client.threads.delete(thread_id)

    copy_past = past(copy_id)
    assert copy_past[-len(shared) :] == shared
    async with open_saver(database_url=server.database_url) as cold:
        stored = root_checkpoint_ids(server.database_url, copy_id)
        assert stored == {entry[0] for entry in copy_past}
        for cid, _, _, values in copy_past:
            found = await cold.aget_tuple(
                {"configurable": {"thread_id": copy_id, "checkpoint_ns": "", "checkpoint_id": cid}}
            )
            assert found is not None
            messages = found.checkpoint["channel_values"].get("messages") or []
            assert [message_view(m) for m in messages] == [
                message_view(m) for m in values.get("messages", [])
            ]
            assert [m.id for m in messages] == [m["id"] for m in values.get("messages", [])]
    assert "dog" in texts(say(client, copy_id, "what is my pet?"), "ai")[-1]


def test_delete_leaves_no_row_of_the_thread_in_any_table(server: Server) -> None:
    """Delete reaches memagent's message rows too: a detail said only in the thread is
    in no row of any table afterwards; only the content-free audit line stays."""
    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    address = unique_address()
    for text in (f"my address is {address}", "forget my address", "forget this", "undo"):
        say(client, thread_id, text)
    counts = {t: len(r) for t, r in thread_snapshot(server.database_url, thread_id).items()}
    assert counts["memagent_messages"] > 0 and counts["checkpoint_writes"] > 0

    client.threads.delete(thread_id)

    left = {t: r for t, r in thread_snapshot(server.database_url, thread_id).items() if r}
    # The audit log outlives a delete (SPEC); nothing else names the thread.
    assert set(left) <= {"memagent_audit"}, left
    assert set(rows_naming(server.database_url, [thread_id])) == {"memagent_audit"}
    assert needle_columns(server.database_url, address) == {}
    audit = rows(
        server.database_url,
        "SELECT operation, detail FROM memagent_audit WHERE thread_id = %s ORDER BY id",
        thread_id,
    )
    assert [a["operation"] for a in audit][-1] == "delete"
    assert audit[-1]["detail"]["memagent_messages"] == counts["memagent_messages"]


# --- erasing a user (issue 21) -------------------------------------------------------------


def erase_user_command(server: Server, home: Path, user: str) -> dict[str, Any]:
    """``memagent erase-user USER --server URL --yes --json``, as an operator runs it
    beside the server (same database and auth settings); its receipt."""
    assert server.secret is not None
    env = server_env(
        home,
        {
            "DATABASE_URL": server.database_url,
            "MEMAGENT_AUTH": "true",
            memagent_auth.SECRET_VARIABLE: server.secret,
        },
    )
    memagent = Path(sys.executable).parent / "memagent"
    done = subprocess.run(
        [str(memagent), "erase-user", user, "--server", server.url, "--yes", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    receipt: dict[str, Any] = json.loads(done.stdout)
    return receipt


def page_thread_as(server: Server, user: str, text: str) -> str:
    """A thread made and spoken to through the server's page, signed in as ``user``."""
    assert server.secret is not None
    headers = {"Authorization": f"Bearer {memagent_auth.issue_token(user, server.secret)}"}
    made = httpx.post(f"{server.url}/memagent/api/threads", json={}, headers=headers, timeout=10)
    assert made.status_code == 201, made.text
    thread_id = str(made.json()["thread_id"])
    page_say(f"{server.url}/memagent/api/chat", thread_id, text, **headers)
    return thread_id


def test_erase_user_removes_her_threads_and_runs_from_the_server_and_nothing_of_bob(
    auth_server: Server, tmp_path: Path
) -> None:
    """Alice and Bob chat through the server (forgets, a Studio fork, a copy) and its
    page. After ``erase-user alice``: no row of any table holds her words or thread
    ids, the server has no thread or run of hers, the audit log names her only by
    pseudonym, the receipt counts what existed, and Bob's rows are as they were."""
    tag = uuid.uuid4().hex[:8]
    names = (f"alice-{tag}", f"bob-{tag}")
    canaries = {name: f"canary-{name}-{uuid.uuid4().hex}" for name in names}
    server_threads: dict[str, list[str]] = {name: [] for name in names}
    page_threads: dict[str, str] = {}
    for name in names:
        client = auth_server.client(name)
        thread_id = client.threads.create()["thread_id"]
        for text in (f"my address is {canaries[name]}", "my name is Ada", "forget this", "undo"):
            say(client, thread_id, text)
        first_turn = checkpoint_id(turn_points(client, thread_id)[0])
        client.threads.update_state(thread_id, None, checkpoint_id=first_turn)  # a fork
        copied: Any = client.threads.copy(thread_id)  # type: ignore[func-returns-value]
        server_threads[name] += [thread_id, copied["thread_id"]]
        page_threads[name] = page_thread_as(auth_server, name, f"my pin is {canaries[name]}")
    alice, bob = names
    alice_client, bob_client = auth_server.client(alice), auth_server.client(bob)
    deleted = alice_client.threads.create()["thread_id"]
    say(alice_client, deleted, "my dog is Rex")
    alice_client.threads.delete(deleted)  # the server's delete takes its owner row too
    gone = rows(
        auth_server.database_url,
        "SELECT * FROM memagent_thread_owner WHERE thread_id = %s",
        deleted,
    )
    assert gone == []
    theirs = [*server_threads[alice], page_threads[alice]]
    owners = rows(
        auth_server.database_url,
        "SELECT owner FROM memagent_thread_owner WHERE thread_id = ANY(%s)",
        theirs,
    )
    assert [row["owner"] for row in owners] == [alice] * 3, "the server and page record her"

    def counts(thread_ids: list[str]) -> dict[str, int]:
        return {
            table: rows(
                auth_server.database_url,
                f"SELECT count(*) AS n FROM {table} WHERE thread_id = ANY(%s)",
                thread_ids,
            )[0]["n"]
            for table in ERASED_TABLES
        }

    existed = counts([*theirs, deleted])  # a delete may leave a row that only names it
    with_rows = sum(any(counts([t]).values()) for t in [*theirs, deleted])
    runs = sum(len(alice_client.runs.list(t, limit=100)) for t in server_threads[alice])
    bob_rows = {
        t: thread_snapshot(auth_server.database_url, t)
        for t in [*server_threads[bob], page_threads[bob]]
    }
    bob_runs = {t: bob_client.runs.list(t, limit=100) for t in server_threads[bob]}

    receipt = erase_user_command(auth_server, tmp_path / "operator", alice)

    assert receipt["rows"] == existed
    assert receipt["threads"] == with_rows >= 3
    assert receipt["server"] == {"threads": 2, "runs": runs}
    assert receipt["scan"]["clean"] is True
    assert alice not in json.dumps(receipt) and not any(t in json.dumps(receipt) for t in theirs)
    assert alice_client.threads.search() == []
    for thread_id in server_threads[alice]:
        assert http_status(alice_client.runs.list, thread_id) == 404
    for needle in (canaries[alice], *theirs, deleted):  # the delete's audit line too
        assert needle_columns(auth_server.database_url, needle) == {}, needle
    assert (
        rows(auth_server.database_url, "SELECT id FROM memagent_audit WHERE actor = %s", alice)
        == []
    )
    kept = rows(
        auth_server.database_url,
        "SELECT actor, detail FROM memagent_audit WHERE operation = 'erase-user' AND actor = %s",
        receipt["user"],
    )
    assert [row["detail"] for row in kept] == [receipt]

    assert {t: thread_snapshot(auth_server.database_url, t) for t in bob_rows} == bob_rows
    assert {t: bob_client.runs.list(t, limit=100) for t in server_threads[bob]} == bob_runs
    assert needle_columns(auth_server.database_url, canaries[bob]) != {}

    again = erase_user_command(auth_server, tmp_path / "operator", alice)
    assert again["rows"] == dict.fromkeys(ERASED_TABLES, 0)
    assert (again["threads"], again["server"]) == (0, {"threads": 0, "runs": 0})
    assert again["user"] == receipt["user"] and again.keys() == receipt.keys()


async def test_retention_through_the_server(server: Server) -> None:
    """A thread the server holds, retained from another process: the server's history
    lists what is kept, asking for a cut checkpoint says "removed by retention", the
    ``rewind_to`` tool inside a run says so too, and the thread goes on."""
    client = server.client()
    thread_id = client.threads.create()["thread_id"]
    for text in ("my name is Ada", "forget this", "my color is green", "my pet is a cat"):
        say(client, thread_id, text)
    points = turn_points(client, thread_id)
    old = checkpoint_id(points[0])
    async with open_saver(database_url=server.database_url) as saver:
        done = await admin.aretain(saver, thread_id, keep_turns=2)
    assert done.threads[0].kept_from == checkpoint_id(points[-2])

    assert [checkpoint_id(p) for p in turn_points(client, thread_id)] == [
        checkpoint_id(p) for p in points[-2:]
    ]
    with pytest.raises(httpx.HTTPStatusError) as caught:  # not an empty state
        client.threads.get_state(thread_id, checkpoint_id=old)
    assert "removed by retention" in caught.value.response.text
    say(client, thread_id, f"go back to {old}")
    tool_said = texts(state_messages(client, thread_id), "tool")[-1]
    assert "removed by retention" in tool_said
    assert texts(state_messages(client, thread_id), "human")[:3] == [
        "my color is green",
        "my pet is a cat",
        f"go back to {old}",
    ]
