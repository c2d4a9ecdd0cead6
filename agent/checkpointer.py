"""The checkpointer's public names, where the README and ``langgraph.json`` find them.

The code lives in ``agent.store``; this module keeps the documented import paths.
"""

from agent.errors import PurgeRefusedError, ThreadBusyError
from agent.store.database import (
    describe_database,
    open_saver,
    release_embedded_postgres,
    resolve_database_url,
    server_checkpointer,
)
from agent.store.metadata import MemagentInMemorySaver, stamp_memory_event
from agent.store.saver import MemagentSaver

__all__ = (
    "MemagentInMemorySaver",
    "MemagentSaver",
    "PurgeRefusedError",
    "ThreadBusyError",
    "describe_database",
    "open_saver",
    "release_embedded_postgres",
    "resolve_database_url",
    "server_checkpointer",
    "stamp_memory_event",
)
