"""The chat agent on a real PostgreSQL: persistence, isolation, the offline model."""

from __future__ import annotations

import uuid

import pytest

from agent.errors import MessageRejectedError
from agent.model import OFFLINE_LABEL, OfflineChatModel, load_model
from agent.session import ChatSession
from agent.settings import Settings, SettingsError
from tests.fakes import ScriptedChatModel


async def test_conversation_survives_reopening_the_database(settings: Settings) -> None:
    thread = str(uuid.uuid4())
    async with ChatSession.open(settings) as session:
        await session.send(thread, "my name is Ada Lovelace")
        await session.send(thread, "my city is London")

    async with ChatSession.open(settings) as reopened:  # a new pool, as a new process has
        reply = await reopened.send(thread, "what is my name?")

    assert "my name is Ada Lovelace" in reply


async def test_threads_do_not_see_each_other(settings: Settings) -> None:
    model = ScriptedChatModel()
    async with ChatSession.open(settings, model=model) as session:
        await session.send("thread-a", "the password is swordfish")
        await session.send("thread-b", "hello from b")

    assert "swordfish" not in model.said(-1)
    assert "hello from b" in model.said(-1)


async def test_offline_model_recalls_earlier_turns(settings: Settings) -> None:
    thread = str(uuid.uuid4())
    async with ChatSession.open(settings) as session:
        await session.send(thread, "my favourite colour is teal")
        await session.send(thread, "I have two cats")
        recalled = await session.send(thread, "what do you remember?")
        unknown = await session.send(thread, "what is my job?")

    assert "my favourite colour is teal" in recalled
    assert "I have two cats" in recalled
    assert "don't know your job" in unknown


async def test_empty_and_huge_messages_are_refused_clearly(settings: Settings) -> None:
    async with ChatSession.open(settings) as session:
        with pytest.raises(MessageRejectedError, match="empty"):
            await session.send("t", "  \x00 ")
        with pytest.raises(MessageRejectedError, match="limit"):
            await session.send("t", "x" * 1_000_001)
        assert await session.send("t", "still fine")


def test_offline_model_is_chosen_without_a_key_and_labelled() -> None:
    model, label = load_model(Settings.from_env({}))
    assert isinstance(model, OfflineChatModel)
    assert "offline" in label


def test_a_configured_model_spec_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "MEMAGENT_MODEL": "openai:gpt-4o-mini",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    }
    model, label = load_model(Settings.from_env(env))
    assert label == "openai:gpt-4o-mini"
    assert not isinstance(model, OfflineChatModel)
    assert label != OFFLINE_LABEL


def test_bad_settings_are_reported_by_name() -> None:
    with pytest.raises(SettingsError, match="MEMAGENT_POOL_MAX_SIZE"):
        Settings.from_env({"MEMAGENT_POOL_MAX_SIZE": "lots"})


def test_metadata_keys_are_a_comma_separated_list_of_run_config_keys() -> None:
    assert Settings.from_env({}).metadata_keys == ()
    keys = Settings.from_env({"MEMAGENT_METADATA_KEYS": " user_id, org.team ,,"}).metadata_keys
    assert keys == ("user_id", "org.team")


@pytest.mark.parametrize("bad", ["user id", "user_id;tenant", "__pregel_send", "'user_id'"])
def test_a_metadata_key_that_cannot_be_meant_is_reported_by_name(bad: str) -> None:
    with pytest.raises(SettingsError, match=f"MEMAGENT_METADATA_KEYS .*{bad!r}"):
        Settings.from_env({"MEMAGENT_METADATA_KEYS": f"tenant,{bad}"})


def test_memagent_home_moves_the_embedded_database(tmp_path: pytest.TempPathFactory) -> None:
    settings = Settings.from_env({"MEMAGENT_HOME": str(tmp_path)})
    assert settings.database_url is None
    assert settings.embedded_data_dir == tmp_path / "pgdata"  # type: ignore[operator]
