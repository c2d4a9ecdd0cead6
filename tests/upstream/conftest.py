"""Fixtures for langgraph-checkpoint-postgres's own tests, adapted to memagent's saver.

``test_async.py`` and ``test_prune.py`` are copied from the source distribution of
langgraph-checkpoint-postgres 3.2.0 (MIT License, Copyright (c) 2024 LangChain, Inc.;
see ``LICENSE`` here), with their test bodies unchanged. Only what builds a saver is
adapted: upstream's ``conftest.py`` pointed at a PostgreSQL in Docker and cleared its
tables before each test; here every saver is a ``MemagentSaver`` opened by
``agent.checkpointer.open_saver`` on a fresh database of the suite's server
(``DATABASE_URL`` or the embedded one), dropped afterwards.

Upstream runs each test on several kinds of saver. The ones memagent has no
equivalent of are skipped, with the reason, by ``pytest_collection_modifyitems``
below; ``SKIPPED_TESTS`` and ``SKIPPED_SAVERS`` are the whole list.

langgraph's own graph tests are in ``langgraph/``, with a conftest of their own (they
run on the stock saver as well, for comparison).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from agent.checkpointer import MemagentSaver, open_saver
from tests.helpers import fresh_database

DEFAULT_URI = "postgres://postgres:postgres@localhost:5441/postgres?sslmode=disable"
"""Upstream's Docker server: named only in the body of a test skipped here."""

SINGLE_CONNECTION_POOL = 1
"""memagent always runs on a pool; upstream's single-connection saver ("base") maps to
a pool of one connection, the closest memagent configuration."""

SKIPPED_SAVERS = {
    "pipe": "MemagentSaver runs on a connection pool; langgraph's pipeline mode needs one "
    "connection in pipeline mode, which memagent never uses",
    "shallow": "AsyncShallowPostgresSaver keeps only the newest checkpoint; memagent keeps "
    "every checkpoint (rewind and undo need them) and has no shallow saver",
    "aio_pipe": "MemagentSaver runs on a connection pool; langgraph's pipeline mode needs "
    "one connection in pipeline mode, which memagent never uses",
    "base": "the sync PostgresSaver: memagent's saver is async (its blocking methods are "
    "AsyncPostgresSaver's bridges, tested by test_async_saver_prune_runs_from_another_thread_only)",
    "pool": "the sync PostgresSaver on a pool: memagent's saver is async",
}
"""Saver kinds of upstream's parametrised tests that memagent has no equivalent of.

In ``test_prune.py`` the names ``base``/``pool``/``pipe`` are the sync saver and
``aio_*`` the async one; in ``test_async.py`` (parameter ``saver_name``) every name is
the async saver, so only ``pipe`` and ``shallow`` are skipped there.
"""

SKIPPED_TESTS = {
    "test_prune_conformance": "its body builds a stock AsyncPostgresSaver on upstream's "
    "server; the prune capability of the conformance suite runs against MemagentSaver in "
    "tests/test_conformance.py",
}

_SERVER: list[str] = []


def skip_reason(item: pytest.Item) -> str | None:
    """Why an upstream test (or one of its saver kinds) does not apply to memagent."""
    if item.name.split("[")[0] in SKIPPED_TESTS:
        return SKIPPED_TESTS[item.name.split("[")[0]]
    params = getattr(item, "callspec", None)
    if params is None:
        return None
    async_saver = params.params.get("saver_name")
    if async_saver is not None:
        return SKIPPED_SAVERS[async_saver] if async_saver in ("pipe", "shallow") else None
    name = params.params.get("name")
    return SKIPPED_SAVERS.get(name) if isinstance(name, str) else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here and (reason := skip_reason(item)):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _upstream_server(postgres_server_url: str) -> Iterator[None]:
    """Lets upstream's fixture functions (plain context managers) reach the server."""
    _SERVER.append(postgres_server_url)
    try:
        yield
    finally:
        _SERVER.pop()


@asynccontextmanager
async def memagent_saver(*, max_size: int | None = None) -> AsyncIterator[MemagentSaver]:
    """A ``MemagentSaver`` as ``open_saver`` makes it, on a database of its own."""
    with fresh_database(_SERVER[-1]) as url:
        async with open_saver(database_url=url, max_size=max_size) as saver:
            yield saver


@asynccontextmanager
async def upstream_saver(name: str) -> AsyncIterator[MemagentSaver]:
    """Upstream's async ``_saver(name)``: "pool" is MemagentSaver as ``open_saver``
    makes it, "base" (one connection upstream) MemagentSaver on a pool of one.

    Raises:
        ValueError: A saver kind memagent has no equivalent of (skipped at collection).
    """
    if name not in ("base", "pool"):
        raise ValueError(f"saver {name!r} is not adapted to memagent (see SKIPPED_SAVERS)")
    async with memagent_saver(max_size=SINGLE_CONNECTION_POOL if name == "base" else None) as saver:
        yield saver


@asynccontextmanager
async def second_memagent_saver(saver: MemagentSaver) -> AsyncIterator[MemagentSaver]:
    """Another ``MemagentSaver`` on the same database: a second process."""
    async with open_saver(database_url=saver.conninfo) as other:
        yield other
