"""The serializer's refusal rules: what may be stored, what is refused, what the refusal says.

memagent's serializer writes only values it will read back as themselves: on load,
langgraph turns a type outside its safe list (and the user's allow-list) into a plain
dict, so a user's own dataclass would silently change type at the next turn. These
tests call the serializer directly, without a database (the fast tier); the same rules
through a graph on PostgreSQL, and the allow-list setting, are in ``test_routes.py``;
crafted rows naming a callable are in ``test_hostile_input.py``.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import ipaddress
import pathlib
import uuid
import zoneinfo
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.types import Interrupt, Send
from pydantic import BaseModel

from agent.errors import MemagentError, UnstorableValueError
from agent.store.messages import RANGES_TYPE, RangeList, encode_ranges
from agent.store.serde import StrictSerializer, strict_serializer

PIN = f"{__name__}.Pin"
CARD = f"{__name__}.Card"


@dataclass
class Pin:
    """A user's own dataclass: not a type langgraph knows to be safe."""

    label: str
    number: int


class Card(BaseModel):
    """A user's own pydantic model."""

    holder: str


class Shade(enum.Enum):
    """A user's own enum."""

    DARK = "dark"


class Stamp(datetime.datetime):
    """A user's own datetime subclass: stored by a method call, not a constructor."""


def round_trip(serializer: StrictSerializer, value: Any) -> Any:
    return serializer.loads_typed(serializer.dumps_typed(value))


# --- refused -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (Pin("door", 4711), PIN),
        (Card(holder="Ada"), CARD),
        (Shade.DARK, f"{__name__}.Shade"),
        (Stamp(2024, 5, 1, tzinfo=datetime.UTC), f"{__name__}.Stamp"),
    ],
    ids=["dataclass", "pydantic-model", "enum", "datetime-subclass"],
)
def test_a_users_own_type_is_refused_by_name(value: Any, named: str) -> None:
    with pytest.raises(UnstorableValueError) as refused:
        strict_serializer().dumps_typed(value)
    assert refused.value.type_name == named
    assert named in str(refused.value)


@pytest.mark.parametrize(
    "value",
    [
        [1, "two", Pin("door", 4711)],
        {"settings": {"pins": [Pin("door", 4711)]}},
        {"pin": Pin("door", 4711), "note": "the rest is fine"},
        [{"deep": [{"deeper": (Card(holder="Ada"),)}]}],
        {datetime.date(2024, 5, 1): {"cards": {Card(holder="Ada").holder: Card(holder="Ada")}}},
        collections.deque([Pin("door", 4711)]),
        {Shade.DARK},
        Send("node", {"arg": Pin("door", 4711)}),
        Interrupt(value=Card(holder="Ada")),
    ],
    ids=[
        "in-a-list",
        "in-nested-dicts",
        "beside-safe-values",
        "in-a-tuple-deep-down",
        "under-a-date-key",
        "in-a-deque",
        "in-a-set",
        "in-a-send",
        "in-an-interrupt",
    ],
)
def test_an_unrevivable_value_is_found_wherever_it_is_nested(value: Any) -> None:
    with pytest.raises(UnstorableValueError, match=rf"{__name__}\.(Pin|Card|Shade)"):
        strict_serializer().dumps_typed(value)


def test_of_several_unrevivable_values_the_first_is_named() -> None:
    with pytest.raises(UnstorableValueError) as refused:
        strict_serializer().dumps_typed([{"a": Pin("door", 1)}, Card(holder="Ada")])
    assert refused.value.type_name == PIN


@pytest.mark.xfail(
    strict=True,
    reason="a dataclass inside a message's fields is flattened to a dict while the message "
    "is encoded (pydantic's model_dump), so the encoding names no type to refuse; it "
    "loads back as a dict",
)
def test_a_users_type_inside_a_message_is_refused_or_comes_back_as_itself() -> None:
    message = AIMessage("noted", id="a1", additional_kwargs={"pin": Pin("door", 4711)})
    try:
        loaded = round_trip(strict_serializer(), message)
    except UnstorableValueError:
        return
    assert loaded.additional_kwargs["pin"] == Pin("door", 4711)


# --- what the refusal says ----------------------------------------------------------


def test_the_refusal_tells_people_what_and_how_to_allow_it_in_one_line() -> None:
    with pytest.raises(UnstorableValueError) as refused:
        strict_serializer().dumps_typed({"pin": Pin("door", 4711)})
    error = refused.value
    text = str(error)
    assert "\n" not in text
    assert f"A state value of type {PIN} cannot be saved" in text
    assert "would load back as a plain dict" in text  # why: what would have gone wrong
    assert f"MEMAGENT_SERDE_ALLOW={PIN}" in text  # the fix, ready to copy
    # Callers catch memagent's errors as one family, and a TypeError as Python's own.
    assert isinstance(error, MemagentError) and isinstance(error, TypeError)


def test_the_model_is_told_which_type_cannot_be_saved() -> None:
    error = UnstorableValueError(PIN)
    told = error.for_model()
    assert "\n" not in told
    assert PIN in told and "cannot be saved" in told


# --- stored and read back as themselves ------------------------------------------------

SAFE_VALUES = {
    "human-message": HumanMessage("hello", id="h1"),
    "ai-message-with-tool-calls": AIMessage(
        "",
        id="a1",
        tool_calls=[{"name": "lookup", "args": {"q": "x"}, "id": "c1", "type": "tool_call"}],
    ),
    "tool-message": ToolMessage("42", tool_call_id="c1", id="t1"),
    "system-message": SystemMessage("be brief", id="s1"),
    "document": Document("text", metadata={"source": "a"}),
    "aware-datetime": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC),
    "naive-datetime": datetime.datetime(2024, 5, 1, 12, 30),
    "zoned-datetime": datetime.datetime(2024, 5, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin")),
    "date": datetime.date(2024, 5, 1),
    "time": datetime.time(12, 30),
    "timedelta": datetime.timedelta(days=1, seconds=5),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": decimal.Decimal("12.50"),
    "set": {1, 2, 3},
    "frozenset": frozenset({"a"}),
    "deque": collections.deque([1, 2]),
    "path": pathlib.Path("notes/today.txt"),
    "ip-address": ipaddress.IPv4Address("192.0.2.1"),
    "send": Send("node", {"arg": 1}),
    "interrupt": Interrupt(value={"question": "erase it?"}),
    "bytes": b"\x00\x01",
    "none": None,
    "plain-data": {"text": "hi", "n": 1, "x": 1.5, "ok": True, "items": [1, "two", None]},
    "messages-in-a-list": [HumanMessage("one", id="h1"), AIMessage("two", id="a1")],
}


@pytest.mark.parametrize("value", SAFE_VALUES.values(), ids=SAFE_VALUES.keys())
def test_langgraphs_safe_types_are_stored_and_come_back_as_themselves(value: Any) -> None:
    loaded = round_trip(strict_serializer(), value)
    assert type(loaded) is type(value)
    assert loaded == value


def test_an_allowed_type_is_stored_and_comes_back_as_itself() -> None:
    serializer = strict_serializer([(__name__, "Pin")])
    state = {"pin": Pin("door", 4711), "pins": [Pin("gate", 1)], "at": datetime.date(2024, 5, 1)}

    loaded = round_trip(serializer, state)

    assert type(loaded["pin"]) is Pin and type(loaded["pins"][0]) is Pin
    assert loaded == state
    assert serializer.allowed_types == {(__name__, "Pin")}


def test_allowing_one_type_lets_no_other_through() -> None:
    serializer = strict_serializer([(__name__, "Pin")])
    with pytest.raises(UnstorableValueError) as refused:
        serializer.dumps_typed({"pin": Pin("door", 1), "card": Card(holder="Ada")})
    assert refused.value.type_name == CARD
    with pytest.raises(UnstorableValueError):  # the allow-list is per serializer
        strict_serializer().dumps_typed(Pin("door", 1))


def test_nothing_is_ever_pickled() -> None:
    """A class object has no msgpack form; langgraph's pickle fallback would pickle it."""
    with pytest.raises(TypeError, match="not msgpack serializable"):
        strict_serializer().dumps_typed({"kind": Pin})


def test_a_range_list_row_is_read_as_its_message_numbers() -> None:
    """langgraph's other read path meets memagent's range lists; it gets the numbers."""
    loaded = strict_serializer().loads_typed((RANGES_TYPE, encode_ranges([4, 5, 6, 9])))
    assert loaded == RangeList([4, 5, 6, 9])
