"""Every error memagent raises on purpose, under one base class.

Callers catch ``MemagentError`` (or one of the four families below) and show it as it
is: ``str(error)`` is one sentence for people. The model reads the same failure in
other words, ``error.for_model()``, phrased as the next step it can take. Each error
keeps the facts (ids, limits) as attributes, so each audience's wording is written
from them, never by editing another audience's text.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg


class MemagentError(Exception):
    """Base of memagent's errors; ``str()`` is one sentence for people."""

    def for_model(self) -> str:
        """What a memory tool answers the model: what went wrong and what to do next."""
        return str(self)


class SettingsError(MemagentError, ValueError):
    """An environment variable holds a value memagent cannot use."""


class RequestError(MemagentError, ValueError):
    """A request memagent cannot carry out: bad input or nothing to act on; nothing changed."""


class InvalidThreadIdError(RequestError):
    """A thread id that could not be stored or would address nothing."""


class MessageRejectedError(RequestError):
    """A user message memagent will not send; the message says why."""


class InvalidCheckpointIdError(RequestError):
    """Text that is not a checkpoint id (a UUID)."""

    def __init__(self, shown: str) -> None:
        self.shown = shown
        super().__init__(
            f"{shown!r} is not a checkpoint id: ids are UUIDs like "
            "1f0c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f."
        )

    def for_model(self) -> str:
        return (
            f"{self.shown!r} is not a checkpoint id. Ids are UUIDs like "
            "1f0c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f: call conversation_timeline and copy one."
        )


class CheckpointNotFoundError(RequestError):
    """A well-formed checkpoint id that is not a root checkpoint of the thread."""

    def __init__(self, thread_id: str, checkpoint_id: str) -> None:
        self.thread_id = thread_id
        self.checkpoint_id = checkpoint_id
        super().__init__(
            f"There is no checkpoint {checkpoint_id} in thread {thread_id!r}. Rewind to an id "
            f"from the thread's timeline (memagent timeline {thread_id})."
        )

    def for_model(self) -> str:
        return (
            f"There is no checkpoint {self.checkpoint_id} in this conversation. Call "
            "conversation_timeline to see the ids you can rewind to, then try again."
        )


class ThreadNotFoundError(RequestError):
    """A thread with no saved conversation."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        super().__init__(f"There is no thread {thread_id!r}: it has no saved conversation.")


class PurgeRefusedError(RequestError):
    """A purge that would erase nothing or part of the current conversation; nothing changed."""


class NotPersistentError(RequestError):
    """A memory tool ran in a graph without a checkpointer: there is no memory to manage."""

    def __init__(self) -> None:
        super().__init__("This conversation is not being saved, so there is no memory to manage.")

    def for_model(self) -> str:
        return (
            "This conversation is not being saved, so there is no memory to manage. "
            "Tell the user memory tools need a persistent thread."
        )


class ThreadBusyError(MemagentError, RuntimeError):
    """Another turn or memory operation holds the thread for longer than we may wait."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        super().__init__(f"Thread {thread_id!r} is busy with another turn; try again in a moment.")


class UnstorableValueError(MemagentError, TypeError):
    """A state value whose type memagent's serializer would not revive; nothing was written."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        super().__init__(
            f"A state value of type {type_name} cannot be saved: it would load back as a "
            "plain dict, because memagent only revives types it knows to be safe. If it is "
            f"your own trusted type, allow it with MEMAGENT_SERDE_ALLOW={type_name} "
            "(comma-separated, module.Class)."
        )


class DatabaseUnavailableError(MemagentError, psycopg.OperationalError):
    """The database could not be reached during a turn; sending the message again resumes it.

    Also a ``psycopg.OperationalError``, so code (and the CLI) that already reports an
    unreachable database as one line reports this one too; its message is a plain
    sentence and the driver's error stays in ``__cause__`` for logs.
    """


class InvalidQuoteError(RequestError):
    """A quote ``forget_details`` or ``redact`` cannot look for: empty, too long, or unsafe."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"Cannot forget that detail: {problem}.")

    def for_model(self) -> str:
        return (
            f"Nothing was changed: {self.problem}. Call forget_details again with quotes "
            "copied exactly from the conversation: each a short snippet of what the user "
            "said (a name, an address, a number), not empty and not a whole message."
        )


class NothingToEraseError(RequestError):
    """ "Erase it for good" with nothing forgotten before it to name what "it" is."""

    def __init__(self) -> None:
        super().__init__(
            "No detail was forgotten on this branch, so there is nothing to erase for good; "
            "name the detail instead."
        )

    def for_model(self) -> str:
        return (
            "Nothing was changed: no detail was forgotten earlier in this conversation, so "
            "there is nothing to erase for good. Ask the user which detail they mean, then "
            "call forget_details with it quoted and for_good true."
        )


class QuoteNotFoundError(RequestError):
    """None of the quotes occurs in the conversation; nothing was changed."""

    def __init__(self) -> None:
        super().__init__("None of the quoted text occurs in the conversation; nothing changed.")

    def for_model(self) -> str:
        return (
            "Nothing was changed: none of the quotes occurs in the conversation. Quote the "
            "detail exactly as it was written (case does not matter), or tell the user it "
            "is not in what you remember."
        )


class NothingToUndoError(RequestError):
    """Undo on a branch with no turn or memory change to take back."""

    def __init__(self) -> None:
        super().__init__("Nothing to undo yet.")


def one_line(error: BaseException) -> str:
    """An error as one line for people: its text with whitespace folded, or its type.

    The CLI and the web page both show failures this way, never a traceback.
    """
    return " ".join(str(error).split()) or type(error).__name__


class SummaryFailedError(MemagentError, RuntimeError):
    """The summariser failed or answered nothing, so no summary exists and nothing changed.

    A failed summary is never stored as if it were one (langchain #38867): the caller
    leaves the oldest turns out of that one call instead, and says so.
    """

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"The earlier conversation could not be summarised: {problem}. Nothing was "
            "changed; the older turns are still saved."
        )

    def for_model(self) -> str:
        return (
            f"Nothing was compacted: the summary could not be made ({self.problem}). The "
            "conversation is unchanged. Tell the user, and that they can try again later."
        )


class NothingToCompactError(RequestError):
    """A compaction asked for on a thread with no earlier turn to summarise."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        super().__init__(f"Thread {thread_id!r} has no earlier turns to summarise yet.")


class InvalidUserError(RequestError):
    """Text that cannot be a user's name (empty, too long, control characters)."""


class ServerUnavailableError(MemagentError, RuntimeError):
    """The ``langgraph dev`` server could not be reached, or refused a request."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(f"The server at {url} could not be used: {reason}")


class CheckpointRetainedError(CheckpointNotFoundError):
    """A checkpoint id that retention removed: it existed, and is gone on purpose.

    A ``CheckpointNotFoundError`` too, so a caller that handles unknown ids handles
    this one; the words differ because "there is no such checkpoint" would send the
    user looking for a typo.
    """

    def __init__(self, thread_id: str, checkpoint_id: str, retained_at: datetime) -> None:
        super().__init__(thread_id, checkpoint_id)
        self.retained_at = retained_at
        when = retained_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        self.args = (
            f"Checkpoint {checkpoint_id} of thread {thread_id!r} was removed by retention "
            f"on {when}: it can no longer be loaded or rewound to. The thread's timeline "
            f"lists what is kept (memagent timeline {thread_id}).",
        )

    def for_model(self) -> str:
        return (
            f"Checkpoint {self.checkpoint_id} was removed by retention (older turns are no "
            "longer kept), so it cannot be rewound to. Call conversation_timeline for the "
            "points that are kept, or tell the user that part is gone."
        )


class RetentionRequestError(RequestError):
    """A retention asked for with a policy that cannot be applied; nothing changed."""


class RetentionRefusedError(RetentionRequestError):
    """A thread retention cannot cut without changing what is kept; nothing changed."""
