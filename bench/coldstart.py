"""Cold start: wall-clock time from launching ``memagent chat`` to its first prompt.

Measured from outside with a real subprocess, because what a user waits for
(interpreter start, imports, opening the database, setup) happens before any code of
ours could start a timer. Two situations:

* ``server running``: PostgreSQL is up and the database initialised (a fresh
  database of the run's server, set up by an untimed first launch);
* ``embedded, server stopped``: no ``DATABASE_URL``; memagent's embedded PostgreSQL
  data directory exists but the server is not running (the first chat of the day),
  so the chat must start it. The one launch that creates the data directory
  (``initdb``) is reported apart.
"""

from __future__ import annotations

import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROMPT = b"you> "
"""What ``memagent chat`` prints when it is ready for the first message."""

TIMEOUT_S = 60.0

# Until the CLI exists: what it would do before its prompt (imports, model, graph,
# saver with setup), ending with the same prompt.
FALLBACK_SCRIPT = """
import asyncio, sys
from agent.session import ChatSession
async def main():
    async with ChatSession.open():
        sys.stdout.write("you> "); sys.stdout.flush()
        sys.stdin.readline()
asyncio.run(main())
"""


def chat_command() -> tuple[list[str], str]:
    """The command a user types (``memagent chat``), or the fallback without the CLI."""
    script = Path(sys.executable).with_name("memagent")
    if script.exists():
        return [str(script), "chat"], "memagent chat"
    try:
        import agent.cli  # noqa: F401  (only whether it exists matters)
    except ImportError:
        return [sys.executable, "-c", FALLBACK_SCRIPT], "python -c (ChatSession.open)"
    return [sys.executable, "-m", "agent", "chat"], "python -m agent chat"


def chat_env(home: Path, database_url: str | None) -> dict[str, str]:
    """The environment of a user with the offline model and their own data directory."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "OPENAI_API_KEY"}}
    env.update({"MEMAGENT_HOME": str(home), "MEMAGENT_MODEL": "offline"})
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def time_to_prompt(command: list[str], env: dict[str, str]) -> float:
    """Launches the chat, waits for its prompt, quits it; returns seconds to the prompt.

    Raises:
        RuntimeError: The chat exited or stayed silent for ``TIMEOUT_S`` before the
            prompt (its stderr is included).
    """
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert process.stdout is not None and process.stdin is not None
    seen, elapsed = b"", None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.perf_counter() - started < TIMEOUT_S:
            if not selector.select(timeout=1.0):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
            if PROMPT in seen:
                elapsed = time.perf_counter() - started
                break
    try:
        _, err = process.communicate(b"/exit\n", timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    if elapsed is None:
        raise RuntimeError(f"no prompt from {command[-1]!r}: {err.decode(errors='replace')[-500:]}")
    return elapsed


def summary(seconds: list[float]) -> dict[str, Any]:
    """Median and worst of the launches, in seconds."""
    return {
        "runs": len(seconds),
        "median_s": statistics.median(seconds),
        "max_s": max(seconds),
        "samples_s": [round(s, 3) for s in seconds],
    }


def stop_embedded(data_dir: Path) -> None:
    """Makes sure no PostgreSQL is left running on ``data_dir`` before it is deleted."""
    if not (data_dir / "postmaster.pid").exists():
        return
    import pgserver

    pgserver.get_server(data_dir, cleanup_mode="stop").cleanup()


def cold_start(database_url: str, runs: int) -> dict[str, Any]:
    """Times ``runs`` chat launches in each situation (see the module docstring)."""
    command, label = chat_command()
    result: dict[str, Any] = {"command": label}
    home = Path(tempfile.mkdtemp(prefix="memagent-bench-home-"))
    try:
        env = chat_env(home / "running", database_url)
        time_to_prompt(command, env)  # untimed: the OS file cache holds the imports
        result["server_running"] = summary([time_to_prompt(command, env) for _ in range(runs)])
        env = chat_env(home / "embedded", None)
        result["embedded_first_launch_s"] = time_to_prompt(command, env)
        data_dir = home / "embedded" / "pgdata"
        stopped: list[float] = []
        for _ in range(runs):
            stop_embedded(data_dir)  # the chat stops it on exit; make sure of it
            stopped.append(time_to_prompt(command, env))
        result["embedded_stopped"] = summary(stopped)
    finally:
        stop_embedded(home / "embedded" / "pgdata")
        shutil.rmtree(home, ignore_errors=True)
    return result
