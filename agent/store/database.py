"""Opening memagent's database: which server, the connection pool, the embedded PostgreSQL.

``open_saver()`` is the one way in: it picks the database (``DATABASE_URL``, or an
embedded PostgreSQL started from the ``pgserver`` wheel), opens a connection pool,
runs a setup that is safe when several processes start at once, and closes it all on
exit. ``server_checkpointer`` is the same thing for ``langgraph dev``.
"""

from __future__ import annotations

import asyncio
import select
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from agent.settings import Settings, model_label
from agent.startup import announce
from agent.store.saver import MemagentSaver

CONNECTION_KWARGS: dict[str, Any] = {
    "autocommit": True,
    "prepare_threshold": 0,
    "row_factory": dict_row,
}
"""Every pooled connection: statements prepared at first use (they repeat every turn)."""


def connection_kwargs(settings: Settings) -> dict[str, Any]:
    """``CONNECTION_KWARGS``, without prepared statements when the settings say so.

    A pooler in transaction mode (PgBouncer before 1.21, or without
    ``max_prepared_statements``) hands each transaction to any server connection,
    where a statement prepared on another one does not exist.
    """
    if settings.prepared_statements:
        return CONNECTION_KWARGS
    return {**CONNECTION_KWARGS, "prepare_threshold": None}


async def check_connection(conn: AsyncConnection[DictRow]) -> None:
    """The pool's check of a connection it hands out, with no round trip when healthy.

    psycopg_pool's ``check_connection`` sends an empty query at every checkout: a
    round trip each time, about 1 ms of every turn. A connection the server has closed
    (``pg_terminate_backend``, a restart) has the server's farewell or the end of the
    stream waiting on its socket, while an idle healthy one has nothing to read; so
    only a closed connection or a readable socket gets the library's full check, which
    then fails and makes the pool replace the connection before anyone uses it.

    Raises:
        psycopg.OperationalError: The connection is broken.
    """
    if not conn.closed:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if not readable:
            return
    await AsyncConnectionPool.check_connection(conn)


def start_embedded_postgres(data_dir: Path) -> str:
    """Starts (or reuses) the embedded PostgreSQL in ``data_dir``; returns its URL.

    The server stops when the last process using it exits; the data stays for the
    next run.
    """
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; pgserver copes.
        warnings.simplefilter("ignore")
        import pgserver  # imported here: only the embedded path needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    _EMBEDDED_SERVERS.append(server)  # keep the handle alive until exit
    return str(server.get_uri())


_EMBEDDED_SERVERS: list[Any] = []


def resolve_database_url(settings: Settings) -> str:
    """``DATABASE_URL`` if set, otherwise the embedded server's URL (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return start_embedded_postgres(settings.embedded_data_dir)


def describe_database(settings: Settings) -> str:
    """A one-line, password-free description of where the data lives."""
    if settings.database_url is None:
        return f"embedded PostgreSQL, data in {settings.embedded_data_dir}"
    info = conninfo_to_dict(settings.database_url)
    host = info.get("host") or "localhost"
    return f"PostgreSQL at {host}:{info.get('port', 5432)}/{info.get('dbname', '')}"


async def probe_database(
    url: str,
    timeout: float,  # noqa: ASYNC109 - a connect timeout passed to libpq
    kwargs: dict[str, Any],
) -> None:
    """Connects once, directly, so that an unreachable database fails at once, clearly.

    Opening the pool against a server that does not answer would retry for
    ``timeout`` seconds, log a warning at every attempt, and end in a ``PoolTimeout``
    that names no cause. One connection attempt instead raises the driver's own
    reason (refused, unknown host, bad password) as a single error.

    Raises:
        psycopg.OperationalError: The database cannot be reached.
    """
    extra: dict[str, Any] = {}
    if "connect_timeout" not in conninfo_to_dict(url):  # libpq would otherwise wait forever
        extra["connect_timeout"] = max(2, round(timeout))
    connection = await AsyncConnection.connect(url, **kwargs, **extra)
    await connection.close()


@asynccontextmanager
async def open_saver(
    settings: Settings | None = None,
    *,
    database_url: str | None = None,
    max_size: int | None = None,
) -> AsyncIterator[MemagentSaver]:
    """Opens memagent's saver on a fresh pool, set up and ready; closes it on exit.

    Args:
        settings: Defaults to ``Settings.from_env()``.
        database_url: Overrides the settings' database (tests use this).
        max_size: Overrides the pool's upper bound.
    """
    settings = settings or Settings.from_env()
    url = database_url or resolve_database_url(settings)
    kwargs = connection_kwargs(settings)
    await probe_database(url, settings.pool_timeout, kwargs)
    pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size or settings.pool_max_size,
        timeout=settings.pool_timeout,
        kwargs=kwargs,
        check=check_connection,
        open=False,
    )
    await pool.open(wait=True, timeout=settings.pool_timeout)
    try:
        saver = MemagentSaver(
            pool,
            url,
            busy_timeout=settings.thread_busy_timeout,
            lease_seconds=settings.lease_seconds,
            serde_allow=settings.serde_allow,
            metadata_keys=settings.metadata_keys,
        )
        await saver.setup()
        yield saver
    finally:
        await pool.close()


@asynccontextmanager
async def server_checkpointer() -> AsyncIterator[MemagentSaver]:
    """The checkpointer ``langgraph.json`` names: entered once by the server, closed on exit.

    On exit it also lets go of the embedded PostgreSQL, stopping it if no other program
    uses it. pgserver does that from an ``atexit`` hook, but uvicorn ends the server by
    re-raising SIGTERM, which skips ``atexit``: the database would keep running and
    pgserver would count the dead server as a user forever.

    Once the database is open it says, in one line of the server's output, which
    model and which database memagent uses; it also lets the saver audit the
    requesting user for the deletes the server makes directly and, with auth on,
    record the owner of each thread a user writes to (``server_thread_owner``).
    """
    settings = Settings.from_env()
    try:
        async with open_saver(settings) as saver:
            saver.request_user = server_request_user
            if settings.auth_enabled:
                saver.thread_owner = server_thread_owner
            announce(f"model {model_label(settings)}, database {describe_database(settings)}")
            yield saver
    finally:
        await asyncio.to_thread(release_embedded_postgres)


def server_request_user() -> str | None:
    """The user of the request the server is handling, or ``None`` outside one.

    The server calls some saver methods itself (``DELETE /threads/<id>`` ends in
    ``adelete_thread``) with no run config to carry the user; it keeps the request's
    authenticated user in a context variable, which is read here.
    """
    from langgraph_api.utils import get_auth_ctx  # only ever called inside the server

    context = get_auth_ctx()
    return context.user.identity if context is not None else None


SERVER_USER_KEY = "langgraph_auth_user_id"
"""Where the server puts the authenticated user's id in every run's ``configurable``."""


def server_thread_owner(config: RunnableConfig) -> str | None:
    """The user a checkpoint is written for in the server, with auth on.

    Recorded by the saver's ``aput`` as the thread's owner: every way the server
    writes a thread passes there after its auth has let the user in (runs carry the
    user in their config; Studio's ``update_state`` runs inside the user's request),
    and only then, so a refused request records nothing. The auth handler, the
    other candidate, runs before the server has checked that the thread is the
    user's to write.
    """
    user = config.get("configurable", {}).get(SERVER_USER_KEY)
    return str(user) if user else server_request_user()


def release_embedded_postgres() -> None:
    """Drops this process's handles on the embedded PostgreSQL; the last user stops it.

    Only for a process that opens the database once (the server): a handle is per
    process, so releasing it under another open saver of the same process would stop
    the database beneath it.
    """
    while _EMBEDDED_SERVERS:
        _EMBEDDED_SERVERS.pop().cleanup()
