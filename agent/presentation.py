"""What the CLI and the web page show of a conversation, in one place for both.

Both surfaces show the user's messages and the agent's text replies (tool calls and
their results stay hidden) and write JSON with times as ISO 8601 text.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from agent.memory.summary import is_summary

Role = Literal["user", "agent", "summary"]


def shown_messages(messages: Iterable[BaseMessage]) -> list[tuple[Role, str]]:
    """The user's messages and the agent's replies, oldest first; tool traffic left out.

    A compaction's summary is shown as what it is, never as something the user said.
    """
    shown: list[tuple[Role, str]] = []
    for message in messages:
        if is_summary(message):
            shown.append(("summary", message.text))
        elif isinstance(message, HumanMessage):
            shown.append(("user", message.text))
        elif isinstance(message, AIMessage) and message.text:
            shown.append(("agent", message.text))
    return shown


def json_default(value: Any) -> Any:
    """``json.dumps``'s ``default`` for memagent's values: datetimes as ISO 8601 text.

    Raises:
        TypeError: Any other type, as ``json.dumps`` expects.
    """
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")
