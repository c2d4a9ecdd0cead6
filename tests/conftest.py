"""Fixtures: a fresh PostgreSQL database per test, savers on it, and the ``db`` marker.

The server is the one in ``DATABASE_URL`` when set; otherwise an embedded PostgreSQL
(``pgserver``) is started once for the test session in a temporary directory, and only
when a test asks for a database: ``pytest -m "not db"`` runs the rest without one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent.checkpointer import MemagentSaver, open_saver
from agent.settings import Settings
from tests.helpers import free_port, fresh_database

_OWN_BASETEMP = pytest.StashKey[Path]()


@pytest.hookimpl(tryfirst=True)  # before pytest's tmp_path plugin reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    """Gives this run a temporary root of its own, unless ``--basetemp`` names one.

    pytest's default root, ``/tmp/pytest-of-<user>``, is shared by every run on the
    machine, and each run prunes the older ``pytest-N`` directories there: another run
    started meanwhile removed the restart tests' private PostgreSQL data directory. A
    fresh ``mkdtemp`` directory is this run's alone; it is removed when the run ends.
    """
    if config.option.basetemp is None:
        own = Path(tempfile.mkdtemp(prefix="memagent-tests-"))
        config.option.basetemp = str(own)
        config.stash[_OWN_BASETEMP] = own


DATABASE_FIXTURE = "postgres_server_url"


SLOW_MODULES = frozenset(
    {
        "test_server",  # starts langgraph dev servers
        "test_web_browser",  # drives Chromium
        "test_pgbouncer",  # five processes through PgBouncer
        "test_differential",  # 25 scripts on two savers
        "test_conformance",  # langgraph's conformance suite
        "test_bench",  # the benchmark, end to end
        "test_terminal_chat",  # chats in a pseudo-terminal
        "test_suite_isolation",  # two more pytest runs
    }
)
"""Modules (and ``tests/upstream/``) that CI runs once, on one database, not on both."""

UPSTREAM = Path(__file__).parent / "upstream"
"""langgraph's own tests, subfolders included: slow as a whole (see ``SLOW_MODULES``)."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks ``db`` every test that needs PostgreSQL, so ``-m "not db"`` can leave it out,
    and ``slow`` the suites in ``SLOW_MODULES``, so ``-m "not slow"`` can.

    A test needs it when the server fixture is among its fixtures, directly or through
    another fixture (``database_url``, ``settings``, ``saver``, ...). Tests that start a
    PostgreSQL of their own carry ``@pytest.mark.db`` themselves.
    """
    for item in items:
        if DATABASE_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)
        if UPSTREAM in item.path.parents or item.path.stem in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_BASETEMP, None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)


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


PGBOUNCER_INI = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/users.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 40
ignore_startup_parameters = extra_float_digits,options
{run_as}
"""


@pytest.fixture
def pgbouncer_url(database_url: str) -> Iterator[str]:
    """``database_url`` through a PgBouncer of this test's own, in transaction pooling mode.

    Skips (with the reason) where the ``pgbouncer`` binary is absent; ``.ci/run``
    installs it. PgBouncer refuses to run as root, so as root it drops to ``postgres``
    (which the Debian package creates) and its files are made readable to it.
    """
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if binary is None:
        pytest.skip("pgbouncer is not installed (bash .ci/run installs it with apt-get)")
    params = conninfo_to_dict(database_url)
    host = str(params.get("host") or "127.0.0.1")
    if host.startswith("/"):
        pytest.skip("the test server listens on a Unix socket only; PgBouncer needs TCP here")
    workdir = Path(tempfile.mkdtemp(prefix="memagent-pgbouncer-"))
    workdir.chmod(0o755)
    listen_port = free_port()
    (workdir / "users.txt").write_text(f'"{params.get("user", "postgres")}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        PGBOUNCER_INI.format(
            host=host,
            port=params.get("port", 5432),
            listen_port=listen_port,
            workdir=workdir,
            run_as="user = postgres" if os.geteuid() == 0 else "",
        )
    )
    for path in workdir.iterdir():
        path.chmod(0o644)
    log = (workdir / "pgbouncer.log").open("wb")
    process = subprocess.Popen(
        [binary, str(workdir / "pgbouncer.ini")], stdout=log, stderr=subprocess.STDOUT
    )
    url = make_conninfo(database_url, host="127.0.0.1", port=str(listen_port))
    try:
        deadline = time.monotonic() + 30  # a hang guard, not a speed check
        while True:
            try:
                with psycopg.connect(url, prepare_threshold=None) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"PgBouncer did not start: {(workdir / 'pgbouncer.log').read_text()}"
                    )
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
