"""Replacing quoted details by a visible marker, in messages and in stored values.

One set of rules for both ways of forgetting a detail: ``forget_details`` (soft, new
message objects in the head) and ``redact`` (hard, every stored copy). A quote is
matched case-insensitively wherever a string can hold it: message text and content
blocks, tool-call arguments, tool results, and any string nested in a stored value.
Stored msgpack values are rewritten at the msgpack level, extension payloads
included, so a value keeps its exact types even where the strict serializer would
not revive them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import ormsgpack
from langchain_core.messages import BaseMessage

from agent.prompts import REMOVED_MARKER

_MSGPACK_OPTIONS = ormsgpack.OPT_NON_STR_KEYS


def quote_pattern(quotes: Sequence[str]) -> re.Pattern[str]:
    """One case-insensitive pattern for all quotes, longest first so none is cut short."""
    ordered = sorted(set(quotes), key=len, reverse=True)
    return re.compile("|".join(re.escape(quote) for quote in ordered), re.IGNORECASE)


def candidate_patterns(quotes: Sequence[str]) -> tuple[list[str], list[str]]:
    """``LIKE`` patterns that let PostgreSQL skip the rows that cannot hold a quote.

    Returns patterns for ``lower(encode(blob, 'escape'))`` (msgpack stores strings as
    UTF-8, and the escape form leaves ASCII as it is, doubling backslashes) and for
    ``lower(jsonb::text)`` (JSON escapes quotes and backslashes). For a quote with
    non-ASCII characters PostgreSQL's ``lower`` or the escape form could miss a case
    variant the Python match would find, so then every row is a candidate (``%``).
    Python's match on the candidates decides what changes.
    """
    if not all(quote.isascii() for quote in quotes):
        return ["%"], ["%"]

    def like(text: str) -> str:
        escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"%{escaped}%"

    binary = [like(quote.replace("\\", "\\\\")) for quote in quotes]
    text = [like(json.dumps(quote)[1:-1]) for quote in quotes]
    return binary, text


def replaced_spans(before: str, after: str) -> list[str]:
    """The pieces of ``before`` that the markers in ``after`` stand for.

    ``after`` is ``before`` with some spans replaced by the marker and the rest
    unchanged, so the text between markers anchors each span; ``[]`` when ``after``
    is not such a version of ``before``.
    """
    fixed = after.split(REMOVED_MARKER)
    if len(fixed) < 2:
        return []
    spans = "(.+?)".join(re.escape(part) for part in fixed)
    match = re.fullmatch(spans, before, re.DOTALL)
    return [span for span in match.groups() if span.strip()] if match else []


def scrub(value: Any, pattern: re.Pattern[str]) -> Any:
    """``value`` with every match in every nested string replaced; the same object if none.

    Strings, dicts (keys too), lists, tuples and undecoded msgpack extensions are
    walked; other objects are left as they are (messages go through ``scrub_message``).
    """
    if isinstance(value, str):
        return pattern.sub(REMOVED_MARKER, value) if pattern.search(value) else value
    if isinstance(value, dict):
        items = [(scrub(k, pattern), scrub(v, pattern)) for k, v in value.items()]
        old_items = list(value.items())
        if all(
            new is old
            for pair, old_pair in zip(items, old_items, strict=True)
            for new, old in zip(pair, old_pair, strict=True)
        ):
            return value
        return dict(items)
    if isinstance(value, list | tuple):
        scrubbed = [scrub(item, pattern) for item in value]
        if all(new is old for new, old in zip(scrubbed, value, strict=True)):
            return value
        return tuple(scrubbed) if isinstance(value, tuple) else scrubbed
    if isinstance(value, _Ext):
        inner = scrub(value.value, pattern)
        return value if inner is value.value else _Ext(value.code, inner)
    return value


def scrub_message(message: BaseMessage, pattern: re.Pattern[str]) -> BaseMessage | None:
    """A copy of ``message`` (same id) with the quotes replaced, or ``None`` if none occur.

    Every field is scrubbed (content, tool calls and their arguments, the provider's
    raw ``additional_kwargs``, a tool result's artifact, ...) except the id and type,
    so ``add_messages`` replaces the message in place.
    """
    update = {}
    for name in type(message).model_fields:
        if name in ("id", "type"):
            continue
        old = getattr(message, name)
        new = scrub(old, pattern)
        if new is not old:
            update[name] = new
    return message.model_copy(update=update) if update else None


class _Ext:
    """A msgpack extension value, kept with its payload decoded so it can be scrubbed."""

    __slots__ = ("code", "value")

    def __init__(self, code: int, value: Any) -> None:
        self.code = code
        self.value = value


def _unpack_ext(code: int, data: bytes) -> _Ext:
    return _Ext(code, ormsgpack.unpackb(data, ext_hook=_unpack_ext, option=_MSGPACK_OPTIONS))


def _pack_ext(value: Any) -> ormsgpack.Ext:
    if isinstance(value, _Ext):
        return ormsgpack.Ext(value.code, _pack(value.value))
    raise TypeError(f"cannot repack {type(value).__name__}")


def _pack(value: Any) -> bytes:
    return ormsgpack.packb(value, default=_pack_ext, option=_MSGPACK_OPTIONS)


def scrub_msgpack(blob: bytes, pattern: re.Pattern[str]) -> bytes | None:
    """A msgpack blob (as langgraph's serializer writes them) with the quotes replaced.

    Returns ``None`` when no string in it matches. msgpack stores strings as plain
    UTF-8, so a blob whose decoded bytes hold no match is skipped without unpacking.
    """
    if not pattern.search(blob.decode("utf-8", "ignore")):
        return None
    value = ormsgpack.unpackb(blob, ext_hook=_unpack_ext, option=_MSGPACK_OPTIONS)
    scrubbed = scrub(value, pattern)
    return None if scrubbed is value else _pack(scrubbed)


def scrub_typed(type_: str, blob: bytes | None, pattern: re.Pattern[str]) -> bytes | None:
    """A serialised value of langgraph's ``(type, bytes)`` form, scrubbed; ``None`` if unchanged.

    msgpack and JSON values are rewritten string by string; raw bytes values (which
    memagent never stores, but a user's graph may) are matched as UTF-8 text.
    """
    if blob is None:
        return None
    if type_ == "msgpack":
        return scrub_msgpack(blob, pattern)
    text = blob.decode("utf-8", "ignore")
    if not pattern.search(text):
        return None
    if type_ == "json":
        return json.dumps(scrub(json.loads(blob), pattern)).encode()
    if type_ in ("bytes", "bytearray", "str"):
        return pattern.sub(REMOVED_MARKER, blob.decode("utf-8", "surrogateescape")).encode(
            "utf-8", "surrogateescape"
        )
    return None
