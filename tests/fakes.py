"""A fake tool-calling chat model with scripted replies, for tests without an LLM."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import Field

Step = AIMessage | str | Callable[[list[BaseMessage]], AIMessage]


class InvalidConversationError(ValueError):
    """What a real provider answers to a conversation it cannot accept."""


def check_provider_valid(messages: Sequence[BaseMessage]) -> None:
    """Rejects what OpenAI and Anthropic reject: orphan tool results, unanswered calls.

    Raises:
        InvalidConversationError: The conversation breaks a provider rule.
    """
    open_calls: set[str] = set()
    for index, message in enumerate(messages):
        if isinstance(message, ToolMessage):
            if message.tool_call_id not in open_calls:
                raise InvalidConversationError(
                    f"message {index}: tool result {message.tool_call_id!r} has no calling "
                    "AI message"
                )
            open_calls.discard(message.tool_call_id)
            continue
        if open_calls:
            raise InvalidConversationError(f"message {index}: tool calls {open_calls} unanswered")
        if isinstance(message, AIMessage):
            open_calls = {str(call["id"]) for call in message.tool_calls}


def call(name: str, **args: Any) -> tuple[str, dict[str, Any]]:
    """One scripted tool call, for ``calls``."""
    return name, args


class ScriptedChatModel(BaseChatModel):
    """Replies from a script, records every input, and checks each like a provider.

    Script steps are AI messages, plain text, or callables that build the reply from
    the input (to use ids only known at run time). When the script runs out it answers
    ``"ok"``. Tool-call ids are ``call_1``, ``call_2``, ... in order.
    """

    script: list[Any] = Field(default_factory=list)
    inputs: list[list[BaseMessage]] = Field(default_factory=list)
    bound_tool_names: list[str] = Field(default_factory=list)
    call_count: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def bind_tools(
        self, tools: Sequence[dict[str, Any] | type | Any | BaseTool], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        self.bound_tool_names = [t.name for t in tools if isinstance(t, BaseTool)]
        return self

    def calls(self, *tool_calls: tuple[str, dict[str, Any]]) -> AIMessage:
        """An AI message making ``tool_calls`` in parallel, with deterministic ids."""
        made = []
        for name, args in tool_calls:
            self.call_count += 1
            made.append({"name": name, "args": args, "id": f"call_{self.call_count}"})
        return AIMessage(content="", tool_calls=made)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.inputs.append(list(messages))
        check_provider_valid(messages)
        step: Step = self.script.pop(0) if self.script else "ok"
        if callable(step):
            step = step(messages)
        reply = AIMessage(content=step) if isinstance(step, str) else step
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def said(self, turn: int = -1) -> str:
        """Everything in the model's input on one call, as one string (for searching)."""
        return "\n".join(m.text for m in self.inputs[turn])
