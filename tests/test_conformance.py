"""langgraph's checkpointer conformance suite, every capability, against memagent's saver.

``langgraph-checkpoint-conformance`` checks what any langgraph checkpointer must do
(put, writes, get, list, delete) and the optional extensions (delete_for_runs,
copy_thread, prune; the server relies on all three). Each capability runs as a test of
its own on a fresh database, so a failure names the capability and its checks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import Capability

from agent.checkpointer import MemagentSaver, open_saver
from agent.settings import Settings


@pytest.mark.parametrize("capability", [capability.value for capability in Capability])
async def test_the_saver_passes_the_conformance_suite(
    capability: str, settings: Settings, database_url: str
) -> None:
    @checkpointer_test(name="MemagentSaver")
    async def memagent_saver() -> AsyncIterator[MemagentSaver]:
        async with open_saver(settings, database_url=database_url) as saver:
            yield saver

    report = await validate(memagent_saver, capabilities={capability})

    result = report.results[capability]
    assert result.detected, f"MemagentSaver does not implement {capability}"
    assert result.passed, "\n".join(result.failures)
    assert result.tests_passed > 0
