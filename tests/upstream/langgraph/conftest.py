"""Fixtures for langgraph's own graph tests, run on memagent's saver and on the stock one.

``test_pregel_async.py``, ``test_time_travel_async.py`` and ``test_large_cases_async.py``
are copied from the source distribution of langgraph 1.2.24 (the version installed;
MIT License, Copyright (c) 2024 LangChain, Inc.; see ``LICENSE`` here), with their test
bodies unchanged, and so are the helper modules they import (``any_int``, ``any_str``,
``fake_chat``, ``fake_tracer``, ``memory_assert``, ``messages``); only their imports of
those helpers are adapted (upstream's ``tests.X`` is ``tests.upstream.langgraph.X``
here). Upstream's ``__snapshots__`` are not copied: every snapshot assertion in these
modules runs only on the in-memory saver, which is skipped here. Every test of the
three modules is collected; none is left out.

What is adapted is what builds a checkpointer: upstream's ``conftest.py`` parametrised
``async_checkpointer`` over in-memory, SQLite and stock PostgreSQL savers on a server in
Docker. Here ``async_checkpointer`` takes its kind from ``checkpointer_name`` (set by
``pytest_generate_tests`` below), each on a fresh database of the suite's server
(``DATABASE_URL`` or the embedded one), dropped afterwards:

- ``memagent``: a ``MemagentSaver`` as ``agent.checkpointer.open_saver`` makes it, with
  the default settings;
- ``postgres_aio_pool``: upstream's own kind, the stock ``AsyncPostgresSaver`` on a
  pool, built as upstream builds it, so every memagent result can be read against
  stock's;
- ``memagent_configured``: only for the tests in ``CONFIGURED_RUNS``, a ``MemagentSaver``
  opened by ``open_saver`` with the settings (set in the environment, as a deployment
  sets them) that give the behaviour the test expects where memagent's default differs
  by design. ``test_checkpoint_metadata`` expects every run-config key in checkpoint
  metadata; memagent copies only an allow-list by default (privacy), so its
  ``memagent`` run is a known failure, and its ``memagent_configured`` run names the
  test's keys in ``MEMAGENT_METADATA_KEYS`` and passes. Likewise
  ``test_conditional_graph_state`` stores langchain's ``AgentAction``, which memagent's
  serializer refuses by default, and passes once ``MEMAGENT_SERDE_ALLOW`` names it.

The other kinds upstream parametrises, and the store and cache kinds memagent has no
part in, are skipped with their reason: ``SKIPPED_KINDS`` is the whole list. A test
fails on memagent's default saver only where ``MEMAGENT_ONLY_FAILURES`` says why
(a strict xfail pinned to the expected exception, so a fix or a new cause shows).
Tests that fail for a reason of this environment, on stock and without any saver
alike, are in ``ENVIRONMENT_ADAPTED``, with what is adapted so they pass on both.

pytest-asyncio runs these tests (``-p no:anyio`` in ``pyproject.toml``), on the
session's loop like the rest of the suite: under anyio's runner the test ran on a loop
other than the one its saver was made on, and a saver's sync bridge (a subgraph invoked
with ``invoke`` inside an async run) waited forever on that idle loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from langchain_core.language_models import base as language_models_base
from langgraph.cache.base import BaseCache
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from langgraph.types import Durability
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from agent.checkpointer import open_saver
from agent.errors import UnstorableValueError
from tests.helpers import fresh_database

pytest.register_assert_rewrite("tests.upstream.langgraph.memory_assert")

CHECKPOINTERS = (
    "memory",
    "sqlite_aio",
    "postgres_aio",
    "postgres_aio_pipe",
    "postgres_aio_pool",
    "memagent",
)
"""Upstream's ``async_checkpointer`` kinds, and memagent's."""

MEMAGENT = "memagent"
MEMAGENT_CONFIGURED = "memagent_configured"
STOCK = "postgres_aio_pool"

CONFIGURED_RUNS = {
    "test_checkpoint_metadata": {
        "MEMAGENT_METADATA_KEYS": "test_config_1,test_config_2,test_config_3,test_config_4"
    },
    "test_conditional_graph_state": {
        "MEMAGENT_SERDE_ALLOW": ",".join(
            f"langchain_core.agents.{name}" for name in ("AgentAction", "AgentFinish")
        )
    },
}
"""Tests that also run on ``memagent_configured``: the settings (environment variables)
a deployment would set for what the test expects."""

SKIPPED_KINDS: dict[tuple[str, str], str] = {
    ("checkpointer_name", "memory"): "langgraph's in-memory saver: not memagent's, and "
    "not PostgreSQL",
    ("checkpointer_name", "sqlite_aio"): "langgraph's SQLite saver: not memagent's, and "
    "not PostgreSQL",
    ("checkpointer_name", "postgres_aio"): "the stock saver on one connection: memagent "
    "always runs on a pool, so its stock counterpart is postgres_aio_pool, which runs",
    ("checkpointer_name", "postgres_aio_pipe"): "the stock saver in pipeline mode on one "
    "connection, which memagent never uses (it runs on a pool)",
    ("cache", "sqlite"): "langgraph's SQLite cache (langgraph-checkpoint-sqlite, which "
    "memagent does not install); memagent has no cache, so the in-memory one runs",
    ("cache", "redis"): "langgraph's Redis cache (needs a Redis server); memagent has no "
    "cache, so the in-memory one runs",
    ("async_store", "postgres_aio"): "langgraph's PostgreSQL store: memagent has no "
    "store, so the in-memory store stands in, with every checkpointer",
    ("async_store", "postgres_aio_pipe"): "langgraph's PostgreSQL store: memagent has no "
    "store, so the in-memory store stands in, with every checkpointer",
    ("async_store", "postgres_aio_pool"): "langgraph's PostgreSQL store: memagent has no "
    "store, so the in-memory store stands in, with every checkpointer",
}
"""Every kind of upstream's parametrised fixtures that does not run here, and why."""

MEMAGENT_ONLY_FAILURES: dict[str, tuple[type[BaseException], str]] = {
    "test_conditional_graph_state": (
        UnstorableValueError,
        "memagent's serializer revives only langgraph's safe types and those named in "
        "MEMAGENT_SERDE_ALLOW (stock, unless LANGGRAPH_STRICT_MSGPACK is set, revives any "
        "type a row names), and refuses to write langchain's AgentAction rather than have "
        "it load back as a plain dict: deliberate; this test's memagent_configured run "
        "allows it with MEMAGENT_SERDE_ALLOW and passes",
    ),
    "test_checkpoint_metadata": (
        KeyError,
        "memagent copies only an allow-list of run-config keys into checkpoint "
        "metadata (privacy); this test's memagent_configured run names its keys in "
        "MEMAGENT_METADATA_KEYS and passes",
    ),
}
"""Tests that fail on memagent's default saver and pass on stock, each by design."""

ENVIRONMENT_ADAPTED = {
    "test_prebuilt_tool_chat": "no saver",
    "test_tags_stream_mode_messages": "no saver",
    "test_weather_subgraph": "stock and memagent",
}
"""Tests that fail here with any saver or none (where they failed: the value), because
``langchain`` is installed (memagent depends on it) and langgraph's CI has it not:
langchain-core then adds ``"langchain": <version>`` to ``lc_versions`` in the metadata
of every streamed chat-model event, and these tests' expected events list
``langchain-core`` alone. For them ``_langchain_not_reported`` hides langchain's version
from langchain-core, as in langgraph's CI; they then pass on both savers."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Runs each ``async_checkpointer`` test on every kind, the configured one where set."""
    if "checkpointer_name" in metafunc.fixturenames:
        configured = metafunc.function.__name__ in CONFIGURED_RUNS
        metafunc.parametrize(
            "checkpointer_name", (*CHECKPOINTERS, *((MEMAGENT_CONFIGURED,) if configured else ()))
        )


def _mark(item: pytest.Item) -> None:
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    for (name, kind), reason in SKIPPED_KINDS.items():
        if params.get(name) == kind:
            item.add_marker(pytest.mark.skip(reason=reason))
            return
    test = item.name.split("[")[0]
    if test in MEMAGENT_ONLY_FAILURES and params.get("checkpointer_name") == MEMAGENT:
        raises, reason = MEMAGENT_ONLY_FAILURES[test]
        item.add_marker(pytest.mark.xfail(raises=raises, reason=reason, strict=True))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here:
            _mark(item)


@pytest.fixture(autouse=True)
def _langchain_not_reported(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hides langchain's version from langchain-core for ``ENVIRONMENT_ADAPTED`` tests."""
    if request.function.__name__ in ENVIRONMENT_ADAPTED:
        monkeypatch.setattr(language_models_base, "_get_langchain_version", lambda: None)


@pytest.fixture(params=["sync", "async", "exit"])
def durability(request: pytest.FixtureRequest) -> Durability:
    """Upstream's fixture, unchanged."""
    return request.param


@pytest.fixture(params=["sqlite", "memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[BaseCache]:
    """Upstream's in-memory cache; its SQLite and Redis ones are skipped (``SKIPPED_KINDS``)."""
    yield InMemoryCache()


@pytest.fixture(params=["in_memory", "postgres_aio", "postgres_aio_pipe", "postgres_aio_pool"])
def async_store(request: pytest.FixtureRequest) -> Iterator[BaseStore]:
    """Upstream's in-memory store; its PostgreSQL ones are skipped (``SKIPPED_KINDS``)."""
    yield InMemoryStore()


@asynccontextmanager
async def stock_saver(database_url: str) -> AsyncIterator[BaseCheckpointSaver]:
    """Upstream's ``_checkpointer_postgres_aio_pool``, on the given database."""
    async with AsyncConnectionPool[AsyncConnection[DictRow]](
        database_url, max_size=10, kwargs={"autocommit": True}
    ) as pool:
        checkpointer = AsyncPostgresSaver(pool)
        await checkpointer.setup()
        yield checkpointer


@pytest.fixture
async def async_checkpointer(
    checkpointer_name: str,
    postgres_server_url: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> AsyncIterator[BaseCheckpointSaver]:
    """The saver of kind ``checkpointer_name``, on a fresh database dropped afterwards.

    The ``memagent_configured`` kind sets its test's ``CONFIGURED_RUNS`` the way a
    deployment would, in the environment ``open_saver`` reads its settings from.
    """
    with fresh_database(postgres_server_url) as url:
        if checkpointer_name == STOCK:
            async with stock_saver(url) as stock:
                yield stock
            return
        if checkpointer_name == MEMAGENT_CONFIGURED:
            for name, value in CONFIGURED_RUNS[request.function.__name__].items():
                monkeypatch.setenv(name, value)
        elif checkpointer_name != MEMAGENT:
            raise ValueError(f"{checkpointer_name!r} is not adapted (see SKIPPED_KINDS)")
        async with open_saver(database_url=url) as saver:
            yield saver
