"""The chat graph: a tool-calling model loop with memory tools.

``make_graph`` builds it for any LangChain chat model that supports ``bind_tools``;
``graph`` is the same graph compiled without a checkpointer, for ``langgraph dev``
(the server supplies memagent's Postgres saver from ``langgraph.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode

from agent.model import load_model
from agent.operations import chat_graph_builder
from agent.prompts import SYSTEM_PROMPT
from agent.state import State
from tools.memory import memory_tools


def make_graph(
    model: BaseChatModel,
    *,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    system_prompt: str = SYSTEM_PROMPT,
    extra_tools: Sequence[BaseTool] = (),
    **compile_options: Any,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Builds and compiles the chat graph.

    Args:
        model: Any chat model with ``bind_tools``.
        checkpointer: Where turns persist; ``None`` for a server that brings its own.
        system_prompt: Put before the conversation on every model call.
        extra_tools: Tools to offer beside the memory tools.
        **compile_options: Passed to ``StateGraph.compile`` (``store``,
            ``interrupt_before``, ``name``, ...).
    """
    tools = [*memory_tools(), *extra_tools]
    bound = model.bind_tools(tools)

    async def agent(state: State, config: RunnableConfig) -> dict[str, Any]:
        response = await bound.ainvoke([SystemMessage(system_prompt), *state["messages"]], config)
        return {"messages": [response]}

    compile_options.setdefault("name", "memagent")
    builder = chat_graph_builder(agent, ToolNode(tools))
    return builder.compile(checkpointer=checkpointer, **compile_options)


graph = make_graph(load_model()[0])
