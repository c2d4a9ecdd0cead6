"""``memagent chat`` at a terminal: a real process on a pseudo-terminal, real keystrokes.

Each test is one of the things a person at a terminal found wrong with the old
``readline()`` loop: Ctrl-C, long pastes, arrow keys, the thread id on exit, a resumed
thread. What the user typed is checked where it ends up, the saved conversation,
since the screen holds the prompt library's redraws.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pexpect
import pytest
from langchain_core.messages import HumanMessage

from agent.session import ChatSession
from agent.settings import Settings
from agent.terminal import QUIT_HINT, REPLY_CANCELLED, history_path

CTRL_C, CTRL_D, ENTER, LEFT, UP = "\x03", "\x04", "\r", "\x1b[D", "\x1b[A"
ESC_ENTER = "\x1b\r"
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
PROMPT_READY = "\x1b[?2004h"
"""Sent when a prompt starts: bracketed paste on (the prompt redraws ``you>`` as one types)."""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Chat:
    """``python -m agent chat`` on a pseudo-terminal, driven like a user would."""

    started: ClassVar[list[Chat]] = []
    """Every chat the running test started, so none outlives it (see ``_no_stray_chat``)."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        Chat.started.append(self)
        self.process = pexpect.spawn(
            sys.executable,
            ["-m", "agent", "chat", *args],
            env=env,
            dimensions=(40, 160),
            encoding="utf-8",
            timeout=120,
        )
        self.seen = ""
        self.wait_for(PROMPT_READY)

    def wait_for(self, text: str) -> str:
        """Everything shown (without terminal codes) up to and including ``text``."""
        self.process.expect_exact(text)
        shown = ANSI.sub("", f"{self.process.before}{self.process.after}")
        self.seen += shown
        return shown

    def say(self, keys: str) -> str:
        """Types ``keys`` and Enter; returns what was shown until the next prompt."""
        self.process.send(keys + ENTER)
        return self.wait_for(PROMPT_READY)

    def quit_with(self, keys: str) -> str:
        """Sends the keys that should end the chat; returns what it printed on the way out.

        Raises:
            AssertionError: The process did not end by itself, or failed.
        """
        self.process.send(keys)
        self.process.expect(pexpect.EOF)
        self.seen += ANSI.sub("", str(self.process.before))
        self.process.close()
        assert self.process.exitstatus == 0, self.seen
        return self.seen


@pytest.fixture(autouse=True)
def _no_stray_chat() -> Iterator[None]:
    """A chat a failed test left running would keep its database in use."""
    yield
    while Chat.started:
        Chat.started.pop().process.terminate(force=True)


@pytest.fixture
def terminal_env(settings: Settings, database_url: str) -> dict[str, str]:
    """The chat's environment: this test's database, the offline model, a plain xterm.

    ``PROMPT_TOOLKIT_NO_CPR`` stops the prompt asking the terminal where its cursor is;
    a pseudo-terminal with nothing behind it would never answer.
    """
    env = {name: value for name, value in os.environ.items() if name != "OPENAI_API_KEY"}
    return env | {
        "DATABASE_URL": database_url,
        "MEMAGENT_HOME": str(settings.home),
        "MEMAGENT_MODEL": "offline",
        "TERM": "xterm-256color",
        "PROMPT_TOOLKIT_NO_CPR": "1",
    }


@pytest.fixture
def thread_id() -> str:
    return f"tty-{uuid.uuid4()}"


def user_messages(thread_id: str) -> list[str]:
    """What the saved conversation holds as the user's messages."""

    async def read() -> list[str]:
        async with ChatSession.open() as session:
            state = await session.graph.aget_state({"configurable": {"thread_id": thread_id}})
        return [m.text for m in state.values.get("messages", []) if isinstance(m, HumanMessage)]

    return asyncio.run(read())


def test_ctrl_c_clears_the_line_and_a_second_one_quits(
    terminal_env: dict[str, str], thread_id: str
) -> None:
    chat = Chat(terminal_env, "--thread", thread_id)
    chat.process.send("half a thought")
    chat.process.send(CTRL_C)
    chat.wait_for(QUIT_HINT)
    assert "Noted" in chat.say("hi")  # the cleared text did not stay in the line
    chat.process.send(CTRL_C)  # at the empty prompt: only the hint
    chat.wait_for(QUIT_HINT)
    assert chat.process.isalive()
    out = chat.quit_with(CTRL_C)
    assert "bye" in out
    assert user_messages(thread_id) == ["hi"]


def test_ctrl_d_at_the_prompt_quits_and_prints_how_to_resume(
    terminal_env: dict[str, str], thread_id: str
) -> None:
    chat = Chat(terminal_env, "--thread", thread_id)
    chat.say("my name is Ada")
    out = chat.quit_with(CTRL_D)
    assert f"Thread {thread_id} is saved. Resume it with: python3 -m agent chat --thread" in out


def test_ctrl_c_twice_stops_the_embedded_database_with_the_chat(
    terminal_env: dict[str, str], tmp_path: Path
) -> None:
    env = {name: value for name, value in terminal_env.items() if name != "DATABASE_URL"}
    env["MEMAGENT_HOME"] = str(tmp_path / "embedded-home")
    chat = Chat(env)
    assert "embedded PostgreSQL" in chat.seen
    pgdata = tmp_path / "embedded-home" / "pgdata"
    assert (pgdata / "postmaster.pid").exists()  # the server is running now
    chat.process.send("typed but not sent")
    chat.process.send(CTRL_C)
    chat.wait_for(QUIT_HINT)
    chat.quit_with(CTRL_C)
    assert not (pgdata / "postmaster.pid").exists()  # and stopped when the chat ended


def test_a_long_multi_line_paste_arrives_whole_and_esc_enter_breaks_a_line(
    terminal_env: dict[str, str], thread_id: str
) -> None:
    long_line = " ".join(f"word{n}" for n in range(1000))[:6000]
    pasted = f"first line\n{long_line}\nlast line"
    assert len(long_line) == 6000
    # A context budget that takes the paste whole, so no compaction replaces it in the head.
    roomy = {**terminal_env, "MEMAGENT_CONTEXT_TOKENS": "100000"}
    chat = Chat(roomy, "--thread", thread_id)
    chat.say(PASTE_START + pasted + PASTE_END)
    chat.say("typed" + ESC_ENTER + "over two lines")
    chat.quit_with(CTRL_D)
    assert user_messages(thread_id) == [pasted, "typed\nover two lines"]


def test_arrow_keys_edit_the_line_and_history_outlives_the_session(
    terminal_env: dict[str, str], settings: Settings, thread_id: str
) -> None:
    chat = Chat(terminal_env, "--thread", thread_id)
    assert 'Noted: "hello"' in chat.say("helo" + LEFT + "l")
    chat.quit_with(CTRL_D)

    again = Chat(terminal_env, "--thread", thread_id)
    again.say(UP)  # the previous session's line, from the history file
    again.quit_with(CTRL_D)
    assert user_messages(thread_id) == ["hello", "hello"]
    assert "hello" in history_path(settings).read_text(encoding="utf-8")


def test_a_resumed_thread_shows_its_last_messages(
    terminal_env: dict[str, str], thread_id: str
) -> None:
    first = Chat(terminal_env, "--thread", thread_id)
    for n in range(1, 5):
        first.say(f"note number {n}")
    first.quit_with(CTRL_D)

    resumed = Chat(terminal_env, "--thread", thread_id)
    recap = resumed.seen.split("Earlier in this thread", 1)[1]
    assert "you: note number 4" in recap
    assert 'agent: Noted: "note number 4"' in recap
    assert "note number 2" in recap
    assert "note number 1" not in recap  # only the last few
    resumed.quit_with(CTRL_D)


@pytest.mark.parametrize("exit_line", ["/exit", "/exit now", "/quit please"])
def test_exit_with_or_without_words_ends_the_chat(
    terminal_env: dict[str, str], thread_id: str, exit_line: str
) -> None:
    chat = Chat(terminal_env, "--thread", thread_id)
    out = chat.quit_with(exit_line + ENTER)
    assert "Unknown command" not in out
    assert f"--thread {thread_id}" in out.split("bye", 1)[1]


def test_timeline_takes_a_count_and_refuses_anything_else(
    terminal_env: dict[str, str], thread_id: str
) -> None:
    chat = Chat(terminal_env, "--thread", thread_id)
    chat.say("one")
    chat.say("two")
    assert "Usage: /timeline [N]" in chat.say("/timeline extra")
    shown = chat.say("/timeline 1")
    assert 'before "two"' in shown
    assert 'before "one"' not in shown
    chat.quit_with(CTRL_D)


# --- Ctrl-C while a reply streams ------------------------------------------------------

HELD_WORDS = "Let me think about that"
"""What the held reply streams before it stops to wait."""


@contextmanager
def slow_openai_server() -> Iterator[str]:
    """An OpenAI-compatible chat endpoint on 127.0.0.1; yields its base URL.

    Its first reply streams ``HELD_WORDS`` and then holds, as a slow model would,
    until the client goes away (or the test ends); every later reply answers at once.
    """
    release = threading.Event()
    requests: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            requests.append(1)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            try:
                if len(requests) == 1:
                    self._send({"role": "assistant", "content": HELD_WORDS})
                    release.wait(60)
                else:
                    self._send({"role": "assistant", "content": "A prompt answer."})
                self._send({}, finish="stop")
                self.wfile.write(b"data: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the chat cancelled this reply

        def _send(self, delta: dict[str, Any], finish: str | None = None) -> None:
            chunk = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: requests are not test output."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}/v1"
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def test_ctrl_c_during_a_reply_cancels_only_that_reply(
    terminal_env: dict[str, str], thread_id: str
) -> None:
    """The message stays (unanswered), the prompt comes back, and the next turn works.

    The next turn answering proves the cancelled turn let go of the thread's lease (it
    would wait ``MEMAGENT_THREAD_BUSY_TIMEOUT`` for it, then be refused).
    """
    with slow_openai_server() as base_url:
        env = terminal_env | {
            "MEMAGENT_MODEL": "openai:gpt-4o-mini",
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": base_url,
            "MEMAGENT_THREAD_BUSY_TIMEOUT": "2",
        }
        chat = Chat(env, "--thread", thread_id)
        assert "cancels a reply" in chat.seen  # the banner says what Ctrl-C does
        chat.process.send("a hard question" + ENTER)
        chat.wait_for(HELD_WORDS)
        chat.process.send(CTRL_C)
        assert REPLY_CANCELLED in chat.wait_for(PROMPT_READY)
        assert chat.process.isalive()
        assert "A prompt answer." in chat.say("an easy one")
        out = chat.quit_with(CTRL_D)
    assert "Aborted" not in out
    assert "busy" not in out
    assert user_messages(thread_id) == ["a hard question", "an easy one"]
