"""Checks on everything a user, a caller or the model hands memagent, before any I/O.

Each check returns the value as it will be used, or raises a ``RequestError``
subclass that says what is wrong; nothing has been written when one fails.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from agent.errors import (
    InvalidCheckpointIdError,
    InvalidQuoteError,
    InvalidThreadIdError,
    InvalidUserError,
    MessageRejectedError,
    RetentionRequestError,
)
from agent.prompts import REMOVED_MARKER

MAX_THREAD_ID_CHARS = 256
MAX_MESSAGE_CHARS = 1_000_000
MAX_REASON_CHARS = 200
MAX_QUOTE_CHARS = 500
MAX_QUOTES = 20

_BAD_THREAD_CHARS = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


def check_thread_id(thread_id: object) -> str:
    """Refuses thread ids that could not be stored or would address nothing.

    Raises:
        InvalidThreadIdError: Empty, too long, or holding control characters
            (PostgreSQL refuses NUL in text) or lone surrogates (not encodable, so no
            query could even be sent).
    """
    if not isinstance(thread_id, str) or not thread_id.strip():
        raise InvalidThreadIdError("A thread id is required (got an empty one).")
    if len(thread_id) > MAX_THREAD_ID_CHARS:
        raise InvalidThreadIdError(f"Thread ids are at most {MAX_THREAD_ID_CHARS} characters.")
    if _BAD_THREAD_CHARS.search(thread_id):
        raise InvalidThreadIdError(
            "Thread ids cannot contain control characters such as NUL, or invalid Unicode."
        )
    return thread_id


def parse_checkpoint_id(raw: object) -> str:
    """Checks that ``raw`` looks like a checkpoint id and returns it normalised.

    Raises:
        InvalidCheckpointIdError: It is not a UUID.
    """
    text = raw.strip() if isinstance(raw, str) else ""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidCheckpointIdError(_CONTROL_CHARS.sub("?", text)[:60]) from None


def clean_reason(reason: str | None) -> str | None:
    """Makes a free-text reason (from the model or a user) safe to store as metadata.

    PostgreSQL refuses NUL characters in JSON, so control characters go and the
    length is capped; an empty result means no reason.
    """
    if reason is None:
        return None
    text = " ".join(_CONTROL_CHARS.sub(" ", reason).split())[:MAX_REASON_CHARS]
    return text or None


def check_message(text: str) -> str:
    """Refuses messages that cannot make a sensible turn.

    NUL characters are dropped (no model or terminal means them); emoji, right-to-left
    and other Unicode text pass unchanged.

    Raises:
        MessageRejectedError: Empty, or longer than ``MAX_MESSAGE_CHARS``.
    """
    cleaned = text.replace("\x00", "")
    if not cleaned.strip():
        raise MessageRejectedError("The message is empty.")
    if len(cleaned) > MAX_MESSAGE_CHARS:
        raise MessageRejectedError(
            f"The message has {len(cleaned):,} characters; the limit is {MAX_MESSAGE_CHARS:,}."
        )
    return cleaned


def check_quotes(quotes: object) -> list[str]:
    """Refuses quotes that ``forget_details`` or ``redact`` cannot safely look for.

    Surrounding whitespace is dropped. A quote that is part of the marker itself
    would match again in every replaced spot, so it is refused too.

    Raises:
        InvalidQuoteError: No quotes, too many, or one that is empty, longer than
            ``MAX_QUOTE_CHARS``, holds a NUL or control character, or lies inside
            the marker.
    """
    if isinstance(quotes, str):
        quotes = [quotes]
    if not isinstance(quotes, list | tuple) or not quotes:
        raise InvalidQuoteError("no quote was given")
    if len(quotes) > MAX_QUOTES:
        raise InvalidQuoteError(f"{len(quotes)} quotes were given; the limit is {MAX_QUOTES}")
    cleaned: list[str] = []
    for quote in quotes:
        text = quote.strip() if isinstance(quote, str) else ""
        if not text:
            raise InvalidQuoteError("a quote is empty")
        if len(text) > MAX_QUOTE_CHARS:
            raise InvalidQuoteError(
                f"a quote has {len(text):,} characters; the limit is {MAX_QUOTE_CHARS}"
            )
        if _CONTROL_CHARS.search(text) or _SURROGATES.search(text):
            raise InvalidQuoteError("a quote holds a NUL, a control character or invalid Unicode")
        if text.lower() in REMOVED_MARKER.lower():
            raise InvalidQuoteError(f"a quote is part of the marker {REMOVED_MARKER}")
        cleaned.append(text)
    return list(dict.fromkeys(cleaned))


def check_user(user: object) -> str:
    """Refuses text that cannot name a thread's owner (empty, too long, control characters).

    Any stored owner passes, so an unknown user is not an error, just nobody's.

    Raises:
        InvalidUserError: Empty, longer than ``MAX_THREAD_ID_CHARS``, or holding control
            characters or invalid Unicode.
    """
    if not isinstance(user, str) or not user.strip():
        raise InvalidUserError("A user is required (got an empty name).")
    if len(user) > MAX_THREAD_ID_CHARS or _BAD_THREAD_CHARS.search(user):
        raise InvalidUserError(
            f"User names are at most {MAX_THREAD_ID_CHARS} characters, without control "
            "characters or invalid Unicode."
        )
    return user


_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=365 * 1000)
"""Longer than anything kept; larger values would overflow date arithmetic."""


def parse_duration(raw: object) -> timedelta:
    """A duration as operators write one in a cron line: ``30d``, ``12h``, ``1w2d``, ``90m``.

    Units: ``s``, ``m`` (minutes), ``h``, ``d``, ``w``; parts add up. A ``timedelta``
    passes through, so code can hand one in directly.

    Raises:
        RetentionRequestError: Not such a duration, or a negative ``timedelta``.
    """
    if isinstance(raw, timedelta):
        if raw < timedelta(0):
            raise RetentionRequestError(f"A retention age cannot be negative (got {raw}).")
        return raw
    text = raw.strip().lower() if isinstance(raw, str) else ""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + unit for n, unit in parts) != text:
        shown = _CONTROL_CHARS.sub("?", str(raw))[:40]
        raise RetentionRequestError(
            f"{shown!r} is not a duration: write a number and a unit, such as 30d, 12h, "
            "90m or 1w2d (units s, m, h, d, w)."
        )
    seconds = sum(int(n) * _DURATION_UNITS[unit] for n, unit in parts)
    if seconds > MAX_DURATION.total_seconds():
        raise RetentionRequestError(f"{text!r} is longer than any retention can use.")
    return timedelta(seconds=seconds)


def check_keep_turns(raw: object) -> int:
    """How many turns a retention keeps: a whole number, 0 or more (0 keeps the head only).

    Raises:
        RetentionRequestError: Not a whole number of 0 or more.
    """
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise RetentionRequestError(
            f"The number of turns to keep must be a whole number of 0 or more (got {raw!r})."
        )
    return raw
