"""Checks on everything a user, a caller or the model hands memagent, before any I/O.

Each check returns the value as it will be used, or raises a ``RequestError``
subclass that says what is wrong; nothing has been written when one fails.
"""

from __future__ import annotations

import re
import uuid

from agent.errors import InvalidCheckpointIdError, InvalidThreadIdError, MessageRejectedError

MAX_THREAD_ID_CHARS = 256
MAX_MESSAGE_CHARS = 1_000_000
MAX_REASON_CHARS = 200

_BAD_THREAD_CHARS = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


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
