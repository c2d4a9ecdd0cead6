"""A user's threads and runs in a ``langgraph dev`` server, reached through its own API.

The server keeps its threads (with their metadata) and runs (with the input each was
started with) in its own store, ``.langgraph_api/`` next to ``langgraph.json``, not
in PostgreSQL: only the server can remove them, so ``erase-user`` asks it to, with
langgraph_sdk, acting as the user (the server's auth then shows it exactly that
user's threads and nothing else).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from langgraph_sdk import get_client
from langgraph_sdk.errors import LangGraphError

from agent.errors import ServerUnavailableError

PAGE_SIZE = 100
"""Threads or runs asked for per request."""
OWNER_KEY = "owner"
"""The metadata key the server's auth stamps with the thread's owner (``agent.auth``)."""
IN_FLIGHT = frozenset({"pending", "running"})

T = TypeVar("T")


@dataclass
class ServerThreads:
    """The server at ``url``, as seen with ``headers`` (the user's bearer token).

    Attributes:
        url: The server's address, e.g. ``http://127.0.0.1:2024``.
        headers: Sent with every request.
        runs: Per thread found, the ids of its runs (filled by ``stop_runs``).
    """

    url: str
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

    async def _call(self, call: Awaitable[T]) -> T:
        """One API call; a failure is ``ServerUnavailableError``, in one line."""
        try:
            return await call
        except httpx.HTTPStatusError as error:
            detail = error.response.text.strip().splitlines()[:1]
            raise ServerUnavailableError(
                self.url, f"{error.response.status_code} {' '.join(detail)}".strip()
            ) from None
        except (httpx.HTTPError, LangGraphError) as error:
            raise ServerUnavailableError(self.url, str(error) or type(error).__name__) from None

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

    async def stop_runs(self, thread_id: str) -> None:
        """Lists the thread's runs and cancels those still going, waiting for each.

        Done before the database rows go, so that no run writes the thread back.
        """
        client = self._client()
        runs: list[dict[str, Any]] = []
        while True:
            page = await self._call(client.runs.list(thread_id, limit=PAGE_SIZE, offset=len(runs)))
            runs.extend(page)
            if len(page) < PAGE_SIZE:
                break
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
