"""The replacement rules of agent/redaction.py, without a database."""

from __future__ import annotations

from agent.prompts import REMOVED_MARKER
from agent.redaction import quote_pattern, replaced_spans, scrub


def test_each_marker_gives_back_the_text_it_replaced() -> None:
    before = "I live at 12 Main St, and 12 Main St is near Elm Rd."
    after = f"I live at {REMOVED_MARKER}, and {REMOVED_MARKER} is near Elm Rd."
    assert replaced_spans(before, after) == ["12 Main St", "12 Main St"]


def test_a_text_that_is_not_a_marked_version_gives_nothing_back() -> None:
    assert replaced_spans("hello there", "hello there") == []
    assert replaced_spans("hello there", f"goodbye {REMOVED_MARKER}") == []


def test_scrub_replaces_in_any_case_and_returns_the_same_object_when_nothing_matches() -> None:
    pattern = quote_pattern(["main st"])
    value = {"text": "12 MAIN ST", "calls": [{"args": {"street": "Main St"}}]}
    assert scrub(value, pattern) == {
        "text": f"12 {REMOVED_MARKER}",
        "calls": [{"args": {"street": REMOVED_MARKER}}],
    }
    untouched = {"text": "elsewhere"}
    assert scrub(untouched, pattern) is untouched
