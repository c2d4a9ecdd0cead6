"""What a checkpoint's metadata holds: memory markers on, run data kept to what is needed.

langgraph builds a checkpoint's metadata from the run (``source``, ``step``,
``parents``, and everything in the run's ``metadata`` and ``configurable``). memagent
adds the marker of the memory change a checkpoint carries (``agent.memory.events``)
and keeps, of the run's values, only what the server, Studio and memagent itself read.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.memory import InMemorySaver

from agent.memory import events
from agent.state import MEMORY_EVENT_CHANNEL


def stamp_memory_event(
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
) -> tuple[RunnableConfig, CheckpointMetadata]:
    """Puts a memory operation's marker on the checkpoint that carries it.

    A checkpoint whose step wrote ``memory_event`` is the one that made the change,
    whether the write came from the ``apply_memory`` node of a run or from
    ``aupdate_state`` in ``tools.admin``; both therefore get the same metadata (the
    event kind's ``stamp``: counts and ids, never content). A kind that ``moves_head``
    (a rewind) also gets its target as the checkpoint's parent, so the fork is
    visible in the thread's history and in Studio.
    """
    if MEMORY_EVENT_CHANNEL not in new_versions or (event := _memory_event(checkpoint)) is None:
        return config, metadata
    stamped: dict[str, Any] = {**metadata, **events.stamp(event)}
    if events.EVENT_KINDS[event["kind"]].moves_head:
        config = {
            **config,
            "configurable": {**config["configurable"], "checkpoint_id": event["target"]},
        }
    return config, stamped  # type: ignore[return-value]


def _memory_event(checkpoint: Checkpoint) -> dict[str, Any] | None:
    """The memagent memory event in ``checkpoint``'s values, if there is one."""
    event = checkpoint["channel_values"].get(MEMORY_EVENT_CHANNEL)
    if isinstance(event, dict) and event.get("kind") in events.EVENT_KINDS:
        return event
    return None


def without_memory_event(
    checkpoint: Checkpoint, new_versions: ChannelVersions
) -> tuple[Checkpoint, ChannelVersions]:
    """The checkpoint as stored: a memory event's channel left out, value and version.

    An event is metadata, not state: once ``stamp_memory_event`` put it on the
    checkpoint that made the change, nothing reads the channel again (no node is
    triggered by it, no reader looks at its value). Kept as langgraph keeps a
    channel, its version would stay in ``channel_versions`` of every later checkpoint
    of the thread, and a thread that compacts would pay for it about 70 bytes a
    checkpoint for good. A checkpoint read back has the channel empty, as before the
    first memory change; the step's own write of it stays in its pending writes. A
    graph of someone else's with a channel of that name keeps it (only a value of a
    memagent event kind is left out).
    """
    if _memory_event(checkpoint) is None:
        return checkpoint, new_versions
    values = {k: v for k, v in checkpoint["channel_values"].items() if k != MEMORY_EVENT_CHANNEL}
    versions = {
        k: v for k, v in checkpoint["channel_versions"].items() if k != MEMORY_EVENT_CHANNEL
    }
    stored: Checkpoint = {**checkpoint, "channel_values": values, "channel_versions": versions}
    if (updated := checkpoint.get("updated_channels")) is not None:
        stored["updated_channels"] = [c for c in updated if c != MEMORY_EVENT_CHANNEL]
    return stored, {k: v for k, v in new_versions.items() if k != MEMORY_EVENT_CHANNEL}


def _storable(value: Any) -> Any:
    """``value`` with every string made storable in a JSONB column (see below)."""
    if isinstance(value, str):
        text = value.replace("\x00", "")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: replaced, as msgpack blobs do
            text = text.encode("utf-8", "replace").decode("utf-8")
        return text
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


RUN_METADATA_KEYS = frozenset({"run_id", "thread_id", "assistant_id", "graph_id"})
"""The run's ``configurable``/``metadata`` keys a checkpoint's metadata keeps.

langgraph itself puts ``source``, ``step`` and ``parents`` there, and memagent its
memory markers; from the run, the server's history view and Studio show the run
(``run_id``) and filter by assistant and graph, and ``DELETE_FOR_RUNS`` and
``ChatSession``'s resume find a run's checkpoints by ``run_id``. A deployment adds keys
of its own with ``MEMAGENT_METADATA_KEYS`` (``Settings.metadata_keys``).
"""


def storable_metadata(
    config: RunnableConfig,
    metadata: CheckpointMetadata,
    run_keys: frozenset[str] = RUN_METADATA_KEYS,
) -> tuple[RunnableConfig, CheckpointMetadata]:
    """The checkpoint's metadata, made storable, and a config that adds nothing to it.

    langgraph copies the run's ``metadata`` and ``configurable`` entries into the
    checkpoint's metadata (a JSONB column) and strips NUL only from top-level string
    values. A NUL in a key, or a lone surrogate anywhere (both can come from an API
    caller or a model), makes PostgreSQL refuse the whole checkpoint, so the turn
    fails. This does the library's merge here, cleans every key and string of it, and
    leaves out of the config what the merge already took (or could not store).

    Only the run's keys in ``run_keys`` (``RUN_METADATA_KEYS`` and those a deployment
    named) are merged: anything else a caller passes in a config (an e-mail address, a
    customer name) would otherwise be copied, in plain text, into every checkpoint of
    the run.
    """
    kept: RunnableConfig = {
        "metadata": {k: v for k, v in config.get("metadata", {}).items() if k in run_keys},
        "configurable": {k: v for k, v in config.get("configurable", {}).items() if k in run_keys},
    }
    merged = _storable(get_checkpoint_metadata(kept, metadata))
    configurable = {
        key: value
        for key, value in config.get("configurable", {}).items()
        if key in ("thread_id", "checkpoint_ns", "checkpoint_id") or key.startswith("__")
    }
    return {**config, "metadata": {}, "configurable": configurable}, merged


def memory_metadata(
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
    run_keys: frozenset[str] = RUN_METADATA_KEYS,
) -> tuple[RunnableConfig, CheckpointMetadata]:
    """What a checkpoint is stored with: memory markers on, of the run's data ``run_keys``."""
    config, metadata = stamp_memory_event(config, checkpoint, metadata, new_versions)
    return storable_metadata(config, metadata, run_keys)


class MemoryMetadataMixin:
    """Adds ``memory_metadata`` and ``without_memory_event`` to an ``InMemorySaver``'s
    ``put`` (its ``aput`` calls it), so it stores a thread as memagent's saver does."""

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        config, metadata = memory_metadata(config, checkpoint, metadata, new_versions)
        checkpoint, new_versions = without_memory_event(checkpoint, new_versions)
        return super().put(config, checkpoint, metadata, new_versions)  # type: ignore[misc]


class MemagentInMemorySaver(MemoryMetadataMixin, InMemorySaver):
    """langgraph's in-memory saver with memagent's memory metadata, for tests and demos."""
