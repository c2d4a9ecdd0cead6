"""Compaction: the oldest whole turns of the head give way to one running summary.

docs/SPEC.md, "Context budget and compaction". This module decides *what* to replace
(``plan_compaction``) and writes the summary (``summarise``); the graph stores the
change as a new checkpoint, so earlier checkpoints keep every message.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import merge_configs
from langgraph.constants import TAG_NOSTREAM

from agent.errors import SummaryFailedError
from agent.memory.budget import TokenCounter, count_call_tokens, fewest_turns_out, older_turns
from agent.memory.summary import is_summary
from agent.model import OfflineChatModel
from agent.prompts import OFFLINE_SUMMARY_LABEL, SUMMARY_LABEL, SUMMARY_PROMPT, SUMMARY_REQUEST

DEFAULT_HEADROOM = 0.5
"""The share of the room for messages left free after a compaction, so the next turns
fit without compacting again."""
MAX_SUMMARY_TOKENS = 2_000
"""A summary's size limit however large the budget: about 1,500 words."""
MIN_SUMMARISER_ROOM = 32
"""Fewer tokens than this left for the conversation in a summariser call: too small."""
_MAX_TOKENS_PER_CHAR = 2
"""The most any character costs in ``agent.memory.budget``'s counter."""
_ROLES = {"human": "User", "ai": "Assistant", "tool": "Tool result"}


def summary_allowance(budget: int) -> int:
    """The most tokens a summary message may take: a tenth of the budget, capped."""
    return max(1, min(budget // 10, MAX_SUMMARY_TOKENS))


@dataclass(frozen=True, slots=True)
class CompactionPlan:
    """What one compaction replaces and keeps, and the call's size before and after.

    Attributes:
        previous: The running summary at the head, replaced along with ``evicted``.
        evicted: The other messages replaced, oldest first: whole turns.
        kept: The messages that stay after the summary, the current turn included.
        budget: The context budget planned for.
        tokens_before: The call's tokens as it stands.
        tokens_after: The call's tokens with a summary of ``summary_tokens`` in place
            of what is replaced (an upper bound: ``summarise`` keeps within it).
        summary_tokens: The most tokens the summary may take.
    """

    previous: BaseMessage | None
    evicted: tuple[BaseMessage, ...]
    kept: tuple[BaseMessage, ...]
    budget: int
    tokens_before: int
    tokens_after: int
    summary_tokens: int

    @property
    def replaced_ids(self) -> list[str]:
        """The ids of every message the summary replaces in the head, summary included."""
        replaced = [self.previous, *self.evicted] if self.previous else self.evicted
        return [m.id for m in replaced if m is not None and m.id is not None]

    @property
    def fits(self) -> bool:
        """Whether the call fits the budget after this compaction.

        ``False`` only when the current turn alone is too large: the caller says so.
        """
        return self.tokens_after <= self.budget


def plan_compaction(
    messages: Sequence[BaseMessage],
    *,
    budget: int,
    count: TokenCounter,
    headroom: float = DEFAULT_HEADROOM,
    force: bool = False,
) -> CompactionPlan | None:
    """Which oldest whole turns to replace by a summary so the next call fits, with room.

    Compaction only happens when the call would not fit, and then replaces enough turns
    that the call uses at most ``1 - headroom`` of the room the budget leaves for
    messages (the budget less the system prompt and tool schemas), summary included, so
    it does not happen again on the next turn. The current turn (from the last user
    message on) is never replaced, nor is a tool call parted from its results; a
    summary at the head is always replaced, its successor summarising it too.

    Args:
        messages: The conversation (without the system prompt).
        budget: The context budget.
        count: Counts the whole call for given messages (``budget.call_counter``).
        headroom: The share of the room for messages to leave free.
        force: Compact every turn but the current one, whatever the size (on request).

    Returns:
        The plan, or ``None`` when the call fits and compaction was not asked for. A plan
        may replace nothing (there is only the current turn); if it does not ``fit``,
        the current turn alone exceeds the budget.
    """
    before = count(messages)
    if before <= budget and not force:
        return None
    summary_tokens = summary_allowance(budget)
    fixed = count([])
    target = fixed + math.floor((budget - fixed) * (1 - headroom))
    older, current = older_turns(messages)
    out = (
        len(older)
        if force
        else fewest_turns_out(older, current, lambda kept: count(kept) + summary_tokens <= target)
    )
    replaced = [m for turn in older[:out] for m in turn]
    kept = [*(m for turn in older[out:] for m in turn), *current]
    previous = replaced[0] if replaced and is_summary(replaced[0]) else None
    return CompactionPlan(
        previous=previous,
        evicted=tuple(replaced[1:] if previous else replaced),
        kept=tuple(kept),
        budget=budget,
        tokens_before=before,
        tokens_after=count(kept) + summary_tokens if replaced else before,
        summary_tokens=summary_tokens,
    )


def _summary_tokens(text: str, count: TokenCounter) -> int:
    """The tokens ``text`` takes as a summary message (label included)."""
    return count([HumanMessage(f"{SUMMARY_LABEL}\n{text}")]) - count([])


def _clip(text: str, limit: int, count: TokenCounter) -> str:
    """``text`` cut short (marked "…") so that, as a summary message, it fits ``limit``."""
    if _summary_tokens(text, count) <= limit:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits
        middle = (low + high + 1) // 2
        if _summary_tokens(text[:middle] + " …", count) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + " …"


def _transcript_line(message: BaseMessage) -> str:
    """One message as the summariser reads it: who said it, what, and what tool it called."""
    parts = [message.text.strip()]
    if isinstance(message, AIMessage):
        parts += [
            f"[called {call['name']} with {json.dumps(call['args'], ensure_ascii=False)}]"
            for call in message.tool_calls
        ]
    return f"{_ROLES.get(message.type, message.type)}: {' '.join(p for p in parts if p)}"


def _pieces(lines: Sequence[str], size: int) -> list[str]:
    """``lines`` with each longer than ``size`` characters cut into pieces of that size."""
    return [line[i : i + size] for line in lines for i in range(0, max(len(line), 1), size)]


async def summarise(
    model: BaseChatModel,
    previous_summary: str | None,
    evicted: Sequence[BaseMessage],
    *,
    budget: int,
    count: TokenCounter = count_call_tokens,
    summary_tokens: int | None = None,
    config: RunnableConfig | None = None,
) -> str:
    """The running summary of ``previous_summary`` plus ``evicted``, within the budget.

    Each summariser call fits ``budget``: when the evicted turns do not fit in one call
    they are summarised in chunks, each call building on the summary so far (a single
    message too large is cut into pieces). The summary is cut to ``summary_tokens`` if
    the model wrote more. The offline demo model gets ``offline_summary`` instead, as it
    cannot summarise: a deterministic extract, so demos compact without an LLM.

    Args:
        model: The summariser (``summary_model``, or the chat model), without tools.
        previous_summary: What the summary being replaced says (``summary_body``).
        evicted: The messages to take in, oldest first.
        budget: The context budget each summariser call must fit.
        count: Counts a summariser call; must add up over messages, as
            ``count_call_tokens`` (the default) does.
        summary_tokens: The summary's size limit (default ``summary_allowance``).
        config: The caller's run config (callbacks, tracing); the summariser's call is
            tagged ``nostream`` so its tokens never stream to the user as a reply.

    Raises:
        SummaryFailedError: The model raised or answered nothing, or the budget leaves
            no room for a summariser call. Nothing is returned, so nothing is stored.
        ValueError: There is nothing to summarise.
    """
    if not evicted and not previous_summary:
        raise ValueError("nothing to summarise: no earlier summary and no messages")
    limit = summary_tokens or summary_allowance(budget)
    if isinstance(model, OfflineChatModel):
        return offline_summary(previous_summary, evicted, limit=limit, count=count)
    system = SystemMessage(SUMMARY_PROMPT.format(words=max(20, limit // 2)))

    def request(previous: str, lines: Sequence[str]) -> list[BaseMessage]:
        text = SUMMARY_REQUEST.format(
            previous=previous or "(none yet)", transcript="\n".join(lines)
        )
        return [system, HumanMessage(text)]

    lines = [_transcript_line(m) for m in evicted]
    running = previous_summary or ""  # "" until there is a summary
    if _summary_tokens(running, count) > limit:  # made under a larger budget: redo it
        lines.insert(0, f"Earlier summary: {running}")
        running = ""
    room = budget - count(request("", [])) - limit - 16
    if room < MIN_SUMMARISER_ROOM:
        raise SummaryFailedError(f"a budget of {budget} tokens leaves no room for a summary call")
    pending = deque(_pieces(lines, room // _MAX_TOKENS_PER_CHAR))
    call = merge_configs(config, {"tags": [TAG_NOSTREAM]})
    while pending:
        used = count(request(running, []))
        batch = [pending.popleft()]  # fits: room was set aside for it and the summary
        used += count([HumanMessage(batch[0])])
        while pending and used + (cost := count([HumanMessage(pending[0])])) <= budget:
            batch.append(pending.popleft())
            used += cost
        running = _clip(await _ask(model, request(running, batch), call), limit, count)
    return running


async def _ask(model: BaseChatModel, messages: list[BaseMessage], config: RunnableConfig) -> str:
    """One summariser call's text; a failure or an empty answer is an error, never text."""
    try:
        reply = await model.ainvoke(messages, config)
    except Exception as error:  # any failure of the summariser is the same failure here
        raise SummaryFailedError(f"the summary model failed ({type(error).__name__})") from error
    text = reply.text.strip()
    if not text:
        raise SummaryFailedError("the summary model answered nothing")
    return text


_FACT = re.compile(r"\bmy\s+([\w ]+?)\s*(?:\bis\b|\bare\b|:|=)", re.I)
"""A user stating something about themselves: "my name is Ada", "my phone: 555"."""


def offline_summary(
    previous_summary: str | None,
    evicted: Sequence[BaseMessage],
    *,
    limit: int,
    count: TokenCounter = count_call_tokens,
) -> str:
    """The offline demo model's summary: the facts the user stated, quoted, newest kept.

    Deterministic and labelled (``OFFLINE_SUMMARY_LABEL``): one line per topic ("my X
    is ..."), quoting the user's latest statement of it, so what the offline model
    recalls from earlier user messages it still finds in the summary. Running: the
    previous summary's quoted lines are statements too. When the lines do not fit
    ``limit``, the oldest topics are left out, and the summary says how many.

    A separate function rather than a mode of ``OfflineChatModel``: the offline model
    answers a conversation, and recognising a summariser prompt in one would make it
    parse its own prompt back; ``summarise`` calls this for it.
    """
    stated = [
        line.removeprefix("- ")
        for line in (previous_summary or "").splitlines()
        if line.startswith("- ")
    ]
    stated += [" ".join(m.text.split()) for m in evicted if isinstance(m, HumanMessage)]
    facts: dict[str, str] = {}
    for text in stated:
        if match := _FACT.search(text):
            topic = " ".join(match.group(1).lower().split())
            facts.pop(topic, None)  # the latest statement of a topic, in its place
            facts[topic] = text
    lines = [f"- {text}" for text in facts.values()]
    left_out = 0
    while True:
        note = [f"({left_out} older statements left out to fit.)"] if left_out else []
        if not lines:
            note = note or ["You stated no facts about yourself earlier."]
        text = "\n".join([OFFLINE_SUMMARY_LABEL, *note, *lines])
        if _summary_tokens(text, count) <= limit:
            return text
        if not lines:  # a budget too small for even the label
            return _clip(text, limit, count)
        lines.pop(0)
        left_out += 1
