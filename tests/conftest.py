"""Fixtures: a fresh PostgreSQL database per test, savers on it, and fake chat models.

The server is the one in ``DATABASE_URL`` when set; otherwise an embedded PostgreSQL
(``pgserver``) is started once for the test session in a temporary directory.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent.checkpointer import MemagentSaver, open_saver
from agent.settings import Settings


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Admin URL of the PostgreSQL server the tests create their databases on."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


def _with_dbname(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server, dropped on exit; yields its URL."""
    name = f"memagent_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_dbname(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A new, empty database for this test only, dropped afterwards."""
    with fresh_database(postgres_server_url) as url:
        yield url


@pytest.fixture
def settings(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a user on this test's database with the offline model would have."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MEMAGENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MEMAGENT_MODEL", "offline")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return Settings.from_env()


@pytest.fixture
async def saver(settings: Settings) -> AsyncIterator[MemagentSaver]:
    """memagent's saver, set up on this test's database."""
    async with open_saver(settings) as opened:
        yield opened


def table_counts(database_url: str) -> dict[str, int]:
    """Rows per checkpoint table: the ground truth for "nothing was written"."""
    with psycopg.connect(database_url) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in (
                "checkpoints",
                "checkpoint_blobs",
                "checkpoint_writes",
                "memagent_messages",
            )
        }
