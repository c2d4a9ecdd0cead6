"""What a user meets first at the command line: settings, questions, ports, the demo model.

Each test runs the real ``python -m agent`` process (stdout and stderr apart, as a
shell pipes them), except the offline model's replies, which come from a real
``ChatSession`` on a real database.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid

import pytest

from agent.session import ChatSession
from agent.settings import Settings
from tests.helpers import converse

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/never_opened"

BAD_SETTINGS = {
    "pool size": ({"MEMAGENT_POOL_MAX_SIZE": "lots"}, "MEMAGENT_POOL_MAX_SIZE"),
    "metadata keys": ({"MEMAGENT_METADATA_KEYS": "user id"}, "MEMAGENT_METADATA_KEYS"),
    "unknown model": ({"MEMAGENT_MODEL": "nonsense"}, "MEMAGENT_MODEL"),
    "model without key": ({"MEMAGENT_MODEL": "openai:gpt-4o-mini"}, "MEMAGENT_MODEL"),
    "short auth secret": (
        {"MEMAGENT_AUTH": "true", "MEMAGENT_AUTH_SECRET": "short"},
        "MEMAGENT_AUTH_SECRET",
    ),
}
"""A setting a user can get wrong, and the variable its one error line must name."""


def memagent(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m agent ARGS`` in this test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single ``Error:`` line a failed command wrote; fails the test otherwise."""
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: "), done.stderr
    return lines[0]


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", BAD_SETTINGS)
def test_help_works_whatever_the_settings(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, BAD_SETTINGS[case][0] | {"DATABASE_URL": UNREACHABLE})
    done = memagent("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: "), done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize("case", ["pool size", "metadata keys"])
@pytest.mark.parametrize("command", [["threads"], ["chat"], ["web", "--port", "0"]])
def test_a_bad_setting_is_one_error_line_naming_it(
    command: list[str], case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, variable = BAD_SETTINGS[case]
    set_env(monkeypatch, env | {"DATABASE_URL": UNREACHABLE})
    assert variable in one_error_line(memagent(*command, input=""))


@pytest.mark.parametrize("case", ["unknown model", "model without key", "short auth secret"])
def test_a_model_or_auth_setting_fails_only_the_commands_that_use_it(
    case: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    converse("t", "hello")  # on the good settings
    env, variable = BAD_SETTINGS[case]
    set_env(monkeypatch, env)

    for command in (["threads"], ["timeline", "t"], ["audit"]):  # no model, no auth
        done = memagent(*command)
        assert done.returncode == 0, (command, done.stderr)
        assert done.stderr == ""
    needs = ["web", "--port", "0"] if variable == "MEMAGENT_AUTH_SECRET" else ["chat"]
    assert variable in one_error_line(memagent(*needs, input="hi\n"))


# --- questions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["delete", "t", "--json"], ["redact", "t", "--text", "Main St", "--json"]],
    ids=["delete", "redact"],
)
def test_json_output_stays_json_when_yes_is_piped(command: list[str], settings: Settings) -> None:
    converse("t", "my address is 12 Main St")
    done = memagent(*command, input="y\n")
    assert done.returncode == 0, done.stderr
    erased = json.loads(done.stdout)  # the question is not in it
    assert erased["thread_id"] == "t"
    assert any(erased["rows"].values())
    assert "[y/N]" in done.stderr


@pytest.mark.parametrize("answer", ["n\n", ""], ids=["no", "no-input"])
def test_no_to_a_question_is_one_line_and_exit_1(answer: str, settings: Settings) -> None:
    converse("t", "my address is 12 Main St")
    for command in (["delete", "t"], ["redact", "t", "--text", "Main St"]):
        done = memagent(*command, input=answer)
        assert done.returncode == 1, done
        assert done.stdout == ""
        assert "Aborted" not in done.stderr
        assert done.stderr.strip().splitlines()[-1].endswith("Nothing was erased."), done.stderr
    assert 'You told me: "my address is 12 Main St"' in converse("t", "what is my address?")[0]


def test_redact_with_an_unreachable_server_is_one_line_and_erases_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    converse("t", "my address is 12 Main St")
    for how in (["--server", "http://127.0.0.1:9"], []):
        if not how:
            set_env(monkeypatch, {"MEMAGENT_SERVER_URL": "http://127.0.0.1:9"})
        done = memagent("redact", "t", "--text", "Main St", "--yes", *how)
        assert one_error_line(done).startswith(
            "Error: The server at http://127.0.0.1:9 could not be used"
        )
    assert 'You told me: "my address is 12 Main St"' in converse("t", "what is my address?")[0]


def test_redact_with_server_and_auth_on_says_why_not_and_erases_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    converse("t", "my address is 12 Main St")
    set_env(monkeypatch, {"MEMAGENT_AUTH": "true", "MEMAGENT_AUTH_SECRET": "s" * 40})
    done = memagent("redact", "t", "--text", "Main St", "--yes", "--server", "http://x")
    assert "whose token" in one_error_line(done)
    assert 'You told me: "my address is 12 Main St"' in converse("t", "what is my address?")[0]


# --- the web command's address ----------------------------------------------------------


def test_a_port_out_of_range_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {"DATABASE_URL": UNREACHABLE})
    assert "99999" in one_error_line(memagent("web", "--port", "99999"))


def test_a_taken_port_or_an_unknown_host_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {"DATABASE_URL": UNREACHABLE})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert "cannot listen on 127.0.0.1:" in one_error_line(memagent("web", "--port", port))
    line = one_error_line(memagent("web", "--host", "no-such-host.invalid"))
    assert "cannot listen on no-such-host.invalid" in line


# --- the offline model ------------------------------------------------------------------

MODEL_WORDS = (
    "conversation_timeline",
    "rewind_to",
    "forget_details",
    "forget_conversation",
    "for_good",
    "Call ",
    "call ",
    "Ask the user",
    "Tell the user",
)
"""What only the model should read: tool names, arguments, instructions."""


@pytest.mark.usefixtures("settings")
async def test_the_offline_model_answers_in_the_users_words() -> None:
    thread = f"ux-{uuid.uuid4()}"
    async with ChatSession.open() as session:
        replies = [
            await session.send(thread, text)
            for text in (
                "my name is Ada",
                "show the timeline",
                f"go back to {uuid.uuid4()}",  # an id that is no point of this thread
                "erase it for good",  # nothing was forgotten before
            )
        ]
    for reply in replies:
        assert not [word for word in MODEL_WORDS if word in reply], reply
    timeline, wrong_id, nothing_forgotten = replies[1:]
    assert 'before "my name is Ada"' in timeline
    assert "show the timeline" in wrong_id
    assert "nothing to erase for good" in nothing_forgotten
