"""The blocking facade: plain code chats and administers without writing ``async``."""

from __future__ import annotations

import asyncio

import pytest

from agent.prompts import FORGET_CONFIRMATION
from agent.settings import Settings
from agent.sync import SyncChat
from tools import admin


def test_sync_chat_remembers_forgets_and_undoes(settings: Settings) -> None:
    with SyncChat(settings) as chat:
        chat.send("sync-thread", "my name is Barbara Liskov")
        assert "Barbara Liskov" in chat.send("sync-thread", "what is my name?")

        change = admin.forget(chat.saver, "sync-thread", reason="from a script")
        assert change.checkpoint_id
        assert "don't know your name" in chat.send("sync-thread", "what is my name?")

        entries = admin.timeline(chat.saver, "sync-thread")
        forget_entry = next(e for e in entries if e.kind == "forget")
        assert forget_entry.reason == "from a script"
        admin.rewind(chat.saver, "sync-thread", str(forget_entry.parent_id))
        assert "Barbara Liskov" in chat.send("sync-thread", "what is my name?")


def test_sync_twins_refuse_to_block_their_own_loop(settings: Settings) -> None:
    with SyncChat(settings) as chat:
        chat.send("t", "hello")

        async def on_the_loop() -> None:
            admin.forget(chat.saver, "t")

        future = asyncio.run_coroutine_threadsafe(on_the_loop(), chat.saver.loop)
        with pytest.raises(asyncio.InvalidStateError, match=r"await tools\.admin\.aforget"):
            future.result(timeout=10)
        assert FORGET_CONFIRMATION not in chat.send("t", "what do you remember?")


def test_using_a_closed_facade_says_how_to_open_it(settings: Settings) -> None:
    with pytest.raises(RuntimeError, match="with"):
        SyncChat(settings).send("t", "hi")
