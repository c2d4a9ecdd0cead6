"""Compaction as a memory change: the state update that puts a summary in the head.

``agent.memory.compaction`` decides what to replace and writes the summary; this
module turns that into the update every route applies (the graph's ``compact`` node
before a model call that would not fit, the ``compact_conversation`` tool, and
``tools.admin.acompact`` through ``aupdate_state``): the summary alone, which the
``messages`` reducer (``add_messages_and_summaries``) puts in place of what it
replaces, and the ``memory_event`` of kind ``compact`` that marks the checkpoint
(``memory_compacted``, ``tokens_before``, ``tokens_after``; no content). Earlier
checkpoints keep every message, so a rewind to before it undoes it, and the kept
messages keep their ids and rows, so storage adds only the summary.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool

from agent.memory.budget import TokenCounter, call_counter, fit_to_budget, older_turns
from agent.memory.compaction import plan_compaction, summarise
from agent.memory.events import COMPACT
from agent.memory.summary import make_summary, summary_body
from agent.prompts import COMPACT_CONFIRMATION, LEFT_OUT_NOTE, TOO_LARGE_REPLY
from agent.state import MemoryEvent


@dataclass(frozen=True)
class Compactor:
    """The context budget of one graph, and the summariser that keeps calls within it.

    Attributes:
        budget: The most tokens one model call may receive, everything included.
        count: Counts the chat model's whole call for given conversation messages.
        summary_model: Writes the summaries (the chat model unless one is given).
    """

    budget: int
    count: TokenCounter
    summary_model: BaseChatModel

    @classmethod
    def for_graph(
        cls,
        *,
        budget: int,
        system_prompt: str,
        tools: Sequence[BaseTool],
        summary_model: BaseChatModel,
    ) -> Compactor:
        """The compactor of a graph that sends ``system_prompt`` with ``tools`` bound."""
        return cls(budget, call_counter(system_prompt, tools), summary_model)

    def needs_compaction(self, messages: Sequence[BaseMessage]) -> bool:
        """Whether the next model call would not fit, and older turns could give way.

        A current turn too large on its own is not helped by compacting (``prepare``
        answers it instead).
        """
        if self.count(messages) <= self.budget:
            return False
        older, current = older_turns(messages)
        return bool(older) and self.count(current) <= self.budget

    async def update(
        self,
        messages: Sequence[AnyMessage],
        *,
        force: bool = False,
        config: RunnableConfig | None = None,
    ) -> dict[str, Any] | None:
        """The compaction update, or ``None`` when there is nothing to compact.

        Args:
            messages: The head's conversation.
            force: Compact every turn but the current one whatever the size (on request).
            config: The run's config, for the summariser's call (callbacks, no stream).

        Raises:
            SummaryFailedError: The summariser failed or answered nothing; nothing is
                to be stored.
        """
        plan = plan_compaction(messages, budget=self.budget, count=self.count, force=force)
        if plan is None or not plan.replaced_ids:
            return None
        text = await summarise(
            self.summary_model,
            summary_body(plan.previous) if plan.previous else None,
            plan.evicted,
            budget=self.budget,
            summary_tokens=plan.summary_tokens,
            config=config,
        )
        summary = make_summary(text, previous=plan.previous, evicted=plan.evicted)
        event: MemoryEvent = {
            "kind": COMPACT.name,
            "timestamp": int(time.time()),
            "count": len(plan.replaced_ids),
            "tokens_before": plan.tokens_before,
            "tokens_after": self.count([summary, *plan.kept]),
        }
        return {
            "messages": [summary],  # it takes its place (``add_messages_and_summaries``)
            "memory_event": event,
        }

    async def requested(
        self, messages: Sequence[AnyMessage], *, config: RunnableConfig | None = None
    ) -> dict[str, Any] | None:
        """A compaction asked for by the user: every turn but the current one, confirmed."""
        update = await self.update(messages, force=True, config=config)
        if update is not None:
            update["messages"].append(AIMessage(content=COMPACT_CONFIRMATION))
        return update

    def prepare(
        self, messages: Sequence[BaseMessage]
    ) -> tuple[list[BaseMessage], AIMessage | None]:
        """What one model call may receive, and the note or answer that goes with it.

        Normally the conversation as it is. When it does not fit (its compaction
        failed), the oldest turns are left out of this call only, with a note for the
        user; when even the current turn does not fit, the model is not called and the
        returned message is the whole answer (the sent list is then empty). The note is
        given once a turn: a turn that calls a tool calls the model again, and the
        current turn then already holds it.
        """
        if self.count(messages) <= self.budget:
            return list(messages), None
        sent, _ = fit_to_budget(messages, budget=self.budget, count=self.count)
        if (tokens := self.count(sent)) > self.budget:
            return [], AIMessage(content=TOO_LARGE_REPLY.format(tokens=tokens, budget=self.budget))
        told = any(m.text == LEFT_OUT_NOTE for m in older_turns(messages)[1])
        return sent, None if told else AIMessage(content=LEFT_OUT_NOTE)
