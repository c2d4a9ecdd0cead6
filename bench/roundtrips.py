"""SQL round trips per operation, counted on the wire by a relay in front of PostgreSQL.

A saver's latency floor on a short thread is its round trips: each one waits for the
network and, for a write, a commit. Counting statements or pool checkouts would
miss what matters (a pipeline of five statements is one trip; ``BEGIN`` and
``COMMIT`` are trips of their own), so the bench counts what a network sees: a
**round trip** is the client sending on a connection after it last heard from the
server on that connection. The relay forwards bytes unchanged between the savers
opened on it and the real server, and is used only for counting, never while a
latency is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from psycopg.conninfo import conninfo_to_dict, make_conninfo

CHUNK = 1 << 16


@dataclass
class RoundTripRelay:
    """A TCP relay that counts round trips (see the module's docstring).

    Attributes:
        upstream: The real server's conninfo (TCP or a unix socket directory).
        trips: Round trips since the last ``reset``, over every relayed connection.
    """

    upstream: str
    trips: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def reset(self) -> None:
        """Starts a new count."""
        self.trips = 0

    async def count(self, operation: Awaitable[object]) -> int:
        """The round trips ``operation`` makes (nothing else may use the relay meanwhile)."""
        self.reset()
        await operation
        return self.trips

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        params = conninfo_to_dict(self.upstream)
        host = str(params.get("host") or "localhost")
        port = int(params.get("port") or 5432)
        if host.startswith("/"):
            return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        return await asyncio.open_connection(host, port)

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        server_in, server_out = await self._open_upstream()
        heard_from_server = [True]  # the client's first message starts a trip

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, from_client: bool
        ) -> None:
            try:
                while data := await source.read(CHUNK):
                    if from_client and heard_from_server[0]:
                        self.trips += 1
                    heard_from_server[0] = not from_client
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    sink.close()

        await asyncio.gather(pump(client_in, server_out, True), pump(server_in, client_out, False))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serves until the block ends; yields the conninfo that goes through the relay."""

        def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        params = {**conninfo_to_dict(self.upstream), "host": "127.0.0.1", "port": str(port)}
        params["sslmode"] = "disable"  # the relay passes bytes; TLS would hide nothing
        try:
            yield make_conninfo("", **params)
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()
