"""``memagent chat`` end to end: a real process, scripted stdin, a real database."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from agent.prompts import FORGET_CONFIRMATION
from agent.settings import Settings
from tests.helpers import UUID_PATTERN, readme_session, run_chat_command


@pytest.mark.usefixtures("settings")
def test_quit_and_resume_the_same_thread() -> None:
    thread = f"cli-{uuid.uuid4()}"
    first = run_chat_command("my name is Grace Hopper", "/exit", thread=thread)
    assert "offline demo model" in first
    assert "PostgreSQL at" in first
    assert f"python3 -m agent chat --thread {thread}" in first

    second = run_chat_command("what is my name?", thread=thread)  # ends with EOF, like Ctrl-D
    assert "you: my name is Grace Hopper" in second  # the recap of the thread so far
    assert 'You told me: "my name is Grace Hopper"' in second


@pytest.mark.usefixtures("settings")
def test_a_new_chat_prints_its_thread_so_it_can_be_resumed() -> None:
    out = run_chat_command("my name is Alan", "/exit")
    thread = re.search(r"--thread ([^\s)]+)", out)
    assert thread is not None
    assert "my name is Alan" in run_chat_command("what is my name?", thread=thread.group(1))


@pytest.mark.usefixtures("settings")
def test_slash_commands_forget_undo_rewind_timeline() -> None:
    thread = f"cli-{uuid.uuid4()}"
    out = run_chat_command(
        "my address is 12 Main St",
        "/forget",
        "what is my address?",
        "/undo",
        "/undo",
        "what is my address?",
        "/timeline",
        "/rewind not-an-id",
        "/rewind",
        thread=thread,
    )
    replies = [line for line in out.splitlines() if "agent> " in line]
    assert "Noted" in replies[0]
    assert "Forgotten." in out
    assert "don't know your address" in replies[1]  # after /forget
    assert out.count("Undone: back to") == 2  # the question, then the forget
    assert 'You told me: "my address is 12 Main St"' in replies[2]
    assert "\nbye\n" in out  # the session ended normally at EOF
    # After undoing the forget the branch shown no longer holds it, only the rewind.
    assert re.search(UUID_PATTERN + r".+\[rewound to " + UUID_PATTERN + r"\]", out)
    assert re.search(UUID_PATTERN + r'.+before "my address is 12 Main St"', out)
    assert "[forgot]" not in out
    assert "error: 'not-an-id' is not a checkpoint id" in out
    assert "Usage: /rewind CHECKPOINT_ID" in out


@pytest.mark.usefixtures("settings")
def test_exit_ignores_its_words_and_timeline_takes_only_a_count() -> None:
    thread = f"cli-{uuid.uuid4()}"
    out = run_chat_command(
        "one", "two", "/timeline extra", "/timeline 1", "/exit now", "three", thread=thread
    )
    assert "Usage: /timeline [N]" in out
    assert 'before "two"' in out
    assert 'before "one"' not in out  # one entry, as asked
    assert "Unknown command" not in out
    assert '"three"' not in out  # the chat ended at "/exit now"
    assert out.rstrip().endswith(f"Resume it with: python3 -m agent chat --thread {thread}")


@pytest.mark.usefixtures("settings")
def test_the_readme_session_replays_as_shown() -> None:
    """Every reply in the README's session, replayed; ``/rewind`` gets this run's id."""
    lines = readme_session("A session with the offline model")
    said = [line.removeprefix("you> ") for line in lines if line.startswith("you> ")]
    rewind_at = next(i for i, text in enumerate(said) if text.startswith("/rewind "))
    thread = f"readme-{uuid.uuid4()}"

    first = run_chat_command(*said[:rewind_at], thread=thread)
    # The README's id for /rewind names a turn; find that turn's id in this run.
    shown_id = said[rewind_at].split()[1]
    turn = next(line for line in lines if line.startswith(shown_id)).split("  ")[-1]
    real_id = re.search(rf"({UUID_PATTERN})  \S+ \S+  {re.escape(turn)}", first)
    assert real_id is not None, turn
    second = run_chat_command(f"/rewind {real_id.group(1)}", *said[rewind_at + 1 :], thread=thread)

    replies = [line.removeprefix("you> ") for line in (first + second).splitlines()]
    replies = [line for line in replies if line.startswith("agent> ")]
    assert replies == [line for line in lines if line.startswith("agent> ")]
    assert f"Rewound to {real_id.group(1)}." in second


@pytest.mark.usefixtures("settings")
def test_the_readme_detail_session_replays_as_shown() -> None:
    """Forget one detail, undo, erase it for good after a yes: as the README shows it."""
    lines = readme_session("Forgetting one detail")
    typed = [
        line.removeprefix("you> ") if line.startswith("you> ") else line.rsplit(" ", 1)[1]
        for line in lines
        if line.startswith("you> ") or "[y/N]: " in line
    ]

    out = run_chat_command(*typed, thread=f"readme-{uuid.uuid4()}")

    replies = [line.removeprefix("you> ") for line in out.splitlines()]
    question = next(line for line in lines if "[y/N]: " in line).rsplit(" ", 1)[0]
    assert question in out
    replies = [line.split("[y/N]: ")[-1] for line in replies]
    assert [line for line in replies if line.startswith("agent> ")] == [
        line for line in lines if line.startswith("agent> ")
    ]


@pytest.mark.usefixtures("settings")
def test_forget_through_the_model_in_the_chat() -> None:
    out = run_chat_command("my address is 12 Main St", "forget this", "what is my address?")
    assert FORGET_CONFIRMATION in out
    assert "don't know your address" in out


@pytest.mark.db  # starts an embedded PostgreSQL of its own
def test_without_database_url_an_embedded_postgres_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("MEMAGENT_MODEL", "offline")
    monkeypatch.setenv("MEMAGENT_HOME", str(tmp_path / "home"))
    thread = "embedded-thread"

    first = run_chat_command("my name is Edsger", thread=thread)
    assert f"embedded PostgreSQL, data in {tmp_path / 'home' / 'pgdata'}" in first
    assert (Settings.from_env().embedded_data_dir / "PG_VERSION").exists()

    assert 'You told me: "my name is Edsger"' in run_chat_command("what is my name?", thread=thread)
