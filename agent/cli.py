"""The ``memagent`` command: a terminal chat and the thread administration subcommands.

Errors a user can cause are shown as one line on stderr with exit code 1; no traceback.

Over 400 lines on purpose: every subcommand's options and output live with the click
command that declares them; the work is in ``tools.admin`` and the drawings in
``agent.tree_view``.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import psycopg
import psycopg_pool

from agent.errors import MemagentError, NothingToUndoError, one_line
from agent.memory.changes import Erasure, RetainedThread
from agent.memory.timeline import (
    CHAT_REWIND_HINT,
    DEFAULT_TIMELINE_LIMIT,
    MAX_TIMELINE_LIMIT,
    render_timeline,
)
from agent.presentation import json_default, shown_messages
from agent.session import ChatSession, new_thread_id
from agent.settings import Settings
from agent.store.database import open_saver
from agent.store.receipt import ErasureReceipt
from agent.store.saver import MemagentSaver
from agent.store.server_threads import ServerThreads
from agent.terminal import REPLY_CANCELLED, open_terminal, reply_or_cancel, show_recap
from agent.tree_view import local_time, render_tree
from agent.validation import (
    check_keep_turns,
    check_quotes,
    check_thread_id,
    check_user,
    parse_duration,
)
from tools import admin

T = TypeVar("T")
USER_ERRORS = (
    MemagentError,
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
)
CHAT_HELP = (
    "Commands: /forget [REASON]  /undo  /rewind ID  /compact  /timeline [N]  /exit"
    "   (Ctrl-D also quits)"
)
TIMELINE_USAGE = (
    f"Usage: /timeline [N]  (the newest N entries, 1 to {MAX_TIMELINE_LIMIT}; "
    f"default {DEFAULT_TIMELINE_LIMIT})"
)
RECAP_MESSAGES = 6
"""How many earlier messages a resumed chat shows."""


def _run(work: Callable[[], Awaitable[T]]) -> T:
    """Runs async CLI work, turning user-caused failures into one line and exit 1."""
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except USER_ERRORS as error:
        raise click.ClickException(_one_line(error)) from None


def _one_line(error: BaseException) -> str:
    text = one_line(error)
    if isinstance(error, psycopg.OperationalError | psycopg_pool.PoolTimeout):
        return f"database unavailable: {text}"
    return text


def _with_saver(action: Callable[[MemagentSaver], Awaitable[T]]) -> T:
    """Runs one administration call on a freshly opened saver.

    Any other database error (a constraint, a trigger, a permission) is also one line:
    the operation ran in a transaction, so nothing was half done.
    """

    async def work() -> T:
        async with open_saver(Settings.from_env()) as saver:
            return await action(saver)

    try:
        return _run(work)
    except psycopg.Error as error:
        raise click.ClickException(f"database error: {_one_line(error)}") from None


@click.group()
def main() -> None:
    """memagent: a chat agent whose memory you manage, kept in PostgreSQL."""


@main.command()
@click.option("--thread", "thread_id", help="Continue this thread (default: a new one).")
def chat(thread_id: str | None) -> None:
    """Chat in the terminal. Quit and resume later with --thread."""
    _run(lambda: _chat(thread_id or new_thread_id()))


async def _chat(thread_id: str) -> None:
    check_thread_id(thread_id)
    settings = Settings.from_env()
    async with ChatSession.open(settings) as session:
        terminal = open_terminal(settings)
        click.echo(f"memagent  model: {session.model_label}")
        click.echo(f"          database: {session.database_label}")
        click.echo(f"          context: {session.context_tokens} tokens per model call")
        click.echo(f"          thread: {thread_id}  (resume: {_resume_command(thread_id)})")
        click.echo(CHAT_HELP)
        if terminal.keys_help:
            click.echo(terminal.keys_help)
        show_recap(await _recent_messages(session, thread_id))
        try:
            while True:
                line = await terminal.read_line()
                if line is None or line.split(maxsplit=1)[:1] in (["/exit"], ["/quit"]):
                    return  # any words after /exit change nothing: the chat ends
                if not line.strip():
                    continue
                try:
                    if line.startswith("/"):
                        await _slash_command(session, thread_id, line.strip())
                    else:
                        reply = terminal.show_reply(session.stream(thread_id, line))
                        if await reply_or_cancel(reply):
                            await _answer_pending_question(session, thread_id)
                        else:
                            click.echo(REPLY_CANCELLED)
                except USER_ERRORS as error:
                    click.echo(f"\nerror: {_one_line(error)}", err=True)
        finally:
            click.echo("bye")
            click.echo(f"Thread {thread_id} is saved. Resume it with: {_resume_command(thread_id)}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, help="Port to listen on (default: a free one).")
def web(host: str, port: int) -> None:
    """Open the chat and its branch tree in a local web page (prints the address)."""
    try:
        _run(lambda: _web(host, port))
    except OSError as error:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {error.strerror or error}"
        ) from None


async def _web(host: str, port: int) -> None:
    """Serves the page; with auth on, unusable auth settings are refused first.

    Raises:
        SettingsError: A setting cannot be used (auth, ``MEMAGENT_RETENTION``).
        OSError: ``host:port`` cannot be listened on.
    """
    settings = Settings.from_env()
    if settings.retention is not None:
        admin.retention_policy(settings.retention)
    if settings.auth_enabled:  # imported only then: without auth no token code is needed
        from agent.auth import check_auth_settings

        check_auth_settings(settings)
    from agent.web import serve  # imported here: the other commands need no web stack

    await serve(host, port, echo=click.echo)


def _resume_command(thread_id: str) -> str:
    """The command that resumes this thread, as the user started memagent, ready to paste."""
    program = "python3 -m agent" if sys.argv[0].endswith("__main__.py") else "memagent"
    return f"{program} chat --thread {shlex.quote(thread_id)}"


async def _recent_messages(session: ChatSession, thread_id: str) -> list[tuple[str, str]]:
    """The last few things said in the thread (what the agent now remembers), oldest first."""
    state = await session.graph.aget_state({"configurable": {"thread_id": thread_id}})
    said = shown_messages(state.values.get("messages", []))
    return [("you" if role == "user" else role, text) for role, text in said[-RECAP_MESSAGES:]]


def _timeline_limit(argument: str) -> int | None:
    """The entry count ``/timeline N`` asks for; ``None`` if it is not one."""
    if not argument:
        return DEFAULT_TIMELINE_LIMIT
    if argument.isdigit() and 1 <= int(argument) <= MAX_TIMELINE_LIMIT:
        return int(argument)
    return None


async def _answer_pending_question(session: ChatSession, thread_id: str) -> None:
    """Asks the user a paused turn's yes/no question (erase for good) and resumes it."""
    question = await session.pending_question(thread_id)
    if question is None:
        return
    quotes = ", ".join(f'"{quote}"' for quote in question.get("quotes", []))
    text = f"{question.get('question', 'Continue?')} {quotes}"
    answer = await asyncio.to_thread(_ask, text)
    click.echo("agent> " + await session.resume(thread_id, answer))


async def _slash_command(session: ChatSession, thread_id: str, line: str) -> None:
    command, _, argument = line.partition(" ")
    argument = argument.strip()
    saver = session.saver
    if command == "/timeline":
        limit = _timeline_limit(argument)
        if limit is None:
            click.echo(TIMELINE_USAGE)
            return
        entries = await admin.atimeline(saver, thread_id, limit=limit)
        click.echo(render_timeline(entries, rewind_hint=CHAT_REWIND_HINT))
    elif command == "/forget":
        change = await admin.aforget(
            saver, thread_id, reason=argument or "asked in the chat", surface="cli"
        )
        click.echo(f"Forgotten. Undo with /undo or /rewind (new head {change.checkpoint_id}).")
    elif command == "/undo":
        if argument:
            click.echo("Usage: /undo  (takes back the newest change; /rewind ID goes further)")
            return
        try:
            change = await admin.aundo(saver, thread_id, surface="cli")
        except NothingToUndoError as error:
            click.echo(str(error))
            return
        click.echo(f"Undone: back to {change.rewound_to}.")
    elif command == "/compact":
        compacted = await admin.acompact(saver, thread_id, model=session.model, surface="cli")
        click.echo(
            f"Compacted {compacted.replaced} message(s) into a summary "
            f"({compacted.tokens_before} → {compacted.tokens_after} tokens). Undo with /undo."
        )
    elif command == "/rewind":
        if not argument:
            click.echo("Usage: /rewind CHECKPOINT_ID  (see /timeline for ids)")
            return
        change = await admin.arewind(saver, thread_id, argument, surface="cli")
        click.echo(f"Rewound to {change.rewound_to}.")
    elif command == "/help":
        click.echo(CHAT_HELP)
    else:
        click.echo(f"Unknown command {command}. {CHAT_HELP}")


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=json_default))


@main.command()
@click.option("--limit", default=100, show_default=True, help="How many threads.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def threads(limit: int, as_json: bool) -> None:
    """List threads, most recently active first."""
    rows = _with_saver(lambda saver: admin.athreads(saver, limit=limit))
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("No threads yet.")
    for row in rows:
        click.echo(
            f"{row['thread_id']}  last active {local_time(row['last_activity'])}  "
            f"{row['checkpoints']} checkpoints"
        )


@main.command()
@click.argument("thread_id")
@click.option("--limit", default=20, show_default=True, help="How many entries.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def timeline(thread_id: str, limit: int, as_json: bool) -> None:
    """Show a thread's turns, forgets and rewinds as a tree of its branches.

    Every id shown can be passed to `memagent rewind`: a turn's id is the point just
    before that message, so rewinding there takes the message back.
    """
    tree = _with_saver(lambda saver: admin.atree(saver, thread_id, limit=limit))
    if as_json:
        _echo_json(tree.to_json())
    else:
        click.echo(render_tree(tree))


@main.command()
@click.argument("thread_id")
@click.option("--reason", help="Why (kept in the checkpoint metadata).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def forget(thread_id: str, reason: str | None, as_json: bool) -> None:
    """Forget a thread's conversation (soft: `memagent rewind` can undo it)."""
    change = _with_saver(
        lambda saver: admin.aforget(saver, thread_id, reason=reason, surface="cli")
    )
    if as_json:
        _echo_json(change.to_json())
    else:
        click.echo(f"Forgot thread {thread_id}; new head {change.checkpoint_id}.")


@main.command()
@click.argument("thread_id")
@click.argument("checkpoint_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def rewind(thread_id: str, checkpoint_id: str, as_json: bool) -> None:
    """Return a thread to an earlier checkpoint (ids from `memagent timeline`)."""
    change = _with_saver(
        lambda saver: admin.arewind(saver, thread_id, checkpoint_id, surface="cli")
    )
    if as_json:
        _echo_json(change.to_json())
    else:
        click.echo(
            f"Rewound thread {thread_id} to {change.rewound_to}; new head {change.checkpoint_id}."
        )


@main.command()
@click.argument("thread_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compact(thread_id: str, as_json: bool) -> None:
    """Summarise a thread's earlier turns into one message (soft: `memagent rewind` undoes it)."""
    compacted = _with_saver(lambda saver: admin.acompact(saver, thread_id, surface="cli"))
    if as_json:
        _echo_json(compacted.to_json())
    else:
        click.echo(
            f"Compacted thread {thread_id}: {compacted.replaced} message(s) into a summary "
            f"({compacted.tokens_before} → {compacted.tokens_after} tokens); new head "
            f"{compacted.checkpoint_id}."
        )


def _counts(rows: dict[str, int]) -> str:
    return ", ".join(f"{n} {table}" for table, n in rows.items())


def _ask(question: str) -> bool:
    """Asks a yes/no question on stderr (default no); no answer at all is a no.

    On stderr, so ``--json`` output on stdout stays pure JSON when "y" is piped in.
    """
    try:
        return click.confirm(question, default=False, err=True)
    except click.Abort:  # end of input or Ctrl-C at the question
        click.echo(err=True)  # the question is still waiting for its newline
        return False


def _confirm(question: str) -> None:
    """Goes on only on "y": anything else ends the command with one line and exit 1."""
    if not _ask(question):
        click.echo("Nothing was erased.", err=True)
        sys.exit(1)


@main.command()
@click.argument("thread_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def delete(thread_id: str, yes: bool, as_json: bool) -> None:
    """Erase a thread for good: every checkpoint, blob and write, in one transaction."""
    _checked(thread_id)
    if not yes:
        _confirm(f"Erase thread {thread_id} permanently? It cannot be undone")
    erased = _with_saver(lambda saver: admin.adelete(saver, thread_id, surface="cli"))
    if as_json:
        _echo_json(erased.to_json())
    elif not any(erased.rows.values()):
        click.echo(f"Nothing to delete: thread {thread_id} has no saved rows.")
    else:
        click.echo(f"Deleted thread {thread_id}: {_counts(erased.rows)}.")


@main.command()
@click.argument("thread_id")
@click.option(
    "--text", "texts", multiple=True, required=True, help="A detail to erase (repeatable)."
)
@click.option(
    "--server",
    "server_url",
    help="Also delete the thread's runs that said it from this langgraph dev server "
    "(default: MEMAGENT_SERVER_URL).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def redact(
    thread_id: str, texts: tuple[str, ...], server_url: str | None, yes: bool, as_json: bool
) -> None:
    """Erase details for good from every stored copy of a thread (ids stay)."""
    _checked(thread_id)
    quotes = _checked_quotes(list(texts))
    try:
        settings = Settings.from_env()
    except MemagentError as error:
        raise click.ClickException(str(error)) from None
    url = server_url or settings.server_url
    if url and settings.auth_enabled:
        raise click.ClickException(
            "With MEMAGENT_AUTH on, memagent does not know whose token to use on the "
            "server; run redact without --server (the database is still erased) and "
            "delete the thread's runs with the owner's token."
        )
    if not yes:
        where = f" and its runs that said it on the server at {url}" if url else ""
        _confirm(
            f"Erase {len(quotes)} detail(s) from every stored copy of thread {thread_id}"
            f"{where}? It cannot be undone"
        )
    server = ServerThreads(url) if url else None

    async def erase(saver: MemagentSaver) -> Erasure:
        try:
            return await admin.aredact(saver, thread_id, quotes, surface="cli", server=server)
        finally:
            if server is not None:
                await server.aclose()

    erased = _with_saver(erase)
    if as_json:
        _echo_json(erased.to_json())
    elif not any(erased.rows.values()):
        click.echo(f"Nothing to erase: no stored copy of thread {thread_id} holds that text.")
    else:
        click.echo(f"Erased from thread {thread_id}: {_counts(erased.rows)} changed.")
    if erased.server is not None and not as_json:
        click.echo(erased.server.sentences())


@main.command()
@click.argument("thread_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def purge(thread_id: str, as_json: bool) -> None:
    """Erase everything older than the thread's newest forget; the thread goes on.

    Afterwards that forget can no longer be undone.
    """
    erased = _with_saver(lambda saver: admin.apurge(saver, thread_id, surface="cli"))
    if as_json:
        _echo_json(erased.to_json())
    else:
        click.echo(f"Purged thread {thread_id} up to {erased.kept_from}: {_counts(erased.rows)}.")


SERVER_TOKEN_DAYS = 10 / (24 * 60)
"""How long the token ``erase-user`` makes for the server lasts: ten minutes."""


def _server_as(user: str, url: str, settings: Settings) -> ServerThreads:
    """The server at ``url``, reached as ``user`` when auth is on.

    With a shared secret, a token for ``user`` lasting minutes is made here, so the
    server's auth shows exactly that user's threads. Tokens of an identity provider
    cannot be made here.

    Raises:
        click.ClickException: Auth is on with an identity provider, or its settings
            are unusable.
    """
    if not settings.auth_enabled:
        return ServerThreads(url)
    from agent.auth import issue_token, shared_secret  # only with auth on

    if settings.auth_jwks_url is not None:
        raise click.ClickException(
            "With MEMAGENT_AUTH_JWKS_URL, tokens come from your identity provider, so "
            "memagent cannot act as the user on the server; run erase-user without "
            "--server (the database is still erased) and delete the user's server "
            "threads with one of their tokens."
        )
    try:
        token = issue_token(
            user,
            shared_secret(settings),
            days=SERVER_TOKEN_DAYS,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
        )
    except (MemagentError, ValueError) as error:
        raise click.ClickException(one_line(error)) from None
    return ServerThreads(url, {"Authorization": f"Bearer {token}"})


@main.command("erase-user")
@click.argument("user")
@click.option(
    "--server",
    "server_url",
    help="Also erase from this langgraph dev server (default: MEMAGENT_SERVER_URL).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def erase_user(user: str, server_url: str | None, yes: bool, as_json: bool) -> None:
    """Erase every thread of a user, everywhere, and print the receipt.

    Exits with status 1 if the scan afterwards still finds a row naming the user.
    """
    try:
        check_user(user)
        settings = Settings.from_env()
    except MemagentError as error:
        raise click.ClickException(str(error)) from None
    url = server_url or settings.server_url
    server = _server_as(user, url, settings) if url else None
    if not yes:
        where = f" (also on the server at {url})" if url else ""
        _confirm(f"Erase every thread of user {user}{where} permanently? It cannot be undone")

    async def erase(saver: MemagentSaver) -> ErasureReceipt:
        try:
            return await admin.aerase_user(saver, user, server=server, surface="cli")
        finally:
            if server is not None:
                await server.aclose()

    receipt = _with_saver(erase)
    if as_json:
        _echo_json(receipt.to_json())
    else:
        click.echo(_receipt_lines(user, receipt))
    if not receipt.scan.clean:
        click.echo(
            f"Warning: rows still name user {user} or hold one of their thread ids: "
            f"{_counts(receipt.scan.found)}.",
            err=True,
        )
        sys.exit(1)


def _receipt_lines(user: str, receipt: ErasureReceipt) -> str:
    server = receipt.server
    on_server = f"; on the server: {server.threads} threads, {server.runs} runs" if server else ""
    scan = receipt.scan
    found = "nothing found" if scan.clean else f"found {_counts(scan.found)}"
    return (
        f"Erased user {user}: {receipt.threads} threads; {_counts(receipt.rows)}{on_server}.\n"
        f"Audit log: {receipt.audit_lines} line(s) now name {receipt.user} instead.\n"
        f"Scan of {scan.tables} tables ({scan.columns} columns): {found}.\n"
        f"Receipt {receipt.digest}, kept in the audit log."
    )


@main.command()
@click.option(
    "--full",
    is_flag=True,
    help="VACUUM FULL: give the space back to the system (locks each table meanwhile).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def vacuum(full: bool, as_json: bool) -> None:
    """Reclaim the space of erased rows now (VACUUM on memagent's and langgraph's tables)."""
    sizes = _with_saver(lambda saver: admin.avacuum(saver, full=full))
    if as_json:
        tables = {t: {"bytes_before": b, "bytes_after": a} for t, (b, a) in sizes.items()}
        _echo_json({"full": full, "tables": tables})
        return
    if not full:  # VACUUM marks space reusable; a file's size barely changes
        click.echo(
            f"VACUUM done on {len(sizes)} tables: the space of removed rows can be reused. "
            "`memagent vacuum --full` gives it back to the system."
        )
        return
    before, after = (sum(size[i] for size in sizes.values()) for i in (0, 1))
    click.echo(f"VACUUM FULL done on {len(sizes)} tables: {before} -> {after} bytes.")


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    kilobytes = count / 1024
    return f"{kilobytes:.1f} kB" if kilobytes < 1024 else f"{kilobytes / 1024:.1f} MB"


def _retained_line(thread: RetainedThread, dry_run: bool) -> str:
    if thread.kept_from is None or not thread.checkpoints:
        return f"Thread {thread.thread_id}: nothing to remove."
    verb = "would remove" if dry_run else "removed"
    stones = (
        f"; {thread.tombstones} memory change(s) stay as tombstones" if thread.tombstones else ""
    )
    removed = _counts(thread.rows)
    return f"Thread {thread.thread_id}: kept from {thread.kept_from}; {verb} {removed}{stones}."


@main.command()
@click.argument("thread_id", required=False)
@click.option("--all", "all_threads", is_flag=True, help="Every thread.")
@click.option("--keep-turns", metavar="N", help="Keep the newest N turns of the branch.")
@click.option("--older-than", metavar="AGE", help="Remove turns older than AGE: 30d, 12h, 1w2d.")
@click.option("--dry-run", is_flag=True, help="Change nothing; say what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def retain(
    thread_id: str | None,
    all_threads: bool,
    keep_turns: str | None,
    older_than: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Keep only a thread's newest turns; older history goes for good.

    What is kept loads exactly as before; forgets and other memory changes that were
    cut stay in `memagent timeline`, marked "removed by retention". For cron, e.g.
    `memagent retain --all --older-than 90d`.
    """
    if (thread_id is None) != all_threads:
        raise click.ClickException("Say which threads: a THREAD or --all (not both).")
    if (keep_turns is None) == (older_than is None):
        raise click.ClickException("Say what to keep: --keep-turns N or --older-than AGE.")
    policy: dict[str, Any] = {"older_than": _checked_age(older_than)}
    if keep_turns is not None:
        policy = {"keep_turns": _checked_turns(keep_turns)}
    if thread_id is not None:
        _checked(thread_id)
    done = _with_saver(
        lambda saver: admin.aretain(saver, thread_id, dry_run=dry_run, surface="cli", **policy)
    )
    if as_json:
        _echo_json(done.to_json())
        return
    if dry_run:
        click.echo("Dry run: nothing was changed.")
    for thread in done.threads:
        if thread_id is not None or thread.checkpoints:
            click.echo(_retained_line(thread, dry_run))
    if thread_id is None:
        verb = "would remove" if dry_run else "removed"
        changed = sum(1 for thread in done.threads if thread.checkpoints)
        click.echo(
            f"{len(done.threads)} thread(s), {changed} with older history: {verb} "
            f"{_counts(done.rows) or 'nothing'} "
            f"({_size(sum(thread.bytes for thread in done.threads))})."
        )
    if done.busy:
        click.echo(f"Busy, not retained (run again): {', '.join(done.busy)}.", err=True)
    if done.refused:
        click.echo(f"Cannot be cut (DeltaChannel): {', '.join(done.refused)}.", err=True)


def _audit_detail(row: dict[str, Any]) -> str:
    detail = row["detail"] or {}
    if row["operation"] == admin.ERASE_USER_OPERATION:
        rows = sum(detail.get("rows", {}).values())
        clean = "clean" if detail.get("scan", {}).get("clean") else "NOT clean"
        return f"  {detail.get('threads', 0)} threads, {rows} rows, scan {clean}"
    if row["operation"] == "rewind" and detail.get("target"):
        return f"  to {detail['target']}"
    if row["operation"] in ("purge", "retain") and detail.get("kept_from"):
        return f"  kept from {detail['kept_from']}"
    if row["operation"] == "delete":
        return f"  {sum(v for v in detail.values() if isinstance(v, int))} rows"
    return ""


@main.command()
@click.argument("thread_id", required=False)
@click.option("--limit", default=100, show_default=True, help="How many lines.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def audit(thread_id: str | None, limit: int, as_json: bool) -> None:
    """Show the audit log of memory operations (no conversation content), newest first."""
    rows = _with_saver(lambda saver: admin.aaudit(saver, thread_id, limit=limit))
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("No memory operations recorded.")
    for row in rows:
        who = f" by {row['actor']}" if row["actor"] else ""
        click.echo(
            f"{local_time(row['at'])}  {row['operation']:<7} {row['thread_id']}  "
            f"via {row['surface']}{who}{_audit_detail(row)}"
        )


def _checked(thread_id: str) -> str:
    try:
        return check_thread_id(thread_id)
    except MemagentError as error:
        raise click.ClickException(str(error)) from None


def _checked_quotes(quotes: list[str]) -> list[str]:
    try:
        return check_quotes(quotes)
    except MemagentError as error:
        raise click.ClickException(str(error)) from None


def _checked_turns(raw: str) -> int:
    try:
        return check_keep_turns(int(raw) if raw.strip().lstrip("-").isdigit() else raw)
    except MemagentError as error:
        raise click.ClickException(str(error)) from None


def _checked_age(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        parse_duration(raw)
    except MemagentError as error:
        raise click.ClickException(str(error)) from None
    return raw
