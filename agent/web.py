"""``memagent web``: the chat and its branch tree in a local web page.

One Starlette app serves a static page (``agent/web_static/``, plain HTML/JS/CSS, no
build step, nothing from the internet) and a small JSON API under ``api/``. Every change
goes through ``ChatSession`` and ``tools.admin``, the code paths of the terminal chat
and the CLI, recorded in the audit log with surface ``web``.

The same app runs in two places:

- ``memagent web`` serves ``create_app(prefix="")`` with uvicorn on 127.0.0.1;
- ``langgraph dev`` mounts the module's ``app`` (``langgraph.json``'s ``http.app``)
  under ``/memagent/``. It opens its own ``ChatSession`` (saver and model) in its
  lifespan from the same settings as the server's checkpointer, so both use the same
  database.

In both, ``agent.web_guard.PageGuard`` answers only the page itself: another site's
request, a rebound host name or a change without a JSON body gets a 403 before any
route runs.

With ``MEMAGENT_AUTH=true`` the API needs the server's bearer tokens (``agent.auth``).
The page itself holds no data and stays open, since a browser cannot send a header
when it opens an address; it asks for the token when the API answers 401. Each user
then sees only the threads made in the page under their name: their ids start with
``<user>:``, and any other id answers like a thread that does not exist. A thread's
first turn also records its owner in memagent's own table, where ``erase-user``
finds it.

Every error reaches the page as JSON ``{"error": "<one sentence>"}`` with a fitting
status, never a traceback; a failure during a streamed reply is the stream's last line.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
import psycopg_pool
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agent import auth
from agent.errors import (
    MemagentError,
    NothingToUndoError,
    RequestError,
    ThreadBusyError,
    ThreadNotFoundError,
    one_line,
)
from agent.memory.summary import is_summary
from agent.memory.timeline import MAX_TIMELINE_LIMIT
from agent.presentation import json_default, shown_messages
from agent.session import ChatSession, new_thread_id
from agent.settings import Settings
from agent.store.ownership import is_page_thread_of
from agent.validation import check_thread_id, parse_checkpoint_id
from agent.web_guard import PageGuard, is_loopback
from tools import admin

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "web_static"
SERVER_PREFIX = "/memagent"
"""Where ``langgraph dev`` serves the page: clear of the server's own routes."""

SessionOpener = Callable[[], AbstractAsyncContextManager[ChatSession]]
Endpoint = Callable[[Request], Awaitable[Response]]


class WebError(Exception):
    """A request the API refuses; ``status`` and the one-sentence ``message`` go to the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def web_error(error: Exception) -> WebError:
    """What the page is told about ``error``: a status and one sentence, no traceback."""
    if isinstance(error, WebError):
        return error
    if isinstance(error, ThreadNotFoundError):
        return WebError(404, one_line(error))
    if isinstance(error, ThreadBusyError | NothingToUndoError):
        return WebError(409, one_line(error))
    if isinstance(error, RequestError):
        return WebError(400, one_line(error))
    if isinstance(error, psycopg.OperationalError | psycopg_pool.PoolTimeout):
        return WebError(503, f"The database is unavailable: {one_line(error)}")
    if isinstance(error, MemagentError):
        return WebError(500, one_line(error))
    if isinstance(error, psycopg.Error):
        return WebError(500, f"Database error: {one_line(error)}")
    logger.exception("unexpected error in the web API", exc_info=error)
    return WebError(500, "Something went wrong on the server; its log has the details.")


def _error_response(error: WebError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse({"error": error.message}, status_code=error.status, headers=headers)


def json_errors(endpoint: Endpoint) -> Endpoint:
    """Turns any failure of an API endpoint into the page's JSON error.

    Per endpoint rather than app-wide exception handlers: in ``langgraph dev`` this
    app becomes the server's app, whose own handlers must stay as they are.
    """

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as error:
            return _error_response(web_error(error))

    return guarded


def _json(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, default=json_default)
    return Response(body, status_code=status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise WebError(400, "The request body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise WebError(400, "The request body must be a JSON object.")
    return data


def _text_field(data: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise WebError(400, f"The request needs {name!r} as text.")
    return value


async def _user(request: Request) -> str | None:
    """The requesting user under ``MEMAGENT_AUTH=true`` (``None`` with auth off).

    The server's own check (``agent.auth.bearer_user``), so a token gets the same
    answer, status and sentence, from the page as from the server. Settings are read
    per request so the setting in force is the environment's.
    """
    settings = Settings.from_env()
    if not settings.auth_enabled:
        return None
    try:
        return await auth.bearer_user(request.headers.get("authorization"), settings)
    except auth.Auth.exceptions.HTTPException as refused:
        raise WebError(refused.status_code, refused.detail) from None


async def _thread(request: Request, thread_id: Any) -> str:
    """A thread id the requesting user may use; another user's answers as unknown."""
    if not isinstance(thread_id, str):
        raise WebError(400, "The request needs 'thread' as text.")
    check_thread_id(thread_id)
    user = await _user(request)
    if user is not None and not is_page_thread_of(user, thread_id):
        raise ThreadNotFoundError(thread_id)
    return thread_id


def _session(request: Request) -> ChatSession:
    session: ChatSession | None = getattr(request.app.state, "memagent_session", None)
    if session is None:
        raise WebError(503, "memagent is still starting (or could not open its database).")
    return session


# --- the API ----------------------------------------------------------------------


@json_errors
async def info(request: Request) -> Response:
    """Which model and database answer, for the page's header."""
    user = await _user(request)
    session = _session(request)
    return _json({"model": session.model_label, "database": session.database_label, "user": user})


@json_errors
async def list_threads(request: Request) -> Response:
    """Threads, most recently active first (only the user's own with auth on)."""
    user = await _user(request)
    rows = await admin.athreads(_session(request).saver)
    if user is not None:
        rows = [row for row in rows if is_page_thread_of(user, row["thread_id"])]
    return _json({"threads": rows})


@json_errors
async def create_thread(request: Request) -> Response:
    """A fresh thread id; the thread is saved with its first message."""
    user = await _user(request)
    thread_id = new_thread_id() if user is None else f"{user}:{new_thread_id()}"
    return _json({"thread_id": thread_id}, status=201)


@json_errors
async def conversation(request: Request) -> Response:
    """What the agent remembers now (the head's messages) and the thread's branch tree.

    A thread with nothing saved yet is an empty conversation, where a new one starts.
    """
    thread_id = await _thread(request, request.query_params.get("thread"))
    session = _session(request)
    try:
        tree = await admin.atree(session.saver, thread_id, limit=MAX_TIMELINE_LIMIT)
    except ThreadNotFoundError:
        return _json({"thread_id": thread_id, "messages": [], "tree": None})
    state = await session.graph.aget_state({"configurable": {"thread_id": thread_id}})
    return _json(
        {
            "thread_id": thread_id,
            "messages": [
                {"role": role, "text": text}
                for role, text in shown_messages(state.values.get("messages", []))
            ],
            "tree": tree.to_json(),
        }
    )


@json_errors
async def summary(request: Request) -> Response:
    """The summary a compaction put in the head, for its entry in the tree.

    Read from the checkpoint the compaction wrote (``checkpoint``), so a summary that was
    later compacted again, or set aside by a rewind, still shows as it was.
    """
    thread_id = await _thread(request, request.query_params.get("thread"))
    checkpoint_id = parse_checkpoint_id(request.query_params.get("checkpoint") or "")
    session = _session(request)
    state = await session.graph.aget_state(
        {"configurable": {"thread_id": thread_id, "checkpoint_id": checkpoint_id}}
    )
    found = next((m for m in state.values.get("messages", []) if is_summary(m)), None)
    if found is None:
        raise WebError(404, "That point of the thread holds no summary.")
    return _json({"thread_id": thread_id, "checkpoint_id": checkpoint_id, "text": found.text})


def _line(data: dict[str, Any]) -> bytes:
    return (json.dumps(data) + "\n").encode()


@json_errors
async def chat(request: Request) -> Response:
    """Runs one turn; the reply streams back as NDJSON lines ``{"text": ...}``.

    The first part is awaited before the response starts, so a refused message, a bad
    thread or a busy one gets a proper status. A failure later in the reply ends the
    stream with ``{"error": ...}``; ``{"done": true}`` marks a complete reply.
    """
    data = await _body(request)
    thread_id = await _thread(request, data.get("thread"))
    text = _text_field(data, "text")
    assert text is not None
    user = await _user(request)
    session = _session(request)
    parts = session.stream(thread_id, text)
    try:
        first = await anext(parts)
    except StopAsyncIteration:
        first = ""

    async def reply() -> AsyncIterator[bytes]:
        try:
            if user is not None:  # the turn is saved: whose thread this is (first time only)
                await session.saver.arecord_owner(thread_id, user)
            if first:
                yield _line({"text": first})
            async for part in parts:
                yield _line({"text": part})
            yield _line({"done": True})
        except Exception as error:
            yield _line({"error": web_error(error).message})
        finally:  # a reader that went away must not leave the turn holding its thread
            if isinstance(parts, AsyncGenerator):
                await parts.aclose()

    return StreamingResponse(reply(), media_type="application/x-ndjson")


@json_errors
async def forget(request: Request) -> Response:
    """Forgets the conversation so far (soft, like ``memagent forget``)."""
    data = await _body(request)
    thread_id = await _thread(request, data.get("thread"))
    change = await admin.aforget(
        _session(request).saver,
        thread_id,
        reason=_text_field(data, "reason", required=False),
        surface="web",
        actor=await _user(request),
    )
    return _json(change.to_json())


@json_errors
async def rewind(request: Request) -> Response:
    """Goes back to a point of the tree (a turn's point is just before its message)."""
    data = await _body(request)
    thread_id = await _thread(request, data.get("thread"))
    target = _text_field(data, "checkpoint_id")
    assert target is not None
    change = await admin.arewind(
        _session(request).saver, thread_id, target, surface="web", actor=await _user(request)
    )
    return _json(change.to_json())


@json_errors
async def compact(request: Request) -> Response:
    """Summarises the earlier conversation to free room (soft, like ``memagent compact``)."""
    data = await _body(request)
    thread_id = await _thread(request, data.get("thread"))
    session = _session(request)
    compacted = await admin.acompact(
        session.saver,
        thread_id,
        model=session.model,
        surface="web",
        actor=await _user(request),
    )
    return _json(compacted.to_json())


@json_errors
async def undo(request: Request) -> Response:
    """Takes back the newest change on the head's branch, as the chat's ``/undo`` does."""
    data = await _body(request)
    thread_id = await _thread(request, data.get("thread"))
    change = await admin.aundo(
        _session(request).saver, thread_id, surface="web", actor=await _user(request)
    )
    return _json(change.to_json())


def _quotes(data: dict[str, Any]) -> list[str]:
    """The text the user selected, as the one quote of ``forget_details``/``redact``."""
    quote = _text_field(data, "quote")
    assert quote is not None
    return [quote]


@json_errors
async def forget_detail(request: Request) -> Response:
    """Forgets one detail the user selected in the chat (soft, like ``forget_details``)."""
    data = await _body(request)
    thread_id = await _thread(request, data.get("thread"))
    change = await admin.aforget_details(
        _session(request).saver,
        thread_id,
        _quotes(data),
        reason=_text_field(data, "reason", required=False),
        surface="web",
        actor=await _user(request),
    )
    return _json(change.to_json())


@json_errors
async def erase(request: Request) -> Response:
    """Erases a selected detail from every stored copy of the thread (hard, like ``redact``).

    The page asks the user first; this runs only on their yes. A quote found in no
    stored copy is an error rather than a quiet success, so the user knows nothing
    was erased (and nothing was changed).
    """
    data = await _body(request)
    thread_id = await _thread(request, data.get("thread"))
    erased = await admin.aredact(
        _session(request).saver,
        thread_id,
        _quotes(data),
        surface="web",
        actor=await _user(request),
    )
    if not any(erased.rows.values()):
        raise WebError(400, "Nothing to erase: no stored copy of this thread holds that text.")
    return _json(erased.to_json())


@json_errors
async def delete_thread(request: Request) -> Response:
    """Erases the whole thread for good (hard, like ``memagent delete``).

    The page asks the user first. Every row naming the thread goes, in one transaction,
    and its owner record with it; the audit log keeps a line with the counts.
    """
    data = await _body(request)
    thread_id = await _thread(request, data.get("thread"))
    erased = await admin.adelete(
        _session(request).saver, thread_id, surface="web", actor=await _user(request)
    )
    return _json(erased.to_json())


async def page(request: Request) -> Response:
    """The page; it loads its script and style relative to its own address."""
    return FileResponse(STATIC_DIR / "index.html")


async def to_page(request: Request) -> Response:
    """``/memagent`` -> ``/memagent/``, so the page's relative links resolve."""
    return RedirectResponse(request.url.path + "/")


def _route(path: str, endpoint: Endpoint, method: str = "GET") -> Route:
    # Kept out of the OpenAPI schema: in langgraph dev it is the server's, whose
    # generator would also parse these docstrings as YAML.
    return Route(path, endpoint, methods=[method], include_in_schema=False)


API_ROUTES = [
    _route("/api/info", info),
    _route("/api/threads", list_threads),
    _route("/api/threads", create_thread, "POST"),
    _route("/api/conversation", conversation),
    _route("/api/summary", summary),
    _route("/api/chat", chat, "POST"),
    _route("/api/forget", forget, "POST"),
    _route("/api/rewind", rewind, "POST"),
    _route("/api/undo", undo, "POST"),
    _route("/api/compact", compact, "POST"),
    _route("/api/forget-detail", forget_detail, "POST"),
    _route("/api/erase", erase, "POST"),
    _route("/api/delete", delete_thread, "POST"),
]


def create_app(
    open_session: SessionOpener = ChatSession.open,
    *,
    prefix: str = "",
    hosts: tuple[str, ...] = (),
) -> Starlette:
    """The web app: the page and its API under ``prefix``, behind ``PageGuard``.

    The guard wraps the mount rather than the app: in ``langgraph dev`` this app
    becomes the server's, and app-wide middleware would also guard the server's own
    API, which Studio calls from its own origin.

    Args:
        open_session: Opens the session (database, model, graph) for the app's
            lifetime.
        prefix: Where the page lives, e.g. ``/memagent`` in ``langgraph dev``; empty
            for the root.
        hosts: Names the page is served under besides the loopback ones and the
            address a request arrived at (``memagent web --host``).
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The page's process is the long-running one, in ``langgraph dev`` too, so it
        # applies ``MEMAGENT_RETENTION`` (none when unset).
        async with (
            open_session() as session,
            admin.retention_sweep(session.saver, Settings.from_env()),
        ):
            app.state.memagent_session = session
            yield
        app.state.memagent_session = None

    routes = [
        _route("/", page),
        *API_ROUTES,
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    guarded = Mount(prefix, routes=routes, middleware=[Middleware(PageGuard, hosts=hosts)])
    if prefix:
        return Starlette(routes=[_route(prefix, to_page), guarded], lifespan=lifespan)
    return Starlette(routes=[guarded], lifespan=lifespan)


app = create_app(prefix=SERVER_PREFIX)
"""What ``langgraph.json`` mounts into ``langgraph dev``: the page at ``/memagent/``."""


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``; port 0 picks a free one.

    Bound before the server starts, so the address printed is the one served.

    Raises:
        OSError: The address is taken or cannot be bound, or the port is not 0-65535.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
    except OverflowError as error:  # what bind raises for a port out of range
        sock.close()
        raise OSError(str(error)) from None
    except OSError:
        sock.close()
        raise
    return sock


async def serve(host: str, port: int, *, echo: Callable[[str], None] = print) -> None:
    """``memagent web``: opens the session, prints the address, serves until Ctrl-C.

    The session is opened before the server starts, so a bad setting or an unreachable
    database is the caller's one-line error rather than a failed ASGI startup.
    uvicorn ends by re-raising the SIGINT or SIGTERM it caught, which would skip
    closing the pool and letting the embedded PostgreSQL stop; a no-op handler takes
    that re-raised signal so the shutdown finishes here. ``host`` is served by name
    as well as by address; one that is not loopback gets a warning while auth is off.
    """
    sock = listen(host, port)
    with sock:
        async with ChatSession.open() as session:

            @asynccontextmanager
            async def already_open() -> AsyncIterator[ChatSession]:
                # Announced from the app's startup: uvicorn handles Ctrl-C from here on,
                # and the listening socket queues the first requests.
                bound_host, bound_port = sock.getsockname()[:2]
                shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
                echo(f"memagent web  http://{shown_host}:{bound_port}/")
                echo(f"  model: {session.model_label}")
                echo(f"  database: {session.database_label}")
                if not is_loopback(bound_host) and not Settings.from_env().auth_enabled:
                    echo(
                        f"  Warning: auth is off and {shown_host} is reachable from the "
                        "network, so anyone there can read and change every conversation "
                        "(set MEMAGENT_AUTH=true, see the README)."
                    )
                echo("  Ctrl-C stops it.")
                yield session

            app = create_app(already_open, hosts=(host,))
            config = uvicorn.Config(app, log_level="warning")
            previous = {sig: signal.signal(sig, _ignore) for sig in STOP_SIGNALS}
            try:
                await uvicorn.Server(config).serve(sockets=[sock])
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    echo("memagent web stopped.")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Takes the signal uvicorn re-raises after its graceful shutdown."""
