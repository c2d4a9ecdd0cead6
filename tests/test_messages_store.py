"""The message-once storage's pure parts: range lists, the message cache, copies, numbers.

No database: these run in the fast tier (``-m "not db"``). What they pin down is what
every reader of a stored thread relies on (docs/storage.md): a range list stands for
exactly its message numbers, in order, and reads the same from SQL; the cache stays
within its bound and finds a row only for a message equal to it; a copy handed out
of the cache cannot change the cache. The same code on PostgreSQL is in
``test_storage.py`` and ``test_differential.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from agent.store.messages import (
    MessageCache,
    SeqReservation,
    decode_ranges,
    detached,
    encode_ranges,
    storable_messages,
)

# --- range lists ------------------------------------------------------------------


@pytest.mark.parametrize(
    "seqs",
    [
        [],
        [7],
        list(range(1, 1001)),
        [1, 2, 3, 9, 10, 42],
        [5, 6, 1, 2],  # a rewind's ranges after a forget's: order is the list's, not sorted
        [3, 2, 1],
        [4, 4, 5],  # a message listed twice
        [2**40, 2**40 + 1],  # numbers past 32 bits: SQL reads them as bigint
    ],
    ids=["empty", "one", "a-thousand-in-a-row", "gaps", "reordered", "descending", "twice", "big"],
)
def test_a_range_list_stands_for_exactly_its_numbers_in_order(seqs: list[int]) -> None:
    assert decode_ranges(encode_ranges(seqs)) == seqs


def test_consecutive_numbers_collapse_into_one_range() -> None:
    assert json.loads(encode_ranges(range(1, 1001))) == [[1, 1000]]
    assert json.loads(encode_ranges([1, 2, 3, 9, 10, 42])) == [[1, 3], [9, 10], [42, 42]]


def test_only_ascending_neighbours_share_a_range() -> None:
    assert json.loads(encode_ranges([3, 2, 1])) == [[3, 3], [2, 2], [1, 1]]
    assert json.loads(encode_ranges([4, 4, 5])) == [[4, 4], [4, 5]]


def sql_referenced(blob: bytes, candidates: range) -> set[int]:
    """The numbers ``DELETE_UNREFERENCED_MESSAGES`` (agent/store/sql.py) keeps for ``blob``.

    That statement reads a blob as ``convert_from(blob, 'UTF8')::jsonb``, takes each
    element of the array as a range and keeps a row when ``seq BETWEEN range ->> 0 AND
    range ->> 1`` (both cast to bigint); this is the same reading, step by step.
    """
    ranges = json.loads(blob.decode("utf-8", errors="strict"))
    assert isinstance(ranges, list)
    kept = set()
    for element in ranges:
        assert isinstance(element, list) and len(element) == 2  # ->> 0 and ->> 1, nothing else
        assert all(type(bound) is int for bound in element)  # "5.0" or "x" fails ::bigint
        first, last = element
        assert first <= last  # BETWEEN an empty range would keep nothing of it
        kept |= {seq for seq in candidates if first <= seq <= last}
    return kept


def test_the_stored_form_is_what_the_sql_cleanup_reads() -> None:
    seqs = [5, 6, 1, 2, 9]
    blob = encode_ranges(seqs)
    assert blob == b"[[5,6],[1,2],[9,9]]"  # compact JSON, ASCII
    # Every row the list refers to is kept, and no other: 3, 4, 7 and 8 may be deleted.
    assert sql_referenced(blob, range(0, 12)) == set(seqs)
    assert sql_referenced(encode_ranges([]), range(0, 12)) == set()


# --- which values are stored as range lists -----------------------------------------


def test_a_list_of_messages_with_ids_is_stored_as_a_range_list() -> None:
    assert storable_messages([HumanMessage("hi", id="h1"), AIMessage("hello", id="a1")])
    assert storable_messages([])


@pytest.mark.parametrize(
    "value",
    [
        [HumanMessage("no id yet")],
        [HumanMessage("hi", id="h1"), {"role": "user", "content": "a dict"}],
        (HumanMessage("hi", id="h1"),),
        "messages",
        None,
    ],
    ids=["message-without-id", "a-dict-among-them", "tuple", "text", "none"],
)
def test_anything_else_in_a_messages_channel_is_stored_as_langgraph_stores_it(
    value: Any,
) -> None:
    assert not storable_messages(value)


# --- the cache --------------------------------------------------------------------


def test_the_cache_keeps_at_most_its_bound_dropping_the_least_recently_used() -> None:
    cache = MessageCache(max_messages=3)
    for seq in (1, 2, 3):
        cache.add("t", seq, HumanMessage(f"m{seq}", id=f"m{seq}"))
    assert cache.get("t", 1) is not None  # a use: 2 is now the oldest
    cache.add("t", 4, HumanMessage("m4", id="m4"))

    assert [seq for seq in (1, 2, 3, 4) if cache.get("t", seq) is not None] == [1, 3, 4]
    # Its id index forgot the dropped row too: nothing points at a row no longer cached.
    assert cache.find("t", HumanMessage("m2", id="m2")) is None
    assert cache.find("t", HumanMessage("m3", id="m3")) == 3


def test_adding_a_cached_row_again_keeps_the_first_message_and_counts_as_a_use() -> None:
    cache = MessageCache(max_messages=2)
    cache.add("t", 1, HumanMessage("first", id="m1"))
    cache.add("t", 2, HumanMessage("second", id="m2"))
    cache.add("t", 1, HumanMessage("other", id="m1"))  # a row's content never changes
    cache.add("t", 3, HumanMessage("third", id="m3"))

    kept = cache.get("t", 1)
    assert kept is not None and kept.text == "first"
    assert cache.get("t", 2) is None


def test_the_cache_finds_a_row_by_id_and_equal_content_not_by_identity() -> None:
    def reply(text: str = "hello", id: str = "a1", query: str = "x") -> AIMessage:
        return AIMessage(text, id=id, tool_calls=[tool_call(query)])

    cache = MessageCache()
    cache.add("t", 5, reply())

    assert cache.find("t", reply()) == 5  # another object, equal to the cached one
    assert cache.find("t", reply(text="hello!")) is None
    assert cache.find("t", reply(query="y")) is None
    assert cache.find("t", reply(id="a2")) is None
    assert cache.find("t", HumanMessage("hello", id="a1")) is None  # another type
    assert cache.find("other thread", reply()) is None


def test_a_message_changed_in_place_after_it_was_read_is_not_found() -> None:
    """A node that edits a message it read must get a new row, not the old one's number."""
    cache = MessageCache()
    cache.add("t", 1, AIMessage("reply", id="a1"))
    read = cached_copy(cache, "t", 1)
    assert cache.find("t", read) == 1  # unchanged: the same row

    read.additional_kwargs["edited"] = True
    assert cache.find("t", read) is None


def test_a_message_replaced_under_its_id_finds_the_row_of_its_own_version() -> None:
    cache = MessageCache()
    cache.add("t", 1, HumanMessage("my address is 1 Main St", id="h1"))
    cache.add("t", 7, HumanMessage("my address is [removed]", id="h1"))  # a redact's new row

    assert cache.find("t", HumanMessage("my address is [removed]", id="h1")) == 7
    assert cache.find("t", HumanMessage("my address is 1 Main St", id="h1")) == 1
    cache.forget_rows("t", [1])
    assert cache.get("t", 1) is None
    assert cache.find("t", HumanMessage("my address is 1 Main St", id="h1")) is None
    assert cache.find("t", HumanMessage("my address is [removed]", id="h1")) == 7


def test_forgetting_rows_leaves_other_threads_alone() -> None:
    cache = MessageCache()
    cache.add("t", 1, HumanMessage("mine", id="h1"))
    cache.add("u", 1, HumanMessage("theirs", id="h1"))
    cache.forget_rows("t", [1, 2])  # 2 was never cached: nothing to do
    assert cache.get("t", 1) is None
    assert cache.find("u", HumanMessage("theirs", id="h1")) == 1


# --- copies out of the cache ---------------------------------------------------------


def tool_call(value: str) -> dict[str, Any]:
    return {"name": "lookup", "args": {"query": value, "filters": [value]}, "id": "c1"}


def cached_copy(cache: MessageCache, thread_id: str, seq: int) -> BaseMessage:
    message = cache.get(thread_id, seq)
    assert message is not None
    return detached(message)


def rich_message() -> AIMessage:
    """A message with every kind of nested container a provider or a node may fill."""
    return AIMessage(
        content=[{"type": "text", "text": "hello"}, {"type": "image", "url": "u", "meta": [1]}],
        id="a1",
        additional_kwargs={"refusal": None, "nested": {"list": [1, {"deep": "x"}]}},
        response_metadata={"model_name": "m", "logprobs": {"content": [{"token": "a"}]}},
        tool_calls=[tool_call("x")],
        custom={"extra": ["field"]},  # pydantic extra: BaseMessage allows them
    )


def snapshot(message: BaseMessage) -> str:
    return message.model_dump_json()


def test_a_detached_copy_is_an_equal_message_of_the_same_type() -> None:
    original = rich_message()
    copied = detached(original)
    assert copied is not original
    assert type(copied) is AIMessage
    assert copied == original
    assert snapshot(copied) == snapshot(original)
    assert copied.model_fields_set == original.model_fields_set
    assert copied.custom == {"extra": ["field"]}  # type: ignore[attr-defined]


MUTATIONS = {
    "content-block": lambda m: m.content[0].__setitem__("text", "changed"),
    "content-list": lambda m: m.content.append({"type": "text", "text": "more"}),
    "additional-kwargs": lambda m: m.additional_kwargs["nested"]["list"][1].update(deep="y"),
    "response-metadata": lambda m: m.response_metadata["logprobs"]["content"].clear(),
    "tool-call-args": lambda m: m.tool_calls[0]["args"]["filters"].append("z"),
    "tool-calls": lambda m: m.tool_calls.clear(),
    "extra-field": lambda m: m.custom["extra"].append("more"),
    "attribute": lambda m: setattr(m, "content", "replaced"),
    "fields-set": lambda m: m.model_fields_set.add("usage_metadata"),
}


@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_changing_a_detached_copy_never_changes_the_cached_message(mutate: Any) -> None:
    cache = MessageCache()
    cache.add("t", 1, rich_message())
    before = snapshot(rich_message())

    copied = cached_copy(cache, "t", 1)
    mutate(copied)

    cached = cache.get("t", 1)
    assert cached is not None
    assert snapshot(cached) == before
    assert cached.model_fields_set == rich_message().model_fields_set
    assert snapshot(cached_copy(cache, "t", 1)) == before  # the next reader sees it as stored


def test_a_detached_tool_message_keeps_its_fields() -> None:
    original = ToolMessage("42", tool_call_id="c1", id="t1", artifact={"rows": [1, 2]})
    copied = detached(original)
    assert copied == original
    assert isinstance(copied, ToolMessage)
    copied.artifact["rows"].append(3)
    assert original.artifact == {"rows": [1, 2]}


# --- message numbers --------------------------------------------------------------


def test_a_reservation_hands_out_its_numbers_once_in_order() -> None:
    reserved = SeqReservation(next_seq=65, last_seq=128)
    assert reserved.left == 64
    assert reserved.take(3) == [65, 66, 67]
    assert reserved.take(0) == []
    assert reserved.take(2) == [68, 69]
    assert reserved.left == 59
    assert reserved.take(59) == list(range(70, 129))
    assert reserved.left == 0
