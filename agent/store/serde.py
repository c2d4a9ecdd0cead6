"""How memagent serialises state: langgraph's serializer, strict about what it writes.

Also the one place that reads memagent's range lists back (``RangeList``), so a
``messages`` blob of either kind decodes through the same serializer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ormsgpack
from langgraph.checkpoint.serde._msgpack import SAFE_MSGPACK_METHODS, SAFE_MSGPACK_TYPES
from langgraph.checkpoint.serde.jsonplus import (
    EXT_DELTA_SNAPSHOT,
    EXT_METHOD_SINGLE_ARG,
    EXT_NUMPY_ARRAY,
    JsonPlusSerializer,
)

from agent.errors import UnstorableValueError
from agent.store.messages import RANGES_TYPE, RangeList, decode_ranges


class StoreSerializer(JsonPlusSerializer):
    """langgraph's serializer, which also reads memagent's range lists (as ``RangeList``)."""

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        if data[0] == RANGES_TYPE:
            return RangeList(decode_ranges(data[1]))
        return super().loads_typed(data)


class StrictSerializer(StoreSerializer):
    """langgraph's serializer, refusing to write a value it would not read back as itself.

    On load, a type outside langgraph's safe list and the allow-list comes back as a
    plain dict (with only a log line), so a user's own dataclass in the state would
    silently change type at the next turn. Every value is checked as it is written
    instead: its encoding is walked (no object is built, about an eighth of the
    encoding's cost) and a type that would not be revived is refused before anything
    is stored. langgraph's safe lists are private (``_msgpack``); the tests of this
    check fail if they change shape.
    """

    def __init__(self, allowed: Iterable[tuple[str, str]] = ()) -> None:
        self.allowed_types = frozenset(allowed)
        """``(module, class)`` of the user's own types to revive besides the safe ones."""
        self._revivable = frozenset(SAFE_MSGPACK_TYPES) | self.allowed_types
        super().__init__(
            pickle_fallback=False, allowed_msgpack_modules=list(self.allowed_types) or None
        )

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        typed = super().dumps_typed(obj)
        if typed[0] == "msgpack":
            unrevivable = self._unrevivable_types(typed[1])
            if unrevivable:
                raise UnstorableValueError(unrevivable[0])
        return typed

    def _unrevivable_types(self, encoded: bytes) -> list[str]:
        """``module.Class`` of every value in ``encoded`` that loading would leave a dict.

        (An ext hook that raised would be reported by ormsgpack as a bare ValueError,
        so the hook collects instead.)
        """
        found: list[str] = []

        def check(code: int, data: bytes) -> None:
            value = ormsgpack.unpackb(data, ext_hook=check, option=_UNPACK_OPTION)
            if code in _EXT_WITHOUT_TYPE:
                return
            module, name = value[0], value[1]
            if code == EXT_METHOD_SINGLE_ARG:
                revivable = (module, name, value[3]) in SAFE_MSGPACK_METHODS
            else:
                revivable = (module, name) in self._revivable
            if not revivable:
                found.append(f"{module}.{name}")

        ormsgpack.unpackb(encoded, ext_hook=check, option=_UNPACK_OPTION)
        return found


_UNPACK_OPTION = ormsgpack.OPT_NON_STR_KEYS
_EXT_WITHOUT_TYPE = frozenset({EXT_DELTA_SNAPSHOT, EXT_NUMPY_ARRAY})


def strict_serializer(allowed: Iterable[tuple[str, str]] = ()) -> StrictSerializer:
    """A serializer that rebuilds only types langgraph and LangChain know to be safe.

    With no allow-list, a crafted row could name any importable callable and have it
    run on load; with an empty one, only langgraph's built-in safe types (messages,
    documents, datetimes, ...) are revived, and a value of any other type is refused
    when written (``StrictSerializer``). ``allowed`` adds the user's own trusted types
    (``Settings.serde_allow``).
    """
    return StrictSerializer(allowed)
