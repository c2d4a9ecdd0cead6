"""Which chat model answers: a configured one, or the offline demo model.

``MEMAGENT_MODEL`` takes any ``init_chat_model`` spec (``openai:gpt-4o-mini``, ...);
with ``OPENAI_BASE_URL`` it reaches OpenAI-compatible servers such as Ollama or vLLM.
With nothing configured and no key, the offline model answers: deterministic, no
network, and honest about what it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

from agent.errors import SettingsError
from agent.memory.summary import is_summary
from agent.prompts import UNDO_HINT
from agent.settings import OFFLINE_LABEL, Settings, model_label

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_FORGET = re.compile(r"\bforget\b", re.I)
_FORGET_DETAIL = re.compile(
    r"\b(?:forget|erase)\s+(?:about\s+)?my\s+([\w ]+?)(\s+for good|\s+permanently)?\s*[.!]?$", re.I
)
_ERASE_IT = re.compile(
    r"\b(?:erase|forget|delete)\s+(?:it|that|this)\s+(?:for good|permanently)\b", re.I
)
_REWIND = re.compile(r"\b(go back|rewind|undo)\b", re.I)
_TIMELINE = re.compile(r"\b(timeline|history)\b", re.I)
_COMPACT = re.compile(r"\b(compact|summari[sz]e)\b", re.I)
_RECALL = re.compile(r"\b(remember|recall|what did i|what have i|what do you know)\b", re.I)
_MY_QUESTION = re.compile(r"\bwhat(?:'s| is| are)\s+my\s+([\w ]+?)\s*\??$", re.I)


class OfflineChatModel(BaseChatModel):
    """A deterministic stand-in for an LLM, so memagent runs without a key or network.

    It answers from what the thread remembers (its input is the thread's messages),
    which makes persistence, forgetting and rewinding visible in a demo:

    * "forget my X" calls ``forget_details`` with what the user said X is ("my
      address is 12 Main St" -> ``["12 Main St"]``); "... for good" (or "erase my X
      for good") asks for the hard erase, which the user must confirm, and so does
      "erase it for good" right after a detail was forgotten;
    * "forget this/that/everything" calls ``forget_conversation``;
    * "go back", "rewind", "undo" call ``rewind_to`` with an id from the message, or
      first ``conversation_timeline`` and then ``rewind_to`` the previous turn;
    * "show the timeline/history" calls ``conversation_timeline``;
    * "compact" / "summarise the conversation" calls ``compact_conversation``;
    * "what is my X?" and "what do you remember?" answer from earlier user messages;
    * anything else is acknowledged.
    """

    tool_names: tuple[str, ...] = ()

    @property
    def _llm_type(self) -> str:
        return "memagent-offline"

    def bind_tools(
        self, tools: Sequence[dict[str, Any] | type | Any | BaseTool], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        names = tuple(t.name for t in tools if isinstance(t, BaseTool))
        return self.model_copy(update={"tool_names": names})

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self.respond(messages))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from _chunks(self.respond(messages))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in _chunks(self.respond(messages)):
            yield chunk

    def respond(self, messages: list[BaseMessage]) -> AIMessage:
        """The reply to a conversation (system prompt first, as the graph sends it)."""
        last = messages[-1] if messages else None
        n = len(messages)
        if isinstance(last, ToolMessage):
            return self._after_tool(messages, last)
        text = last.text if isinstance(last, HumanMessage) else ""
        detail = _FORGET_DETAIL.search(text.strip())
        if detail and "forget_details" in self.tool_names:
            topic = detail.group(1).strip().lower()
            quotes = _said_about(topic, _earlier_user_texts(messages))
            if not quotes:
                return AIMessage(content=f"You haven't told me your {topic} in this conversation.")
            args: dict[str, Any] = {"quotes": quotes}
            if detail.group(2):
                args["for_good"] = True
            return _call("forget_details", args, n)
        if _ERASE_IT.search(text) and "forget_details" in self.tool_names:
            return _call("forget_details", {"quotes": [], "for_good": True}, n)
        if _FORGET.search(text) and "forget_conversation" in self.tool_names:
            return _call("forget_conversation", {"reason": "the user asked me to forget"}, n)
        if _REWIND.search(text) and "rewind_to" in self.tool_names:
            if match := _UUID.search(text):
                return _call("rewind_to", {"checkpoint_id": match.group(0).lower()}, n)
            return _call("conversation_timeline", {"limit": 3}, n, call_id="undo-lookup")
        if _COMPACT.search(text) and "compact_conversation" in self.tool_names:
            return _call("compact_conversation", {}, n)
        if _TIMELINE.search(text) and "conversation_timeline" in self.tool_names:
            return _call("conversation_timeline", {"limit": 20}, n)
        return AIMessage(content=_answer(text, _earlier_user_texts(messages)))

    def _after_tool(self, messages: list[BaseMessage], result: ToolMessage) -> AIMessage:
        """The reply once a tool answered, in the user's words, never the tool's.

        A tool's answer is written for the model (what to call next, which argument to
        pass), so it is read here and never repeated. A memory change that worked ends
        the turn with its own confirmation before the model is asked again, so a
        memory-changing tool that reaches here refused, and nothing changed.
        """
        if result.tool_call_id.startswith("undo-lookup"):
            hint = next((ln for ln in result.text.splitlines() if ln.startswith(UNDO_HINT)), "")
            if match := _UUID.search(hint):
                return _call("rewind_to", {"checkpoint_id": match.group(0)}, len(messages))
            return AIMessage(content="There is nothing earlier to go back to.")
        name, args = _tool_call(messages, result.tool_call_id)
        if name == "conversation_timeline":
            return AIMessage(content=_timeline_for_user(result.text))
        if name == "rewind_to":
            reply = (
                f"I couldn't go back to {args.get('checkpoint_id', 'that point')}: it is not "
                'a point of this conversation. Say "show the timeline" to see the ones I can '
                "go back to."
            )
        elif name == "forget_details" and args.get("for_good") and not args.get("quotes"):
            reply = (
                "There is nothing to erase for good: no detail was forgotten earlier in this "
                'conversation. Tell me which one you mean, e.g. "forget my address for good".'
            )
        else:
            what = "that detail" if name == "forget_details" else "our conversation"
            reply = f"I couldn't forget {what} here, so nothing was changed."
        return AIMessage(content=reply)


def _call(name: str, args: dict[str, Any], position: int, *, call_id: str = "call") -> AIMessage:
    """A tool call whose id is derived from the conversation length: deterministic."""
    return AIMessage(
        content="",
        tool_calls=[{"name": name, "args": args, "id": f"{call_id}-{position}"}],
    )


def _tool_call(messages: list[BaseMessage], call_id: str) -> tuple[str, dict[str, Any]]:
    """The name and arguments of the tool call ``call_id`` answers."""
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                if call["id"] == call_id:
                    return call["name"], call["args"]
    return "", {}


def _timeline_for_user(result: str) -> str:
    """The timeline tool's entries, introduced for the user (its other lines are for me)."""
    entries = [line for line in result.splitlines() if _UUID.match(line)]
    if not entries:
        return "There is nothing earlier in this conversation yet."
    return (
        'Here is this conversation, newest first. Say "go back to" and an id to return to '
        "the point before that turn:\n" + "\n".join(entries)
    )


def _chunks(message: AIMessage) -> Iterator[ChatGenerationChunk]:
    if message.tool_calls:
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                tool_call_chunks=[
                    {"name": c["name"], "args": _json(c["args"]), "id": c["id"], "index": i}
                    for i, c in enumerate(message.tool_calls)
                ],
            )
        )
        return
    for word in re.findall(r"\S+\s*", message.text) or [""]:
        yield ChatGenerationChunk(message=AIMessageChunk(content=word))


def _json(args: dict[str, Any]) -> str:
    return json.dumps(args)


def _earlier_user_texts(messages: list[BaseMessage]) -> list[str]:
    """What the user said before the last message, a summary's quoted statements included."""
    said: list[str] = []
    for message in messages[:-1]:
        if is_summary(message):  # the offline summary quotes each statement on a "- " line
            said += [line[2:] for line in message.text.splitlines() if line.startswith("- ")]
        elif isinstance(message, HumanMessage):
            said.append(message.text)
    return said


def _statement(topic: str) -> re.Pattern[str]:
    """Matches a user saying what their ``topic`` is; group 1 is the value."""
    return re.compile(rf"\bmy\s+{re.escape(topic)}\s*(?:is|:|=)\s*(.+?)\s*[.!]?$", re.I)


def _said_about(topic: str, earlier: list[str]) -> list[str]:
    """What the user said their ``topic`` is ("my address is 12 Main St" -> "12 Main St")."""
    statement = _statement(topic)
    found = [match.group(1) for text in earlier if (match := statement.search(text.strip()))]
    return list(dict.fromkeys(found))


def _answer(text: str, earlier: list[str]) -> str:
    if match := _MY_QUESTION.search(text.strip()):
        topic = match.group(1).strip().lower()
        said = [t for t in earlier if _statement(topic).search(t.strip())]
        if said:
            return f'You told me: "{said[-1]}"'
        return f"I don't know your {topic}: you haven't told me in this conversation."
    if _RECALL.search(text):
        if not earlier:
            return "I don't remember anything from this conversation yet."
        return "Here is what you've told me: " + " | ".join(f'"{t}"' for t in earlier)
    return f'Noted: "{text}". (I am the offline demo model; ask me what I remember.)'


def load_model(settings: Settings | None = None) -> tuple[BaseChatModel, str]:
    """The chat model to use and a one-line label for the banner.

    Returns:
        The model, and a label that says which model it is.

    Raises:
        SettingsError: The configured model cannot be built (an unknown provider, a
            provider whose package is not installed, a missing key), with the reason.
    """
    settings = settings or Settings.from_env()
    label = model_label(settings)
    if label == OFFLINE_LABEL:
        return OfflineChatModel(), label
    from langchain.chat_models import init_chat_model

    kwargs: dict[str, Any] = {}
    if settings.openai_base_url:
        kwargs["base_url"] = settings.openai_base_url
    if settings.openai_api_key:
        kwargs["api_key"] = settings.openai_api_key
    try:
        return init_chat_model(label, **kwargs), label
    # Each provider refuses in its own type (ValueError for an unknown one, ImportError
    # for a missing integration package, openai.OpenAIError for a missing key): all
    # are the setting's fault, and the user needs the reason, not the traceback.
    except Exception as error:
        reason = str(error).split("\n\n", 1)[0]  # the list of every provider follows
        raise SettingsError(f"Cannot use the model {label!r} (MEMAGENT_MODEL): {reason}") from error
