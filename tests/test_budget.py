"""The context budget without a database: counting a call, choosing the budget, fitting.

docs/SPEC.md, "Context budget and compaction": the budget bounds the whole call, counted
at least as conservatively as langchain's ``count_tokens_approximately`` and more so for
dense text (a Chinese sentence is about a token per character, not per four).
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.utils import count_tokens_approximately
from langchain_openai import ChatOpenAI

from agent.errors import SettingsError
from agent.memory import budget
from agent.memory.budget import (
    DEFAULT_CONTEXT_TOKENS,
    OFFLINE_CONTEXT_TOKENS,
    Tool,
    call_counter,
    count_call_tokens,
    fit_to_budget,
    message_tokens,
    resolve_context_tokens,
)
from agent.model import OfflineChatModel
from agent.prompts import SYSTEM_PROMPT
from agent.settings import Settings
from tests.fakes import check_provider_valid
from tools.memory import memory_tools

TOOLS: list[Tool] = [*memory_tools()]
CHINESE = "我叫李雷，住在北京市海淀区中关村大街一号。请记住我的电话号码是一三八零零一三八零零零。"
CODE = 'def f(x: dict[str, int]) -> int:\n    return {"a": x["b"] + 1}["a"]  # (x)\n'


def tool_turn(n: int, text: str = "look it up") -> list[BaseMessage]:
    """A user turn in which the model calls a tool and answers from its result."""
    return [
        HumanMessage(f"{text} {n}", id=f"h{n}"),
        AIMessage("", id=f"c{n}", tool_calls=[{"name": "lookup", "args": {"q": n}, "id": f"t{n}"}]),
        ToolMessage(f"result {n}", tool_call_id=f"t{n}", id=f"r{n}"),
        AIMessage(f"the answer is {n}", id=f"a{n}"),
    ]


MIXED: dict[str, list[BaseMessage]] = {
    "english": [HumanMessage("my name is Ada, what's yours?"), AIMessage("I am memagent.")],
    "chinese": [HumanMessage(CHINESE), AIMessage("好的，我记住了。")],
    "japanese and korean": [HumanMessage("東京に住んでいます。"), AIMessage("서울에 살아요.")],
    "code and json": [HumanMessage(CODE), AIMessage('{"ok": [1, 2, 3], "why": null}')],
    "emoji and cyrillic": [HumanMessage("Привет 👋🏽 мир 🌍"), AIMessage("¡Olá, café!")],
    "tool calls": tool_turn(1),
    "content blocks": [
        HumanMessage(
            content=[
                {"type": "text", "text": "what is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 999}},
            ]
        ),
        AIMessage("a cat"),
    ],
}


@pytest.mark.parametrize("name", MIXED)
def test_a_call_is_never_counted_below_langchains_estimate(name: str) -> None:
    messages = [SystemMessage(SYSTEM_PROMPT), *MIXED[name]]
    assert count_call_tokens(messages, TOOLS) >= count_tokens_approximately(messages, tools=TOOLS)
    for message in messages:
        assert message_tokens(message) >= count_tokens_approximately([message])


def test_the_system_prompt_and_the_tool_schemas_count() -> None:
    """langchain's summarisation middleware leaves these out and overflows (langchain #34664)."""
    talk: list[BaseMessage] = [HumanMessage("hello")]
    bare = count_call_tokens(talk)
    with_prompt = count_call_tokens([SystemMessage(SYSTEM_PROMPT), *talk])
    with_tools = count_call_tokens([SystemMessage(SYSTEM_PROMPT), *talk], memory_tools())
    assert bare < with_prompt < with_tools
    assert with_tools - with_prompt >= count_tokens_approximately([], tools=TOOLS)
    counter = call_counter(SYSTEM_PROMPT, memory_tools())
    assert counter(talk) == with_tools


def test_a_cjk_character_counts_at_least_one_token() -> None:
    for text in (CHINESE, "東京に住んでいますカタカナ", "서울에 살아요 한국어"):
        dense = sum(1 for ch in text if not ch.isascii())
        assert message_tokens(HumanMessage(text)) >= dense


def test_a_chinese_conversation_counts_far_denser_than_four_characters_a_token() -> None:
    talk = [m for _ in range(20) for m in (HumanMessage(CHINESE), AIMessage("好的，我记住了。"))]
    ours, approx = count_call_tokens(talk), count_tokens_approximately(talk)
    assert ours >= 2.5 * approx
    assert ours >= sum(len(m.text) for m in talk)


def test_code_counts_denser_than_prose_of_the_same_length() -> None:
    prose = HumanMessage("the quick brown fox jumps over the lazy dog " * 3)
    code = HumanMessage((CODE * 3)[: len(prose.text)])
    assert count_tokens_approximately([code]) == count_tokens_approximately([prose])
    assert message_tokens(code) > message_tokens(prose)


@pytest.mark.parametrize(
    "text",
    [CODE, "the quick brown fox, 12 jumps!", "", "\t\n\x00~{}|", "0123456789" * 7, CODE * 40],
)
def test_ascii_text_counts_exactly_as_the_per_script_rule(text: str) -> None:
    """The fast count of ASCII text is the same number as the general per-script one."""
    assert budget._ascii_tokens(text) == budget._script_tokens(text)
    assert budget.dense_text_tokens(text) == budget._script_tokens(text)


def test_a_message_changed_under_its_id_is_counted_anew() -> None:
    """Counts are kept per message text: a forget or redact that rewrites a message under
    the same id must not leave the longer text's count (or a shorter one) behind."""
    long = HumanMessage("word " * 400, id="same")
    short = HumanMessage("word", id="same")
    assert message_tokens(long) > message_tokens(short)
    assert message_tokens(HumanMessage("word " * 400, id="same")) == message_tokens(long)
    assert message_tokens(short) == max(
        count_tokens_approximately([short]), budget._count_message(short)
    )


# --- the budget -------------------------------------------------------------------------


def openai_model(**options: Any) -> ChatOpenAI:
    """A real provider's model with its real profile; never called, so no key is needed."""
    return ChatOpenAI(model="gpt-4o-mini", api_key="not-used", **options)  # type: ignore[arg-type]


def test_an_explicit_budget_wins_then_the_setting_then_the_model() -> None:
    model = openai_model()
    assert resolve_context_tokens(model, 5_000, 7_000) == 5_000
    assert resolve_context_tokens(model, None, 7_000) == 7_000
    assert resolve_context_tokens(OfflineChatModel(), None, 7_000) == 7_000


def test_the_models_profile_gives_the_budget_less_room_for_the_reply() -> None:
    model = openai_model()
    assert model.profile is not None
    window, reply = model.profile["max_input_tokens"], model.profile["max_output_tokens"]
    assert resolve_context_tokens(model, None, None) == window - reply
    assert resolve_context_tokens(openai_model(max_tokens=1_000), None, None) == window - 1_000


def test_a_reply_limit_larger_than_the_window_leaves_three_quarters_of_it() -> None:
    model = GenericFakeChatModel(
        messages=iter([]), profile={"max_input_tokens": 8_000, "max_output_tokens": 8_000}
    )
    assert resolve_context_tokens(model, None, None) == 6_000


def test_models_without_a_profile_and_the_offline_model_get_documented_defaults() -> None:
    assert resolve_context_tokens(GenericFakeChatModel(messages=iter([])), None, None) == (
        DEFAULT_CONTEXT_TOKENS
    )
    assert resolve_context_tokens(OfflineChatModel(), None, None) == OFFLINE_CONTEXT_TOKENS
    fixed = call_counter(SYSTEM_PROMPT, memory_tools())([])
    assert fixed < OFFLINE_CONTEXT_TOKENS / 2, "the demo budget must leave room to talk"


def test_a_budget_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="context_tokens must be a positive whole number"):
        resolve_context_tokens(OfflineChatModel(), 0, None)


def test_the_setting_is_read_and_checked() -> None:
    assert Settings.from_env({}).context_tokens is None
    assert Settings.from_env({"MEMAGENT_CONTEXT_TOKENS": " 12000 "}).context_tokens == 12_000
    for bad, problem in (("lots", "must be a whole number"), ("0", "must be at least 1")):
        with pytest.raises(SettingsError, match=f"MEMAGENT_CONTEXT_TOKENS {problem}"):
            Settings.from_env({"MEMAGENT_CONTEXT_TOKENS": bad})


# --- fitting a call when no summary could be made --------------------------------------


def conversation(turns: int) -> list[BaseMessage]:
    """A summary-less thread of tool-calling turns, then the message just sent."""
    messages = [m for n in range(turns) for m in tool_turn(n)]
    return [*messages, HumanMessage("and now?", id="current")]


def test_fitting_leaves_out_the_oldest_whole_turns_and_stays_valid() -> None:
    messages = conversation(30)
    count = call_counter(SYSTEM_PROMPT, memory_tools())
    budget = count(messages[-41:])  # the last ten turns and the message just sent
    sent, left_out = fit_to_budget(messages, budget=budget, count=count)
    assert count(sent) <= budget
    assert count_tokens_approximately(sent, tools=TOOLS) <= budget
    assert sent == messages[-41:] and left_out == len(messages) - 41
    check_provider_valid([SystemMessage(SYSTEM_PROMPT), *sent])
    assert isinstance(sent[0], HumanMessage)
    assert [m for m in sent if isinstance(m, HumanMessage)][-1].id == "current"


def test_fitting_never_cuts_the_current_turn_not_even_its_tool_calls() -> None:
    messages = [*conversation(5), *tool_turn(99)[1:]]  # the current turn is mid-way
    count = call_counter(SYSTEM_PROMPT)
    sent, left_out = fit_to_budget(messages, budget=1, count=count)
    assert sent == messages[-4:] and left_out == len(messages) - 4
    check_provider_valid(sent)


def test_a_call_that_fits_goes_out_whole() -> None:
    messages = conversation(3)
    count = call_counter(SYSTEM_PROMPT)
    assert fit_to_budget(messages, budget=count(messages), count=count) == (messages, 0)
