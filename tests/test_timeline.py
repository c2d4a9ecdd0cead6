"""The timeline as the model and ``/timeline`` read it, and where "undo" goes: no database.

The entries are built the way the savers build them (``entry_from``, from checkpoint
metadata), newest first, so these tests read like the threads they stand for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage

from agent.memory.entries import PREVIEW_CHARS, TimelineEntry, entry_from, preview_text
from agent.memory.timeline import CHAT_REWIND_HINT, render_timeline, undo_target
from agent.prompts import UNDO_HINT

TS = "2026-01-02T03:04:05+00:00"


def turn(checkpoint_id: str, parent_id: str | None, text: str) -> TimelineEntry:
    """A turn's rewind point: the ``input`` checkpoint holding the user's message."""
    entry = entry_from(checkpoint_id, parent_id, TS, {"source": "input"}, [HumanMessage(text)])
    assert entry is not None
    return entry


def forget(
    checkpoint_id: str, parent_id: str, *, reason: str | None = None, in_turn: bool = False
) -> TimelineEntry:
    metadata: dict[str, Any] = {"memory_cleared": True, "source": "loop" if in_turn else "update"}
    if reason:
        metadata["reason"] = reason
    entry = entry_from(checkpoint_id, parent_id, TS, metadata, None)
    assert entry is not None
    return entry


def rewind(checkpoint_id: str, target: str, *, in_turn: bool = False) -> TimelineEntry:
    metadata = {"rewound_to": target, "source": "loop" if in_turn else "update"}
    entry = entry_from(checkpoint_id, target, TS, metadata, None)
    assert entry is not None
    return entry


# --- building entries ------------------------------------------------------------------


def test_only_turns_forgets_and_rewinds_are_entries() -> None:
    assert entry_from("c", "p", TS, {"source": "loop", "step": 3}, None) is None
    assert turn("c", "p", "hello") == TimelineEntry(
        "c", "p", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "turn", preview="hello"
    )
    assert forget("f", "c", reason="shared screen").reason == "shared screen"
    assert forget("f", "c", in_turn=True).in_turn
    assert rewind("r", "c").rewound_to == "c"


def test_a_turn_preview_is_its_user_message_on_one_short_line() -> None:
    long = "word " * 40
    assert preview_text("two\nlines\t here") == "two lines here"
    assert preview_text(long) == long.strip()[: PREVIEW_CHARS - 1] + "…"
    assert len(preview_text(long)) == PREVIEW_CHARS
    api_input = [{"role": "system", "content": "x"}, {"role": "user", "content": "from the API"}]
    assert entry_from("c", None, None, {"source": "input"}, api_input) == TimelineEntry(
        "c", None, None, "turn", preview="from the API"
    )
    assert turn("c", None, "hi").to_json()["at"] == TS
    ai_only = entry_from("c", None, TS, {"source": "input"}, [AIMessage("no user")])
    assert ai_only is not None and ai_only.preview == ""


# --- rendering ---------------------------------------------------------------------------


def test_an_empty_timeline_says_so() -> None:
    assert render_timeline([]) == "This conversation has no earlier turns yet."
    assert render_timeline([], undo="c1") == "This conversation has no earlier turns yet."


def test_each_entry_is_one_line_with_its_id_time_and_what_happened() -> None:
    entries = [
        rewind("r1", "c1"),
        forget("f1", "c2", reason="shared screen"),
        forget("f0", "c2"),
        turn("c2", "c1", "my city is Paris"),
        turn("c1", None, "my name is Ada"),
    ]

    text = render_timeline(entries, undo="c1")

    assert text.splitlines() == [
        "Newest first. Pass an id to rewind_to to return to the point before that turn.",
        "r1  2026-01-02 03:04:05  [rewound to c1]",
        "f1  2026-01-02 03:04:05  [forgot (shared screen)]",
        "f0  2026-01-02 03:04:05  [forgot]",
        'c2  2026-01-02 03:04:05  before "my city is Paris"',
        'c1  2026-01-02 03:04:05  before "my name is Ada"',
        UNDO_HINT + "c1",
    ]


def test_an_unknown_time_is_a_question_mark_and_no_undo_adds_no_line() -> None:
    entry = TimelineEntry("c1", None, None, "turn", preview="hello")
    assert render_timeline([entry]).splitlines()[1:] == ['c1  ?  before "hello"']


# --- undo ------------------------------------------------------------------------------


def test_undo_of_a_turn_returns_to_its_rewind_point() -> None:
    assert undo_target([turn("c2", "c1", "second"), turn("c1", None, "first")]) == "c2"


def test_undo_of_a_forget_made_out_of_band_returns_to_the_checkpoint_before_it() -> None:
    entries = [forget("f1", "h2"), turn("c2", "c1", "second"), turn("c1", None, "first")]
    assert undo_target(entries) == "h2"


def test_undo_of_a_forget_the_model_made_undoes_the_turn_that_asked() -> None:
    entries = [forget("f1", "h2", in_turn=True), turn("c2", "c1", "forget this")]
    assert undo_target(entries) == "c2"


def test_undo_after_a_rewind_undoes_what_came_before_it() -> None:
    """The thread is already at the rewind's target; the change to undo is older."""
    entries = [rewind("r1", "c2"), turn("c2", "c1", "second"), turn("c1", None, "first")]
    assert undo_target(entries) == "c1"


def test_nothing_to_undo_on_an_empty_branch() -> None:
    assert undo_target([]) is None
    assert undo_target([rewind("r1", "c1"), turn("c1", None, "first")]) is None


def test_the_chat_is_told_its_own_command_and_the_model_its_tool() -> None:
    """A person in the chat has ``/rewind``, not the model's ``rewind_to`` tool."""
    entries = [turn("c1", None, "my name is Ada")]

    assert "rewind_to" in render_timeline(entries).splitlines()[0]
    chat_heading = render_timeline(entries, rewind_hint=CHAT_REWIND_HINT).splitlines()[0]
    assert chat_heading == "Newest first. /rewind ID returns to the point before that turn."
