"""The ``memagent`` administration subcommands, through click's runner, on a real database.

``CliRunner`` runs each command in this process; the command opens its own event loop
with ``asyncio.run``, so these tests are plain functions, and conversations are made
with ``ChatSession`` (the offline model) the same way.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import uuid
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agent.cli import main
from agent.settings import Settings
from tests.helpers import (
    README,
    THREAD_TABLES,
    UUID_PATTERN,
    canary_rows,
    converse,
    table_counts,
)

UUID = re.compile(UUID_PATTERN)
TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
CANARY = "canary-9c1b-my-pin-is-4711"


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def ok(*args: str, input: str | None = None) -> str:
    result = run(*args, input=input)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def refused(*args: str, input: str | None = None) -> str:
    """Runs a command that must fail; returns its one error line."""
    result = run(*args, input=input)
    assert result.exit_code != 0, (args, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def tree(thread_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok("timeline", thread_id, "--json"))
    return data


def point(thread_id: str, preview: str) -> str:
    return next(e["checkpoint_id"] for e in tree(thread_id)["entries"] if e["preview"] == preview)


@pytest.fixture(autouse=True)
def _user(settings: Settings) -> Settings:
    """Every command here sees this test's database (``DATABASE_URL``) and offline model."""
    return settings


# --- threads and timeline ------------------------------------------------------------


def test_threads_lists_threads_newest_first() -> None:
    assert ok("threads").strip() == "No threads yet."
    assert json.loads(ok("threads", "--json")) == []
    converse("older", "hello")
    converse("newer", "hello")

    lines = ok("threads").splitlines()
    assert [line.split()[0] for line in lines] == ["newer", "older"]
    assert "last active" in lines[0] and "checkpoints" in lines[0]
    listed = json.loads(ok("threads", "--json"))
    assert [t["thread_id"] for t in listed] == ["newer", "older"]
    assert all(t["checkpoints"] > 0 and t["last_activity"] for t in listed)
    assert [t["thread_id"] for t in json.loads(ok("threads", "--json", "--limit", "1"))] == [
        "newer"
    ]


def test_timeline_draws_branches_and_marks_forgets() -> None:
    converse("t", "my name is Ada", "my city is Paris")
    ok("forget", "t", "--reason", "shared screen")
    converse("t", "my dog is Rex")
    ok("rewind", "t", point("t", "my city is Paris"))  # before that message
    converse("t", "my city is Rome")

    text = ok("timeline", "t")

    lines = text.splitlines()
    order = [re.sub(r"^[│├└─ ]*", "", line)[0] for line in lines]
    assert order == ["●", "●", "✂", "●", "↩", "●"]
    ada, paris, forgot, rex, rewound, rome = lines
    assert ada.startswith("● ") and '"my name is Ada"' in ada
    # Two branches grow from "my name is Ada": the one that went on, and the rewind.
    assert paris.startswith("├─ ● ") and '"my city is Paris"' in paris
    assert forgot.startswith("│  ✂ ") and "forgot (shared screen); undo: rewind to" in forgot
    assert rex.startswith("│  ● ") and '"my dog is Rex"' in rex
    assert rewound.startswith("└─ ↩ ") and '(before "my city is Paris")' in rewound
    assert rome.startswith("   ● ") and rome.endswith("← current")
    assert sum("← current" in line for line in lines) == 1

    data = tree("t")
    entries = data["entries"]
    assert [e["kind"] for e in entries] == ["turn", "rewind", "turn", "forget", "turn", "turn"]
    assert [e["on_head_branch"] for e in entries] == [True, True, False, False, False, True]
    by_preview = {e["preview"]: e for e in entries if e["kind"] == "turn"}
    assert entries[1]["tree_parent"] == by_preview["my name is Ada"]["checkpoint_id"]
    assert entries[1]["rewound_to"] == by_preview["my city is Paris"]["checkpoint_id"]
    assert entries[3]["reason"] == "shared screen" and entries[3]["undo"]
    assert data["hidden"] == 0 and data["thread_id"] == "t" and UUID.fullmatch(data["head"])
    assert all(datetime_text(e["at"]) for e in entries)

    limited = ok("timeline", "t", "--limit", "2").splitlines()
    assert limited[0] == "… 4 older entries not shown (see --limit)"
    assert len(limited) == 3


def datetime_text(value: str) -> bool:
    return bool(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", value))


# --- forget and rewind ---------------------------------------------------------------


def test_forget_then_rewind_to_undo_it() -> None:
    converse("t", "my name is Ada")

    out = ok("forget", "t", "--reason", "oops")
    assert out.startswith("Forgot thread t; new head ")
    assert "don't know your name" in converse("t", "what is my name?")[0]

    forget = next(e for e in tree("t")["entries"] if e["kind"] == "forget")
    assert forget["reason"] == "oops"
    back = json.loads(ok("rewind", "t", forget["undo"], "--json"))
    assert back["rewound_to"] == forget["undo"] and UUID.fullmatch(back["checkpoint_id"])
    assert 'You told me: "my name is Ada"' in converse("t", "what is my name?")[0]

    change = json.loads(ok("forget", "t", "--json"))
    assert change["thread_id"] == "t"
    assert tree("t")["entries"][0]["checkpoint_id"] == change["checkpoint_id"]
    assert "You told me" not in converse("t", "what is my name?")[0]


def test_rewind_by_id_takes_the_message_back() -> None:
    converse("t", "my name is Ada", "my city is Paris")

    out = ok("rewind", "t", point("t", "my city is Paris"))

    assert re.fullmatch(rf"Rewound thread t to {UUID.pattern}; new head {UUID.pattern}\.\n", out)
    assert "don't know your city" in converse("t", "what is my city?")[0]
    assert 'You told me: "my name is Ada"' in converse("t", "what is my name?")[0]


# --- delete --------------------------------------------------------------------------


def test_delete_asks_first_and_no_keeps_the_thread(database_url: str) -> None:
    converse("t", f"my pin is {CANARY}")
    converse("other", "hello")
    before = table_counts(database_url)
    assert canary_rows(database_url, CANARY)["checkpoint_blobs"] > 0

    result = run("delete", "t", input="n\n")

    assert result.exit_code != 0
    assert "Erase thread t permanently?" in result.output
    assert table_counts(database_url) == before
    assert [t["thread_id"] for t in json.loads(ok("threads", "--json"))] == ["other", "t"]

    out = ok("delete", "t", input="y\n")

    assert "Deleted thread t: " in out
    assert canary_rows(database_url, CANARY) == dict.fromkeys(THREAD_TABLES, 0)
    assert [t["thread_id"] for t in json.loads(ok("threads", "--json"))] == ["other"]
    assert "Nothing to delete" in ok("delete", "t", "--yes")


def test_delete_yes_json_counts_rows_per_table(database_url: str) -> None:
    converse("t", "hello", "again")
    before = table_counts(database_url)

    erased = json.loads(ok("delete", "t", "--yes", "--json"))

    assert erased["thread_id"] == "t"
    assert erased["rows"] == before  # the only thread: its rows are all the rows
    assert table_counts(database_url) == dict.fromkeys(THREAD_TABLES, 0)
    unknown = json.loads(ok("delete", "ghost", "--yes", "--json"))
    assert unknown["rows"] == dict.fromkeys(THREAD_TABLES, 0)


# --- purge ---------------------------------------------------------------------------


def test_purge_keeps_the_thread_from_its_forget_on(database_url: str) -> None:
    converse("t", f"my pin is {CANARY}", "my name is Ada")
    ok("forget", "t")
    converse("t", "my city is Paris")
    forget_id = next(e for e in tree("t")["entries"] if e["kind"] == "forget")["checkpoint_id"]
    assert canary_rows(database_url, CANARY)["checkpoint_blobs"] > 0

    purged = json.loads(ok("purge", "t", "--json"))

    assert purged["kept_from"] == forget_id
    assert purged["rows"]["checkpoints"] > 0
    assert canary_rows(database_url, CANARY) == dict.fromkeys(THREAD_TABLES, 0)
    assert [e["kind"] for e in tree("t")["entries"]] == ["turn", "forget"]
    replies = converse("t", "what is my city?", "what is my name?")
    assert 'You told me: "my city is Paris"' in replies[0]
    assert "don't know your name" in replies[1]
    ok("forget", "t")
    assert ok("purge", "t").startswith("Purged thread t up to ")


# --- audit ---------------------------------------------------------------------------


def test_audit_lists_memory_operations_and_survives_delete() -> None:
    assert ok("audit").strip() == "No memory operations recorded."
    converse("t", "my name is Ada", "forget this")  # the model calls forget_conversation
    ok("forget", "t")
    ok("rewind", "t", point("t", "forget this"))
    ok("forget", "t")
    ok("purge", "t")
    ok("delete", "t", "--yes")
    converse("other", "hello")
    ok("forget", "other")

    lines = ok("audit", "t").splitlines()

    assert [line.split()[2:5] for line in lines] == [
        ["delete", "t", "via"],
        ["purge", "t", "via"],
        ["forget", "t", "via"],
        ["rewind", "t", "via"],
        ["forget", "t", "via"],
        ["forget", "t", "via"],
    ]
    assert [line.split()[5] for line in lines] == ["cli"] * 5 + ["tool"]
    assert "Ada" not in ok("audit")
    logged = json.loads(ok("audit", "--json"))
    assert [(a["operation"], a["thread_id"]) for a in logged[:2]] == [
        ("forget", "other"),
        ("delete", "t"),
    ]
    assert set(logged[0]) == {"id", "at", "operation", "thread_id", "surface", "actor", "detail"}
    assert len(json.loads(ok("audit", "--json", "--limit", "3"))) == 3


# --- errors --------------------------------------------------------------------------


def test_user_errors_are_one_line_and_a_nonzero_exit(database_url: str) -> None:
    converse("t", "hello")
    before = table_counts(database_url)

    cases = {
        ("rewind", "t", str(uuid.uuid4())): "no checkpoint",
        ("rewind", "t", "not-an-id"): "is not a checkpoint id",
        ("rewind", "ghost", str(uuid.uuid4())): "no checkpoint",
        ("forget", ""): "thread id is required",
        ("forget", "ghost"): "no thread 'ghost'",
        ("purge", "t"): "no forget to purge",
        ("purge", ""): "thread id is required",
        ("delete", ""): "thread id is required",  # refused before asking
        ("timeline", "ghost"): "no thread 'ghost'",
        ("timeline", " "): "thread id is required",
        ("audit", "bad\x01id"): "control characters",
    }
    for args, message in cases.items():
        assert message in refused(*args), args

    assert table_counts(database_url) == before
    # A rewind's error points at the CLI's own timeline, not the model's tool.
    assert "memagent timeline t" in refused("rewind", "t", str(uuid.uuid4()))


def test_purge_after_undoing_the_forget_is_refused() -> None:
    converse("t", "my name is Ada")
    ok("forget", "t")
    undo = next(e for e in tree("t")["entries"] if e["kind"] == "forget")["undo"]
    ok("rewind", "t", undo)

    assert "forget it again" in refused("purge", "t")
    assert 'You told me: "my name is Ada"' in converse("t", "what is my name?")[0]


def test_an_unreachable_database_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nothing")
    monkeypatch.setenv("MEMAGENT_POOL_TIMEOUT", "1")
    assert refused("threads").startswith("Error: database unavailable")


def test_an_unreachable_database_is_one_line_from_the_installed_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As a user sees it: the process's whole stderr, pool logging included, is one line."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nothing")
    monkeypatch.setenv("MEMAGENT_POOL_TIMEOUT", "3")  # before the fix: 3 s of retry warnings
    done = subprocess.run(
        [sys.executable, "-m", "agent", "threads"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("Error: database unavailable: ")
    assert "Connection refused" in done.stderr  # the cause, not a pool timeout


# --- the README section --------------------------------------------------------------


def doc_commands() -> list[tuple[str, list[str]]]:
    """Each ``$ memagent ...`` line of the README's "Managing memory" console blocks."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Managing memory\n", 1)[1].split("\n## ", 1)[0]
    steps: list[tuple[str, list[str]]] = []
    in_console = False
    for line in section.splitlines():
        if line.startswith("```"):
            in_console = line.strip() == "```console"
            continue
        if not in_console:
            continue
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return steps


def normalized(lines: list[str]) -> list[str]:
    return [TIME.sub("<time>", UUID.sub("<id>", line)).rstrip() for line in lines]


def test_every_command_in_the_managing_memory_doc_works_as_written() -> None:
    steps = doc_commands()
    assert len(steps) >= 10
    real_id: dict[str, str] = {}  # an id shown in the doc -> the same id in this run
    for command, shown in steps:
        argv = shlex.split(command)
        assert argv[0] == "memagent"
        args = [real_id.get(arg, arg) for arg in argv[1:]]
        if args[0] == "chat":
            said = [line.removeprefix("you> ") for line in shown if line.startswith("you> ")]
            out = ok(*args, input="\n".join(said) + "\n")
            for reply in (line for line in shown if line.startswith("agent> ")):
                assert reply in out
            continue
        answer = "y\n" if args[0] == "delete" else None
        result = run(*args, input=answer)
        assert result.exit_code == 0, (args, result.output)
        if args[-1] == "--json":
            json.loads(result.stdout)
            continue
        got = result.output.splitlines()  # as the terminal shows it: the question is on stderr
        assert normalized(got) == normalized(shown), command
        for doc_line, real_line in zip(shown, got, strict=True):
            real_id.update(zip(UUID.findall(doc_line), UUID.findall(real_line), strict=True))
