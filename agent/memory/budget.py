"""The context budget: how many tokens a model call may receive, and how to count them.

docs/SPEC.md, "Context budget and compaction": the budget bounds *everything* a call
receives (system prompt, tool schemas and messages), counted at least as conservatively
as ``langchain_core.messages.utils.count_tokens_approximately`` and more conservatively
for text that tokenises densely. That counter assumes four characters per token, which
holds for English prose but undercounts Chinese, Japanese and Korean two to four times
(one ideograph is about one token) and undercounts code, whose symbols are tokens of
their own. So each message is counted both ways and the larger count is used.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from agent.memory.summary import is_summary
from agent.model import OfflineChatModel

Tool = BaseTool | dict[str, Any]
"""A bound tool as ``count_tokens_approximately`` takes it: a tool or its schema."""
TokenCounter = Callable[[Sequence[BaseMessage]], int]
"""Counts the whole call made with these conversation messages (prompt and tools included)."""

DEFAULT_CONTEXT_TOKENS = 6_000
"""The budget for a model without a profile: an 8k-token window, less 2k for the reply.

Small local models (Ollama's defaults among them) have windows of 8k tokens or more;
a model with a larger window says so in its profile or through
``MEMAGENT_CONTEXT_TOKENS``."""
OFFLINE_CONTEXT_TOKENS = 3_000
"""The offline demo model's budget: small enough that a demo compacts within a few dozen
turns (the system prompt and the tool schemas take about 1,000 of it)."""
DEFAULT_REPLY_TOKENS = 4_096
"""Room left for the reply when the model states no output limit."""

_MESSAGE_OVERHEAD = 3
"""Tokens each message costs besides its text (role and separators), as langchain counts."""
_TOKENS_PER_CHAR = (
    # CJK ideographs, Hangul, Kana, CJK and fullwidth punctuation: about a token each.
    (
        re.compile(
            "[\u1100-\u11ff\u2e80-\u2fdf\u3000-\u30ff\u3130-\u318f\u3190-\u31ff"
            "\u3200-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\ufe30-\ufe4f"
            "\uff00-\uffef\U00020000-\U0003ffff]+"
        ),
        1.0,
    ),
    # Emoji and other characters outside the basic plane: often two tokens or more.
    (re.compile("[\U00010000-\U0001ffff\U00040000-\U0010ffff]+"), 2.0),
    # Other scripts (Cyrillic, Greek, Arabic, Devanagari, accented Latin, ...).
    (re.compile("[\u0080-\u10ff\u1200-\u2e7f\ua000-\ua95f\ua980-\uabff]+"), 0.5),
    # ASCII punctuation and symbols, the bulk of code and JSON: one token per two.
    (re.compile(r"[!-/:-@\[-`{-~]+"), 0.5),
    # Digits: tokenisers group them in threes at most.
    (re.compile(r"[0-9]+"), 1 / 3),
)
_PLAIN_TOKENS_PER_CHAR = 0.25
"""Letters and spaces: langchain's four characters per token."""
_ASCII_PUNCTUATION = bytes(
    [*range(0x21, 0x30), *range(0x3A, 0x41), *range(0x5B, 0x61), *range(0x7B, 0x7F)]
)
"""The ASCII characters of ``_TOKENS_PER_CHAR``'s punctuation class, as bytes."""
_ASCII_DIGITS = b"0123456789"
_CACHED_MESSAGES = 8_192
"""Message counts kept (``message_tokens``): a few hundred threads' heads."""
_message_counts: dict[tuple[str, str | None, str, str | None], int] = {}


def dense_text_tokens(text: str) -> float:
    """Tokens ``text`` may take when it is dense: every character at least 1/4 token."""
    if text.isascii():
        return _ascii_tokens(text)
    return _script_tokens(text)


def _script_tokens(text: str) -> float:
    """``dense_text_tokens`` for any text: each script's class found by its pattern."""
    plain = len(text)
    tokens = 0.0
    for pattern, per_char in _TOKENS_PER_CHAR:
        chars = sum(map(len, pattern.findall(text)))
        plain -= chars
        tokens += chars * per_char
    return tokens + plain * _PLAIN_TOKENS_PER_CHAR


def _ascii_tokens(text: str) -> float:
    """``_script_tokens`` for ASCII text, to the last bit, about twenty times faster.

    Only the punctuation and digit classes can occur, and counting them is a byte
    deletion in C; the five patterns cost about 80 µs per kB, most of counting a turn.
    """
    data = text.encode("ascii")
    punctuation = len(data) - len(data.translate(None, _ASCII_PUNCTUATION))
    digits = len(data) - len(data.translate(None, _ASCII_DIGITS))
    plain = len(data) - punctuation - digits
    return punctuation * 0.5 + digits * (1 / 3) + plain * _PLAIN_TOKENS_PER_CHAR


def _message_text(message: BaseMessage) -> str:
    """Everything of ``message`` a provider reads as text, as langchain's counter reads it."""
    parts = [message.type, message.name or ""]
    if isinstance(message.content, str):
        parts.append(message.content)
    else:
        for block in message.content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif isinstance(block, dict) and block.get("type") in {"image", "image_url"}:
                continue  # a fixed cost per image, counted by langchain's counter
            else:
                parts.append(block if isinstance(block, str) else repr(block))
    parts.append(repr(getattr(message, "tool_calls", None) or ""))
    parts.append(getattr(message, "tool_call_id", None) or "")
    return "".join(parts)


def message_tokens(message: BaseMessage) -> int:
    """The tokens one message costs: langchain's estimate, or more for dense text.

    Every model call counts the whole head, so a message's count is kept, by what it
    depends on: its type, name, text and tool call id (messages with tool calls or
    content blocks, a few per thread, are counted afresh). The text is the key itself,
    so a message changed under its id (a forget, a redact) is counted anew, and the
    saver hands every turn the same string objects, whose hashes Python keeps.
    """
    # ``isinstance`` rather than ``getattr(..., default)``: a missing attribute of a
    # message goes through pydantic's ``__getattr__`` and costs more than the lookup.
    if not isinstance(message.content, str) or (
        isinstance(message, AIMessage) and message.tool_calls
    ):
        return _count_message(message)
    call_id = message.tool_call_id if isinstance(message, ToolMessage) else None
    key = (message.type, message.name, message.content, call_id)
    if (known := _message_counts.get(key)) is not None:
        return known
    if len(_message_counts) >= _CACHED_MESSAGES:
        _message_counts.clear()  # simpler than an LRU, and refilled within a turn
    tokens = _message_counts[key] = _count_message(message)
    return tokens


def _count_message(message: BaseMessage) -> int:
    approx = count_tokens_approximately([message])
    dense = math.ceil(dense_text_tokens(_message_text(message))) + _MESSAGE_OVERHEAD
    return max(approx, dense)


def tools_tokens(tools: Sequence[Tool]) -> int:
    """The tokens the tool schemas cost, sent with every call they are bound to."""
    if not tools:
        return 0
    approx = count_tokens_approximately([], tools=list(tools))
    dense = sum(dense_text_tokens(json.dumps(convert_to_openai_tool(t))) for t in tools)
    return max(approx, math.ceil(dense))


def count_call_tokens(messages: Sequence[BaseMessage], tools: Sequence[Tool] = ()) -> int:
    """The tokens of one model call: exactly what the model receives, schemas included.

    Never less than ``count_tokens_approximately(messages, tools=tools)``: each message
    (and the schemas) costs at least what that counter says, and counts add up.

    Args:
        messages: The call's messages, the system prompt included.
        tools: The tools bound to the model for this call.
    """
    return tools_tokens(tools) + sum(message_tokens(m) for m in messages)


def call_counter(system_prompt: str, tools: Sequence[Tool] = ()) -> TokenCounter:
    """Counts the call the chat graph makes with given conversation messages.

    The graph sends ``[SystemMessage(system_prompt), *messages]`` with ``tools`` bound;
    planners that try several cuts of the conversation count each with this.
    """
    fixed = count_call_tokens([SystemMessage(system_prompt)], tools)
    return lambda messages: fixed + count_call_tokens(messages)


def resolve_context_tokens(model: BaseChatModel, explicit: int | None, setting: int | None) -> int:
    """The thread's context budget, from the most specific source that gives one.

    In order: ``explicit`` (``make_graph(context_tokens=...)``), ``setting``
    (``MEMAGENT_CONTEXT_TOKENS``), ``OFFLINE_CONTEXT_TOKENS`` for the offline demo
    model, the model's profile (``max_input_tokens`` less room for the reply: the
    model's own ``max_tokens``, else its profile's ``max_output_tokens``, else
    ``DEFAULT_REPLY_TOKENS``, at most a quarter of the window), else
    ``DEFAULT_CONTEXT_TOKENS``.

    Raises:
        ValueError: ``explicit`` is not a positive whole number.
    """
    if explicit is not None:
        if explicit < 1:
            raise ValueError(f"context_tokens must be a positive whole number, got {explicit!r}")
        return explicit
    if setting is not None:
        return setting
    if isinstance(model, OfflineChatModel):
        return OFFLINE_CONTEXT_TOKENS
    profile = model.profile or {}
    window = profile.get("max_input_tokens")
    if not isinstance(window, int) or window < 1:
        return DEFAULT_CONTEXT_TOKENS
    own = getattr(model, "max_tokens", None)
    reply = own if isinstance(own, int) and own > 0 else profile.get("max_output_tokens")
    if not isinstance(reply, int) or reply < 1:
        reply = DEFAULT_REPLY_TOKENS
    return window - min(reply, window // 4)


def turns(messages: Sequence[BaseMessage]) -> list[list[BaseMessage]]:
    """The conversation cut into whole turns, oldest first.

    A turn starts at a user message and holds everything up to the next one: the
    replies, each tool call and its results, so cutting between turns never separates
    a tool call from its result. What comes before the first user message (the
    summary, a forget confirmation) is a turn of its own; the summary, though a
    ``HumanMessage``, starts no turn.
    """
    found: list[list[BaseMessage]] = []
    for message in messages:
        if not found or (isinstance(message, HumanMessage) and not is_summary(message)):
            found.append([])
        found[-1].append(message)
    return found


def older_turns(
    messages: Sequence[BaseMessage],
) -> tuple[list[list[BaseMessage]], list[BaseMessage]]:
    """The turns that may be left out or replaced, and the current turn that may not.

    The current turn starts at the last user message (the one just sent) and runs to the
    end, tool calls in progress included. With no user message at all, everything is
    the current turn.
    """
    cut = turns(messages)
    last = cut[-1] if cut else []
    if not last or not isinstance(last[0], HumanMessage) or is_summary(last[0]):
        return [], list(messages)
    return cut[:-1], last


def fewest_turns_out(
    older: Sequence[Sequence[BaseMessage]],
    current: Sequence[BaseMessage],
    fits: Callable[[list[BaseMessage]], bool],
) -> int:
    """How many of the oldest turns to leave out so that the rest ``fits``: the fewest.

    Found by bisection, since leaving out more never makes a call larger; a thread of
    thousands of turns is counted a dozen times, not thousands. ``len(older)`` when
    even the current turn alone does not fit.
    """
    low, high = 0, len(older)
    while low < high:
        middle = (low + high) // 2
        if fits([*(m for turn in older[middle:] for m in turn), *current]):
            high = middle
        else:
            low = middle + 1
    return low


def fit_to_budget(
    messages: Sequence[BaseMessage], *, budget: int, count: TokenCounter
) -> tuple[list[BaseMessage], int]:
    """The conversation with its oldest whole turns left out until the call fits.

    For a call whose summary could not be made: the turns stay saved, they are only left
    out of this one call. The current turn is never left out, so if it alone does not
    fit, what comes back still does not fit (the caller says the message is too large).

    Args:
        messages: The conversation (without the system prompt).
        budget: The context budget.
        count: Counts the whole call for given messages (``call_counter``).

    Returns:
        The messages to send, valid for every provider, and how many were left out.
    """
    older, current = older_turns(messages)
    out = fewest_turns_out(older, current, lambda kept: count(kept) <= budget)
    kept = [*(m for turn in older[out:] for m in turn), *current]
    return kept, len(messages) - len(kept)
