"""A user's threads and runs in a ``langgraph dev`` server, reached through its own API.

The server keeps its threads (with their metadata) and runs (with the input each was
started with) in its own store, ``.langgraph_api/`` next to ``langgraph.json``, not
in PostgreSQL: only the server can remove them, so ``erase-user`` asks it to, with
langgraph_sdk, acting as the user (the server's auth then shows it exactly that
user's threads and nothing else). An erase for good asks it to delete the thread's
runs that said the detail: from outside at the server's address, and from a run
inside the server through the SDK's in-process client (``url=None``), which reaches
the server without HTTP and without auth, the run having passed auth already.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

import httpx
from langgraph_sdk import get_client
from langgraph_sdk.errors import LangGraphError
from langsmith.utils import tracing_is_enabled
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from agent.errors import ServerUnavailableError
from agent.memory.changes import ServerRunsErased
from agent.prompts import (
    ERASE_NOT_REACHED_LOGS,
    ERASE_NOT_REACHED_PROVIDER,
    ERASE_NOT_REACHED_RUNNING,
    ERASE_NOT_REACHED_THREAD_STATE,
    ERASE_NOT_REACHED_TRACES,
)
from agent.redaction import quote_pattern
from agent.settings import OFFLINE_LABEL, Settings, model_label
from agent.store import erasure

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]

PAGE_SIZE = 100
"""Threads or runs asked for per request."""
OWNER_KEY = "owner"
"""The metadata key the server's auth stamps with the thread's owner (``agent.auth``)."""
IN_FLIGHT = frozenset({"pending", "running"})
IN_PROCESS = "the server itself"
"""How errors name the server reached in-process, which has no address."""

T = TypeVar("T")


@dataclass
class ServerThreads:
    """The server at ``url``, as seen with ``headers`` (the user's bearer token).

    Attributes:
        url: The server's address, e.g. ``http://127.0.0.1:2024``; ``None`` from
            code running inside the server, which reaches it in-process.
        headers: Sent with every request.
        runs: Per thread found, the ids of its runs (filled by ``stop_runs``).
    """

    url: str | None
    headers: Mapping[str, str] = field(default_factory=dict)
    runs: dict[str, list[str]] = field(default_factory=dict)
    _opened: list[Any] = field(default_factory=list, repr=False)

    def _client(self) -> Any:
        """The SDK client, made at first use and kept until ``aclose``."""
        if not self._opened:
            self._opened.append(
                get_client(url=self.url, api_key=None, headers=dict(self.headers), timeout=60)
            )
        return self._opened[0]

    async def aclose(self) -> None:
        """Closes the client's connections."""
        while self._opened:
            await self._opened.pop().aclose()

    async def _call(self, call: Awaitable[T], *, absent: T | None = None) -> T:
        """One API call; a failure is ``ServerUnavailableError``, in one line.

        With ``absent``, a 404 (nothing of that id) answers it instead.
        """
        try:
            return await call
        except httpx.HTTPStatusError as error:
            if absent is not None and error.response.status_code == HTTPStatus.NOT_FOUND:
                return absent
            detail = error.response.text.strip().splitlines()[:1]
            raise ServerUnavailableError(
                self.url or IN_PROCESS, f"{error.response.status_code} {' '.join(detail)}".strip()
            ) from None
        except (httpx.HTTPError, LangGraphError) as error:
            reason = str(error) or type(error).__name__
            raise ServerUnavailableError(self.url or IN_PROCESS, reason) from None

    async def threads_of(self, user: str) -> list[str]:
        """The ids of the server's threads whose metadata names ``user`` as owner."""
        client = self._client()
        found: list[str] = []
        while True:
            page = await self._call(
                client.threads.search(
                    metadata={OWNER_KEY: user}, limit=PAGE_SIZE, offset=len(found)
                )
            )
            found.extend(str(thread["thread_id"]) for thread in page)
            if len(page) < PAGE_SIZE:
                return found

    async def _runs_of(self, thread_id: str) -> list[dict[str, Any]]:
        """Every run the server keeps of the thread."""
        client = self._client()
        runs: list[dict[str, Any]] = []
        while True:
            page = await self._call(client.runs.list(thread_id, limit=PAGE_SIZE, offset=len(runs)))
            runs.extend(page)
            if len(page) < PAGE_SIZE:
                return runs

    async def stop_runs(self, thread_id: str) -> None:
        """Lists the thread's runs and cancels those still going, waiting for each.

        Done before the database rows go, so that no run writes the thread back.
        """
        client = self._client()
        runs = await self._runs_of(thread_id)
        for run in runs:
            if run["status"] in IN_FLIGHT:
                await self._call(client.runs.cancel(thread_id, run["run_id"], wait=True))
        self.runs[thread_id] = [str(run["run_id"]) for run in runs]

    async def delete(self) -> tuple[int, int]:
        """Deletes every thread ``stop_runs`` saw, and its runs; (threads, runs) deleted."""
        client = self._client()
        threads = runs = 0
        for thread_id, run_ids in self.runs.items():
            for run_id in run_ids:
                await self._call(client.runs.delete(thread_id, run_id))
                runs += 1
            await self._call(client.threads.delete(thread_id))
            threads += 1
        return threads, runs

    async def _thread(self, thread_id: str) -> dict[str, Any] | None:
        """The server's record of the thread, or ``None`` if it has none."""
        record = dict(await self._call(self._client().threads.get(thread_id), absent={}))
        return record or None

    async def remove_runs_holding(
        self, pool: Pool, thread_id: str, quotes: Sequence[str]
    ) -> RunsRemoved:
        """Deletes the thread's finished runs whose stored input holds a quote.

        A quote matches as ``redact`` matches it (case-insensitive), in any text of
        the run's stored arguments (input, command, config) or metadata. Runs without
        one stay. A run still going cannot be deleted (the one erasing, from inside,
        is among them); those holding a quote are counted, not touched. The server's
        run delete would also roll back the run's checkpoints, so they are unlinked
        from it first (``erasure.detach_runs``): the conversation keeps them. A thread
        the server does not know has nothing there to remove.
        """
        record = await self._thread(thread_id)
        if record is None:
            return RunsRemoved(removed=0, running=0, in_record=False)
        pattern = quote_pattern(list(quotes))

        def holds(*values: Any) -> bool:
            return any(pattern.search(text) for text in _texts(list(values)))

        holding = [
            run
            for run in await self._runs_of(thread_id)
            if holds(run.get("kwargs"), run.get("metadata"))
        ]
        finished = [str(run["run_id"]) for run in holding if run["status"] not in IN_FLIGHT]
        if finished:
            async with pool.connection() as conn:
                await erasure.detach_runs(conn, thread_id, finished)
        client = self._client()
        for run_id in finished:
            await self._call(client.runs.delete(thread_id, run_id))
        in_record = holds(record.get("values"), record.get("metadata"), record.get("interrupts"))
        return RunsRemoved(
            removed=len(finished), running=len(holding) - len(finished), in_record=in_record
        )


@dataclass(frozen=True, slots=True)
class RunsRemoved:
    """What ``remove_runs_holding`` did on the server.

    Attributes:
        removed: Finished runs deleted because their stored input held a quote.
        running: Runs holding a quote that were still going, so are kept.
        in_record: The server's record of the thread (its copy of the latest state,
            taken when a run ends) holds a quote; the server has no API to refresh
            it, and replaces it when the thread's next run ends.
    """

    removed: int
    running: int
    in_record: bool


def _texts(value: Any) -> Iterator[str]:
    """Every string in a JSON value (keys included), however deep."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _texts(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)


async def erase_runs_holding(
    server: ServerThreads,
    pool: Pool,
    thread_id: str,
    quotes: Sequence[str],
    *,
    in_run: bool = False,
) -> ServerRunsErased:
    """An erase for good's part on the server: its runs that said a quote, and the limits.

    What stays out of reach is named exactly: a run still going that holds a quote,
    the server's logs (which memagent cannot edit), LangSmith's copies when tracing
    is on, and the model provider when the model is a real one (the offline model
    sends nothing anywhere). From outside a run (``in_run`` false) also the server's
    copy of the thread's latest state, if it holds a quote; a run's own erase needs
    no such line, as the server replaces that copy from the erased head when the run
    ends. ``pool`` is the saver's: the runs' checkpoints are unlinked there before
    the server deletes the runs.
    """
    runs = await server.remove_runs_holding(pool, thread_id, quotes)
    not_reached = [ERASE_NOT_REACHED_RUNNING] if runs.running else []
    if runs.in_record and not in_run:
        not_reached.append(ERASE_NOT_REACHED_THREAD_STATE)
    not_reached.append(ERASE_NOT_REACHED_LOGS)
    if tracing_is_enabled():
        not_reached.append(ERASE_NOT_REACHED_TRACES)
    if model_label(Settings.from_env()) != OFFLINE_LABEL:
        not_reached.append(ERASE_NOT_REACHED_PROVIDER)
    return ServerRunsErased(runs.removed, tuple(not_reached))
