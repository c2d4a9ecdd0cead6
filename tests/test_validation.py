"""Input checks and the error family, without a database: what each audience is told.

People read ``str(error)`` (the CLI prints it after ``Error: ``); the model reads
``error.for_model()``, which names the tool to call next instead of a command.
"""

from __future__ import annotations

import inspect

import psycopg
import pytest

from agent import errors
from agent.errors import (
    CheckpointNotFoundError,
    DatabaseUnavailableError,
    InvalidCheckpointIdError,
    InvalidThreadIdError,
    MemagentError,
    MessageRejectedError,
    NotPersistentError,
    RequestError,
    ThreadBusyError,
    ThreadNotFoundError,
)
from agent.validation import (
    MAX_MESSAGE_CHARS,
    MAX_REASON_CHARS,
    MAX_THREAD_ID_CHARS,
    check_message,
    check_thread_id,
    clean_reason,
    parse_checkpoint_id,
)

CHECKPOINT = "1f0c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f"

# --- thread ids ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "thread_id", ["t", "שיחה-🙂", "x" * MAX_THREAD_ID_CHARS, "' OR '1'='1", " padded "]
)
def test_usable_thread_ids_pass_unchanged(thread_id: str) -> None:
    assert check_thread_id(thread_id) == thread_id


@pytest.mark.parametrize(
    ("thread_id", "says"),
    [
        ("", "required"),
        ("  \t", "required"),
        (None, "required"),
        (42, "required"),
        ("x" * (MAX_THREAD_ID_CHARS + 1), f"at most {MAX_THREAD_ID_CHARS}"),
        ("a\x00b", "control characters"),
        ("line\nbreak", "control characters"),
        ("del\x7f", "control characters"),
        ("\ud800", "invalid Unicode"),
    ],
)
def test_unusable_thread_ids_are_refused_by_name(thread_id: object, says: str) -> None:
    with pytest.raises(InvalidThreadIdError, match=says) as refused:
        check_thread_id(thread_id)
    assert isinstance(refused.value, RequestError)
    assert "\n" not in str(refused.value)


# --- checkpoint ids --------------------------------------------------------------------


def test_checkpoint_ids_are_normalised_uuids() -> None:
    assert parse_checkpoint_id(f"  {CHECKPOINT.upper()}\n") == CHECKPOINT
    assert parse_checkpoint_id(CHECKPOINT.replace("-", "")) == CHECKPOINT


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("not-an-id", "not-an-id"),
        (f"{CHECKPOINT}' OR '1'='1", f"{CHECKPOINT}' OR '1'='1"),
        ("abc\x00\x1bdef", "abc??def"),
        (123, ""),
        (None, ""),
        ("z" * 1_000, "z" * 60),
    ],
    ids=["word", "sql", "control", "int", "none", "huge"],
)
def test_a_bad_checkpoint_id_is_shown_back_safely(raw: object, shown: str) -> None:
    with pytest.raises(InvalidCheckpointIdError) as refused:
        parse_checkpoint_id(raw)
    assert refused.value.shown == shown
    assert str(refused.value).startswith(f"{shown!r} is not a checkpoint id")


# --- reasons and messages ----------------------------------------------------------------


def test_reasons_lose_control_characters_and_are_capped() -> None:
    assert clean_reason(None) is None
    assert clean_reason(" \x00\x1b ") is None
    assert clean_reason("shared\x00 screen\n\tnow") == "shared screen now"
    assert clean_reason("بناءً على طلب 🙏") == "بناءً على طلب 🙏"
    assert clean_reason("r" * 500) == "r" * MAX_REASON_CHARS


def test_messages_drop_nul_and_keep_everything_else() -> None:
    assert check_message("my name is A\x00da\x07 \u202e🙂") == "my name is Ada\x07 \u202e🙂"
    assert check_message("x" * MAX_MESSAGE_CHARS) == "x" * MAX_MESSAGE_CHARS


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "The message is empty."),
        (" \x00\n\t", "The message is empty."),
        ("x" * 5_000_000, "The message has 5,000,000 characters; the limit is 1,000,000."),
    ],
    ids=["empty", "blank", "huge"],
)
def test_unsendable_messages_are_refused_in_one_sentence(text: str, says: str) -> None:
    with pytest.raises(MessageRejectedError) as refused:
        check_message(text)
    assert str(refused.value) == says
    assert refused.value.for_model() == says


# --- the error family --------------------------------------------------------------------


def test_every_error_is_a_memagent_error() -> None:
    defined = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if cls.__module__ == errors.__name__
    ]
    assert len(defined) >= 10
    assert [cls.__name__ for cls in defined if not issubclass(cls, MemagentError)] == []


def test_a_bad_checkpoint_id_tells_people_the_form_and_the_model_the_tool() -> None:
    error = InvalidCheckpointIdError("nope")
    assert str(error) == (
        "'nope' is not a checkpoint id: ids are UUIDs like 1f0c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f."
    )
    assert error.for_model() == (
        "'nope' is not a checkpoint id. Ids are UUIDs like "
        "1f0c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f: call conversation_timeline and copy one."
    )


def test_an_unknown_checkpoint_points_people_at_the_cli_and_the_model_at_its_tool() -> None:
    error = CheckpointNotFoundError("t-1", CHECKPOINT)
    assert (error.thread_id, error.checkpoint_id) == ("t-1", CHECKPOINT)
    assert str(error) == (
        f"There is no checkpoint {CHECKPOINT} in thread 't-1'. Rewind to an id from the "
        "thread's timeline (memagent timeline t-1)."
    )
    assert error.for_model() == (
        f"There is no checkpoint {CHECKPOINT} in this conversation. Call "
        "conversation_timeline to see the ids you can rewind to, then try again."
    )
    assert "memagent" not in error.for_model()  # the model has no shell


def test_a_memory_tool_without_a_saver_asks_the_model_to_tell_the_user() -> None:
    error = NotPersistentError()
    assert str(error) == "This conversation is not being saved, so there is no memory to manage."
    assert error.for_model() == (f"{error} Tell the user memory tools need a persistent thread.")


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (ThreadNotFoundError("ghost"), "There is no thread 'ghost': it has no saved conversation."),
        (ThreadBusyError("t"), "Thread 't' is busy with another turn; try again in a moment."),
        (InvalidThreadIdError("A thread id is required."), "A thread id is required."),
    ],
    ids=["not-found", "busy", "plain"],
)
def test_errors_without_a_model_wording_say_the_same_to_both(
    error: MemagentError, says: str
) -> None:
    assert str(error) == says
    assert error.for_model() == says


def test_a_lost_database_is_also_a_psycopg_operational_error() -> None:
    """Code that reports ``psycopg.OperationalError`` as one line reports this one too."""
    error = DatabaseUnavailableError("The database could not be reached; send it again.")
    assert isinstance(error, psycopg.OperationalError)
    assert isinstance(error, MemagentError) and not isinstance(error, RequestError)
    assert str(error) == "The database could not be reached; send it again."
