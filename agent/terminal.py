"""The chat's side of the terminal: reading what the user types and showing the replies.

When a person is at a terminal (stdin and stdout are both terminals) the prompt is
``prompt_toolkit``'s: line editing, a history kept in a file across sessions, pastes of
any length or of several lines arriving whole (bracketed paste; the kernel's line
discipline would cut a typed line at 4095 characters), and Ctrl-C that clears the line
instead of killing the process. While a reply streams in, Ctrl-C cancels that reply
only (``reply_or_cancel``), on any terminal. Replies are drawn as Markdown with ``rich`` while they
stream in. Otherwise (a pipe, a file, a test) lines are read and replies written as
plain text, so scripts see exactly what the agent said.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from types import FrameType
from typing import Any

import click
from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from agent.settings import Settings

PROMPT = "you> "
REPLY_LABEL = "agent> "
QUIT_HINT = "(Ctrl-C again or Ctrl-D to quit)"
REPLY_CANCELLED = "(reply cancelled: your message is kept, unanswered)"
"""Shown when Ctrl-C stopped a reply, where the rest of the reply would have been."""
REDRAW_SECONDS = 0.1
"""How often a streaming reply is redrawn."""
RECAP_CHARS = 300
"""How much of each earlier message a resumed chat shows."""


def history_path(settings: Settings) -> Path:
    """Where the chat keeps what the user typed, for the up arrow in later sessions."""
    return settings.home / "chat_history"


class PlainTerminal:
    """Lines from stdin, replies as plain text on stdout: for pipes, files and tests."""

    keys_help = ""
    """The editing keys this terminal offers, for the banner (none here)."""

    async def read_line(self) -> str | None:
        """The user's next line without its newline, or ``None`` at end of input.

        The blocking read runs in a daemon thread rather than the event loop's
        executor: if the chat ends while a read is pending (a signal), the process
        can still exit instead of waiting for a line that may never come.
        """
        click.echo(PROMPT, nl=False)
        loop = asyncio.get_running_loop()
        line: asyncio.Future[str] = loop.create_future()

        def read() -> None:
            text = sys.stdin.readline()
            with contextlib.suppress(RuntimeError):  # the chat ended while this waited
                loop.call_soon_threadsafe(_settle, line, text)

        threading.Thread(target=read, name="memagent-stdin", daemon=True).start()
        text = await line
        if not text:
            click.echo()
            return None
        return text.removesuffix("\n")

    async def show_reply(self, parts: AsyncIterator[str]) -> None:
        """Writes the reply as it streams in, on one ``agent>`` line.

        A turn that only paused to ask the user something (erase for good?) says
        nothing itself, so it gets no empty ``agent>`` line before the question.
        """
        started = False
        try:
            async for part in parts:
                if not started:
                    click.echo(REPLY_LABEL, nl=False)
                    started = True
                click.echo(part, nl=False)
        finally:  # a cancelled reply ends its line too
            if started:
                click.echo()


def _settle(future: asyncio.Future[str], text: str) -> None:
    if not future.done():
        future.set_result(text)


class PromptTerminal(PlainTerminal):
    """An editing prompt with history, and replies drawn as Markdown.

    Ctrl-C clears the line; a second Ctrl-C at the empty prompt (or Ctrl-D) ends the
    chat, the way the read returns ``None`` at the end of piped input, so the chat
    closes the database normally. Esc then Enter inserts a line break.
    """

    keys_help = (
        "Keys: Up/Down earlier lines  Esc Enter new line  "
        "Ctrl-C clears the line (twice quits) or cancels a reply"
    )

    def __init__(self, history_file: Path) -> None:
        history_file.parent.mkdir(parents=True, exist_ok=True)
        history_file.touch(mode=0o600, exist_ok=True)  # it holds what the user typed
        self._quit_armed = False
        self._console = Console()
        self._session: PromptSession[str] = PromptSession(
            history=FileHistory(str(history_file)),
            key_bindings=self._key_bindings(),
            placeholder=self._placeholder,
        )
        self._session.default_buffer.on_text_changed += self._disarm

    def _key_bindings(self) -> KeyBindings:
        bindings = KeyBindings()

        @bindings.add("c-c")
        def _interrupt(event: KeyPressEvent) -> None:
            buffer = event.current_buffer
            if self._quit_armed and not buffer.text:
                self._quit_armed = False  # the prompt left on screen shows no hint
                event.app.exit(exception=EOFError)
                return
            buffer.reset()
            self._quit_armed = True

        @bindings.add("escape", "enter")
        def _line_break(event: KeyPressEvent) -> None:
            event.current_buffer.insert_text("\n")

        return bindings

    def _placeholder(self) -> FormattedText:
        return FormattedText([("fg:ansibrightblack", QUIT_HINT if self._quit_armed else "")])

    def _disarm(self, _buffer: object) -> None:
        self._quit_armed = False

    async def read_line(self) -> str | None:
        """The user's next entry (it may span lines), or ``None`` when they quit."""
        self._quit_armed = False
        try:
            return await self._session.prompt_async(PROMPT)
        except EOFError:
            return None

    async def show_reply(self, parts: AsyncIterator[str]) -> None:
        """Draws the reply as Markdown as it arrives.

        Redrawing parses the whole reply again, so it happens at most every
        ``REDRAW_SECONDS`` rather than for every token, and once more at the end.
        """
        clock = asyncio.get_running_loop().time
        text, drawn_at = "", clock()
        live: Live | None = None  # started at the first words: a turn that only asks says none
        try:
            async for part in parts:
                text += part
                if live is None:
                    live = Live(self._reply(text), console=self._console, auto_refresh=False)
                    live.start(refresh=True)  # the first words show at once
                if clock() - drawn_at >= REDRAW_SECONDS:
                    live.update(self._reply(text), refresh=True)
                    drawn_at = clock()
        finally:
            if live is not None:
                live.update(self._reply(text), refresh=True)
                live.stop()

    @staticmethod
    def _reply(text: str) -> Table:
        """``agent>`` with the reply beside it, wrapped lines indented under the reply."""
        grid = Table.grid(padding=(0, 0))
        grid.add_column(no_wrap=True)
        grid.add_column(ratio=1)
        grid.add_row(Text(REPLY_LABEL, style="bold cyan"), Markdown(text))
        return grid


async def reply_or_cancel(reply: Coroutine[Any, Any, None]) -> bool:
    """Shows ``reply`` (a turn streaming in); Ctrl-C cancels it, and only it.

    The reply runs as a task of its own, and while it runs SIGINT cancels that task
    instead of the chat (asyncio's default would cancel the whole chat, ending it with
    ``Aborted!``). The cancelled turn unwinds normally: langgraph stops, the thread's
    lease is released, and the user's message, already saved, stays in the thread
    without a reply. A second Ctrl-C while it unwinds changes nothing, so the lease is
    still released.

    Returns:
        ``True`` if the reply finished, ``False`` if Ctrl-C cancelled it.
    """
    task = asyncio.create_task(reply)
    loop = asyncio.get_running_loop()

    def cancel(signum: int, frame: FrameType | None) -> None:
        if not task.cancelling():
            loop.call_soon_threadsafe(task.cancel)

    previous = signal.signal(signal.SIGINT, cancel)
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if not task.cancelled() or (current is not None and current.cancelling()):
            raise  # the chat itself is being cancelled, not just this reply
        return False
    finally:
        signal.signal(signal.SIGINT, previous)
    return True


def open_terminal(settings: Settings) -> PlainTerminal:
    """The prompt for a person at a terminal, plain lines for anything else."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        return PromptTerminal(history_path(settings))
    return PlainTerminal()


def show_recap(turns: list[tuple[str, str]]) -> None:
    """Shows the last turns of a resumed thread, dimmed and set apart from the live chat.

    The lines are indented and say ``you:``/``agent:`` rather than the prompts, so a
    transcript never mistakes them for this session's turns.
    """
    if not turns:
        return
    click.echo(click.style(f"Earlier in this thread (last {len(turns)} messages):", dim=True))
    for speaker, text in turns:
        flat = " ".join(text.split())
        if len(flat) > RECAP_CHARS:
            flat = flat[: RECAP_CHARS - 1] + "…"
        click.echo(click.style(f"  {speaker}: {flat}", dim=True))
