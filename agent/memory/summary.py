"""The summary message: one message in the head that stands for the turns it replaced.

It is a ``HumanMessage`` that says what it is. It sits right after the system prompt,
where a ``SystemMessage`` is refused by providers that take system text only first
(Anthropic, Gemini), and an ``AIMessage`` would open the conversation with the
assistant, which some providers refuse (the first turn must be the user's) and which
would make the model take the summary for its own words. A user message followed by
the next user message is accepted everywhere (providers and LangChain's integrations
merge consecutive user turns), and the label keeps any reader, the model included,
from taking the summary for something the user typed.

The message records the ids of every message it covers, its predecessor's included,
so forgetting a detail can find each summary made from it (docs/SPEC.md, "Context
budget and compaction"): ``made_from`` is that rule, ``removed_summary`` what such a
summary becomes.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from langchain_core.messages import BaseMessage, HumanMessage

from agent.prompts import SUMMARY_LABEL, SUMMARY_REMOVED

SUMMARY_KEY = "memagent_summary"
"""The ``additional_kwargs`` entry that marks a summary: ``{"covers": [ids...]}``, plus
``"removed": True`` on a summary replaced because it was made from a forgotten detail."""


def is_summary(message: BaseMessage) -> bool:
    """Whether ``message`` is a summary made by compaction."""
    return isinstance(message, HumanMessage) and SUMMARY_KEY in message.additional_kwargs


def summary_covers(message: BaseMessage | None) -> list[str]:
    """The ids of the messages ``message`` summarises, oldest first; ``[]`` if not a summary."""
    if message is None or not is_summary(message):
        return []
    return list(message.additional_kwargs[SUMMARY_KEY]["covers"])


def summary_body(message: BaseMessage) -> str:
    """What a summary says, without its label: what the next summary builds on."""
    return message.text.removeprefix(SUMMARY_LABEL).strip()


def make_summary(
    text: str, *, previous: BaseMessage | None, evicted: Sequence[BaseMessage]
) -> HumanMessage:
    """The summary that replaces ``previous`` (the running summary, if any) and ``evicted``.

    A running summary: it covers what ``previous`` covered plus the evicted messages,
    so an id stays findable however many compactions later.

    Args:
        text: What the summariser wrote (``agent.memory.compaction.summarise``).
        previous: The summary at the head being replaced, or ``None``.
        evicted: The other messages being replaced, oldest first.
    """
    covers = [*summary_covers(previous), *(m.id for m in evicted if m.id is not None)]
    return HumanMessage(
        content=f"{SUMMARY_LABEL}\n{text}",
        id=str(uuid.uuid4()),
        additional_kwargs={SUMMARY_KEY: {"covers": covers}},
    )


def is_removed_summary(message: BaseMessage) -> bool:
    """Whether ``message`` is a summary already replaced by ``removed_summary``."""
    return is_summary(message) and bool(message.additional_kwargs[SUMMARY_KEY].get("removed"))


def made_from(message: BaseMessage, message_ids: Collection[str]) -> bool:
    """Whether ``message`` is a summary made from any of ``message_ids`` (and not removed yet).

    A summary may restate a detail in other words ("twelve Main Street" for "12 Main
    St"), so its text cannot tell whether it holds the detail; what it covers can. Its
    covers are running (a summary of a summary covers the older one's messages too), so
    one intersection finds every summary made, at any remove, from a message that held
    the detail.
    """
    if not is_summary(message) or is_removed_summary(message):
        return False
    return not set(summary_covers(message)).isdisjoint(message_ids)


def removed_summary(summary: BaseMessage) -> HumanMessage:
    """What ``summary`` becomes once a detail it was made from is forgotten: a marker.

    The same id, so ``add_messages`` (and a redact's new row) puts it where the summary
    was, and the same covers, so a later compaction still records what it stands for.
    The SPEC allows remaking the summary from the redacted messages instead; a marker
    is chosen because it needs no model call: the soft forget runs inside the
    ``apply_memory`` node and the hard erase inside one database transaction, and a
    summariser there could fail, stall the transaction, or restate the detail again.
    The soft forget's checkpoint is still undoable: a rewind to before it brings the
    original summary back.
    """
    return HumanMessage(
        content=f"{SUMMARY_LABEL}\n{SUMMARY_REMOVED}",
        id=summary.id,
        additional_kwargs={SUMMARY_KEY: {"covers": summary_covers(summary), "removed": True}},
    )
