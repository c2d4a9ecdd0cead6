"""The summary message: one message in the head that stands for the turns it replaced.

It is a ``HumanMessage`` that says what it is. It sits right after the system prompt,
where a ``SystemMessage`` is refused by providers that take system text only first
(Anthropic, Gemini), and an ``AIMessage`` would open the conversation with the
assistant, which some providers refuse (the first turn must be the user's) and which
would make the model take the summary for its own words. A user message followed by
the next user message is accepted everywhere (providers and LangChain's integrations
merge consecutive user turns), and the label keeps any reader, the model included,
from taking the summary for something the user typed.

A summary records what it newly covers (the ids of the messages it replaced) and the
id of the summary it replaced (its predecessor), not its predecessor's ids again: a
summary that repeated every id it stood for would grow with each compaction, so a
thread's storage would grow with the square of its length. What a summary stands for
is its chain (``SummaryChains``): its own ids, then its predecessor's, and so on. That
is what forgetting a detail follows to find each summary made from it (docs/SPEC.md,
"Context budget and compaction"): ``SummaryChains.made_from`` is that rule,
``removed_summary`` what such a summary becomes. A summary written by an earlier
release has no predecessor link; its flat list was its whole coverage, and it still is.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from typing import Any, cast

from langchain_core.messages import (
    AnyMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    convert_to_messages,
)
from langgraph.graph.message import REMOVE_ALL_MESSAGES, Messages, add_messages

from agent.prompts import SUMMARY_LABEL, SUMMARY_REMOVED

SUMMARY_KEY = "memagent_summary"
"""The ``additional_kwargs`` entry that marks a summary: ``{"covers": [ids...],
"previous": id}`` (``previous`` only when it replaced a summary), plus ``"removed": True``
on a summary replaced because it was made from a forgotten detail."""


def is_summary(message: BaseMessage) -> bool:
    """Whether ``message`` is a summary made by compaction."""
    return isinstance(message, HumanMessage) and SUMMARY_KEY in message.additional_kwargs


def summary_covers(message: BaseMessage | None) -> list[str]:
    """The ids ``message`` itself covers, oldest first; ``[]`` if not a summary.

    Only what its compaction replaced besides its predecessor: the whole coverage is
    the chain's (``SummaryChains.covers``).
    """
    if message is None or not is_summary(message):
        return []
    return list(message.additional_kwargs[SUMMARY_KEY]["covers"])


def summary_previous(message: BaseMessage | None) -> str | None:
    """The id of the summary ``message`` replaced; ``None`` for the first of a chain.

    Also ``None`` for a summary of an earlier release, whose covers were flat.
    """
    if message is None or not is_summary(message):
        return None
    previous = message.additional_kwargs[SUMMARY_KEY].get("previous")
    return str(previous) if previous is not None else None


def summary_body(message: BaseMessage) -> str:
    """What a summary says, without its label: what the next summary builds on."""
    return message.text.removeprefix(SUMMARY_LABEL).strip()


def make_summary(
    text: str, *, previous: BaseMessage | None, evicted: Sequence[BaseMessage]
) -> HumanMessage:
    """The summary that replaces ``previous`` (the running summary, if any) and ``evicted``.

    A running summary: it stands for what ``previous`` stood for plus the evicted
    messages. It records only the evicted ids and a link to ``previous``, so each
    compaction stores about as much as the first, and an id stays findable however
    many compactions later by following the links (``SummaryChains``).

    Args:
        text: What the summariser wrote (``agent.memory.compaction.summarise``).
        previous: The summary at the head being replaced, or ``None``.
        evicted: The other messages being replaced, oldest first.
    """
    marking: dict[str, Any] = {"covers": [m.id for m in evicted if m.id is not None]}
    if previous is not None and previous.id is not None:
        marking["previous"] = previous.id
    return HumanMessage(
        content=f"{SUMMARY_LABEL}\n{text}",
        id=str(uuid.uuid4()),
        additional_kwargs={SUMMARY_KEY: marking},
    )


def is_removed_summary(message: BaseMessage) -> bool:
    """Whether ``message`` is a summary already replaced by ``removed_summary``."""
    return is_summary(message) and bool(message.additional_kwargs[SUMMARY_KEY].get("removed"))


class SummaryChains:
    """What each of a thread's summaries stands for, through its links to predecessors.

    Built from the summaries a reader has (the head's, and the stored rows of their
    predecessors: ``unresolved`` says which links are still to be read). A summary with
    several stored versions (a marker keeps the id, the covers and the link) counts
    once with the union of their covers. A link to a summary not given (retention
    removed its row, with the rows of every message it covered unless a kept checkpoint
    still holds them) ends the chain there: what the chain still names is checked, and
    nothing is invented for the rest.
    """

    def __init__(self, summaries: Iterable[BaseMessage] = ()) -> None:
        self._covers: dict[str, set[str]] = {}
        self._previous: dict[str, set[str]] = {}
        self._resolved: dict[str, frozenset[str]] = {}
        self.add(summaries)

    def add(self, summaries: Iterable[BaseMessage]) -> None:
        """Takes more summaries (other messages are ignored): predecessors just read, say."""
        for message in summaries:
            if not is_summary(message) or message.id is None:
                continue
            self._covers.setdefault(message.id, set()).update(summary_covers(message))
            links = self._previous.setdefault(message.id, set())
            if (previous := summary_previous(message)) is not None:
                links.add(previous)
        self._resolved.clear()

    def unresolved(self) -> set[str]:
        """Ids of predecessors linked to but not given yet: what to read next."""
        return {p for links in self._previous.values() for p in links} - self._covers.keys()

    def covers(self, summary_id: str) -> frozenset[str]:
        """Every message id the summary stands for: its own, its predecessors', and so on."""
        if (known := self._resolved.get(summary_id)) is not None:
            return known
        covered: set[str] = set()
        seen: set[str] = set()
        pending = [summary_id]
        while pending:  # a loop, not recursion: a chain is as long as the thread's compactions
            current = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            covered |= self._covers.get(current, set())
            pending.extend(self._previous.get(current, ()))
        self._resolved[summary_id] = frozenset(covered)
        return self._resolved[summary_id]

    def made_from(self, message: BaseMessage, message_ids: Collection[str]) -> bool:
        """Whether ``message`` is a summary made from any of ``message_ids`` (not removed yet).

        A summary may restate a detail in other words ("twelve Main Street" for "12 Main
        St"), so its text cannot tell whether it holds the detail; what it stands for
        can. A running summary restates its predecessor, so following the chain finds
        every summary made, at any remove, from a message that held the detail.
        """
        if not is_summary(message) or is_removed_summary(message):
            return False
        return not self.stands_for(message).isdisjoint(message_ids)

    def stands_for(self, summary: BaseMessage) -> frozenset[str]:
        """``covers`` for a summary message itself, whether or not it was given."""
        previous = summary_previous(summary)
        inherited = self.covers(previous) if previous is not None else frozenset()
        return inherited | frozenset(summary_covers(summary))


def removed_summary(summary: BaseMessage) -> HumanMessage:
    """What ``summary`` becomes once a detail it was made from is forgotten: a marker.

    The same id, so ``add_messages`` (and a redact's new row) puts it where the summary
    was, and the same covers and link, so the chain of a later summary still leads
    through it to what it stood for.
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
        additional_kwargs={
            SUMMARY_KEY: {**summary.additional_kwargs[SUMMARY_KEY], "removed": True}
        },
    )


def add_messages_and_summaries(left: Messages, right: Messages) -> list[AnyMessage]:
    """``add_messages``, and a new summary takes the place of what it replaces.

    The ``messages`` channel's reducer. A compaction writes only its summary: this puts
    it first and takes out of the head the messages it newly covers and the summary
    it replaced. With ``add_messages`` alone a summary (a new id) goes last, so putting
    it first took removing everything and writing the kept messages again: a copy of
    them in the step's stored writes at every compaction.

    Otherwise it is ``add_messages`` exactly: a summary already in the head (a marker
    replacing it keeps its id) is replaced in place, and a write that removes
    everything first (a rewind, a forget, a compaction of an earlier release) is
    taken as written, summaries and all.
    """
    merged = cast(list[AnyMessage], add_messages(left, right))  # typed as any ``Messages``
    if isinstance(left, list) and all(isinstance(m, BaseMessage) for m in left):
        before = {cast(BaseMessage, m).id for m in left}
    else:  # the channel's first write: ``left`` may still be in any message form
        before = {m.id for m in cast(list[AnyMessage], add_messages(left, []))}
    fresh = [m for m in merged if m.id not in before and is_summary(m)]
    if not fresh or _removes_all(right):
        return merged
    fresh_ids = {m.id for m in fresh}
    replaced = {i for m in fresh for i in (*summary_covers(m), summary_previous(m)) if i}
    return [*fresh, *(m for m in merged if m.id not in fresh_ids and m.id not in replaced)]


def _removes_all(writes: Messages) -> bool:
    """Whether ``writes`` clear the list first (``RemoveMessage(REMOVE_ALL_MESSAGES)``)."""
    messages = convert_to_messages(writes if isinstance(writes, list) else [writes])
    return any(isinstance(m, RemoveMessage) and m.id == REMOVE_ALL_MESSAGES for m in messages)
