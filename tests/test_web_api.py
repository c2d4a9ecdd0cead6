"""The JSON API behind ``memagent web``, against a real PostgreSQL and the offline model.

The app runs in-process (httpx's ASGI transport, the app's lifespan entered by the
test), so a test can hold a thread or drop the database on the same event loop.
What was saved is read back through ``tools.admin`` and the audit log.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from agent import auth
from agent.checkpointer import MemagentSaver
from agent.cli import main
from agent.prompts import REMOVED_MARKER
from agent.settings import Settings
from tests.helpers import needle_columns, web_client
from tools import admin


async def chat(client: httpx.AsyncClient, thread: str, text: str) -> list[dict[str, Any]]:
    """Sends a message; returns the streamed NDJSON events."""
    response = await client.post("/api/chat", json={"thread": thread, "text": text})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def reply_of(events: list[dict[str, Any]]) -> str:
    assert events[-1] == {"done": True}, events
    return "".join(event["text"] for event in events[:-1])


async def shown(client: httpx.AsyncClient, thread: str) -> dict[str, Any]:
    response = await client.get("/api/conversation", params={"thread": thread})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def texts(conversation: dict[str, Any]) -> list[str]:
    return [message["text"] for message in conversation["messages"]]


async def test_a_reply_streams_in_parts_and_the_page_data_shows_the_conversation(
    settings: Settings,
) -> None:
    async with web_client() as client:
        thread = (await client.post("/api/threads", json={})).json()["thread_id"]
        events = await chat(client, thread, "my name is Ada")
        assert len(events) > 2, "the reply came in one piece, not streamed"
        assert reply_of(events).startswith('Noted: "my name is Ada"')

        conversation = await shown(client, thread)
        assert texts(conversation)[0] == "my name is Ada"
        assert conversation["messages"][0]["role"] == "user"
        tree = conversation["tree"]
        assert [entry["kind"] for entry in tree["entries"]] == ["turn"]
        assert tree["entries"][0]["preview"] == "my name is Ada"

        listed = (await client.get("/api/threads")).json()["threads"]
        assert [row["thread_id"] for row in listed] == [thread]
        info = (await client.get("/api/info")).json()
        assert "offline" in info["model"]


async def test_forget_undo_and_rewind_change_what_the_agent_remembers(
    settings: Settings, saver: MemagentSaver
) -> None:
    async with web_client() as client:
        await chat(client, "t", "my name is Ada")
        await chat(client, "t", "my city is Paris")

        forgot = await client.post("/api/forget", json={"thread": "t"})
        assert forgot.status_code == 200, forgot.text
        assert "I don't know your name" in reply_of(await chat(client, "t", "what is my name?"))

        for _ in range(2):  # the question, then the forget
            assert (await client.post("/api/undo", json={"thread": "t"})).status_code == 200
        assert "Ada" in reply_of(await chat(client, "t", "what is my name?"))

        tree = (await shown(client, "t"))["tree"]
        paris = next(e for e in tree["entries"] if e["preview"] == "my city is Paris")
        rewound = await client.post(
            "/api/rewind", json={"thread": "t", "checkpoint_id": paris["checkpoint_id"]}
        )
        assert rewound.status_code == 200, rewound.text
        conversation = await shown(client, "t")
        assert not any("Paris" in text for text in texts(conversation))
        assert any("Ada" in text for text in texts(conversation))

    audit = await admin.aaudit(saver, "t")
    assert [(row["operation"], row["surface"]) for row in audit] == [
        ("rewind", "web"),
        ("rewind", "web"),
        ("rewind", "web"),
        ("forget", "web"),
    ]


async def test_a_thread_with_nothing_saved_is_an_empty_conversation(settings: Settings) -> None:
    async with web_client() as client:
        assert await shown(client, "not-yet") == {
            "thread_id": "not-yet",
            "messages": [],
            "tree": None,
        }


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/api/chat", {"thread": "t", "text": "   "}, 400, "The message is empty."),
        ("/api/chat", {"thread": "bad\x00id", "text": "hi"}, 400, "control characters"),
        ("/api/chat", {"thread": "t"}, 400, "'text' as text"),
        ("/api/forget", {"thread": "nobody"}, 404, "There is no thread 'nobody'"),
        ("/api/rewind", {"thread": "t", "checkpoint_id": "nope"}, 400, "not a checkpoint id"),
        ("/api/undo", {"thread": "nobody"}, 409, "Nothing to undo yet."),
        ("/api/forget", [1, 2], 400, "JSON object"),
    ],
)
async def test_bad_requests_get_one_sentence_and_change_nothing(
    settings: Settings,
    saver: MemagentSaver,
    path: str,
    body: Any,
    status: int,
    says: str,
) -> None:
    async with web_client() as client:
        await chat(client, "t", "my name is Ada")
        before = await admin.atree(saver, "t")
        response = await client.post(path, json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert says in error
    assert "Traceback" not in error and "\n" not in error
    assert await admin.atree(saver, "t") == before


async def test_a_busy_thread_is_refused_with_409(
    settings: Settings, saver: MemagentSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMAGENT_THREAD_BUSY_TIMEOUT", "0.2")
    async with web_client() as client:
        async with saver.thread_lease("t"):
            response = await client.post("/api/chat", json={"thread": "t", "text": "hi"})
        assert response.status_code == 409
        assert "busy" in response.json()["error"]
        assert (await shown(client, "t"))["messages"] == []


async def test_a_database_that_went_away_is_a_clear_503(
    settings: Settings, database_url: str, postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMAGENT_POOL_TIMEOUT", "2")
    async with web_client() as client:
        await chat(client, "t", "my name is Ada")
        dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
        async with await psycopg.AsyncConnection.connect(
            postgres_server_url, autocommit=True
        ) as conn:
            await conn.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')
        response = await client.get("/api/conversation", params={"thread": "t"})
    assert response.status_code == 503
    assert response.json()["error"].startswith("The database is unavailable")


def test_memagent_web_with_an_unreachable_database_is_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    monkeypatch.setenv("MEMAGENT_POOL_TIMEOUT", "1")
    result = CliRunner().invoke(main, ["web"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: database unavailable")
    assert "Traceback" not in result.output


SignIn = Callable[[str], dict[str, str]]
"""The request headers of a user signed in to the page (auth on, a shared secret)."""


@pytest.fixture
def sign_in(monkeypatch: pytest.MonkeyPatch) -> SignIn:
    """Turns auth on for the page; signing in gives a user's ``Authorization`` header."""
    secret = secrets.token_urlsafe(32)
    monkeypatch.setenv("MEMAGENT_AUTH", "true")
    monkeypatch.setenv("MEMAGENT_AUTH_SECRET", secret)
    return lambda user: {"Authorization": f"Bearer {auth.issue_token(user, secret)}"}


async def test_with_auth_on_each_user_gets_only_their_threads(
    settings: Settings, saver: MemagentSaver, sign_in: SignIn
) -> None:
    async with web_client(prefix="/memagent") as client:
        page = await client.get("/memagent/")
        assert page.status_code == 200 and "<title>memagent</title>" in page.text

        refused = await client.get("/memagent/api/threads")
        assert refused.status_code == 401
        assert "token" in refused.json()["error"]
        forged = await client.get("/memagent/api/threads", headers={"Authorization": "Bearer x.y"})
        assert forged.status_code == 401

        alice = sign_in("alice")
        thread = (await client.post("/memagent/api/threads", json={}, headers=alice)).json()[
            "thread_id"
        ]
        assert thread.startswith("alice:")
        sent = await client.post(
            "/memagent/api/chat", json={"thread": thread, "text": "my name is Ada"}, headers=alice
        )
        assert sent.status_code == 200
        forgot = await client.post("/memagent/api/forget", json={"thread": thread}, headers=alice)
        assert forgot.status_code == 200

        bob = sign_in("bob")
        assert (await client.get("/memagent/api/threads", headers=bob)).json()["threads"] == []
        peek = await client.get(
            "/memagent/api/conversation", params={"thread": thread}, headers=bob
        )
        assert peek.status_code == 404
        meddle = await client.post("/memagent/api/forget", json={"thread": thread}, headers=bob)
        assert meddle.status_code == 404
        mine = (await client.get("/memagent/api/threads", headers=alice)).json()["threads"]
        assert [row["thread_id"] for row in mine] == [thread]

    audit = await admin.aaudit(saver, thread)
    assert [(row["operation"], row["surface"], row["actor"]) for row in audit] == [
        ("forget", "web", "alice")
    ]


async def test_a_user_whose_name_begins_another_users_cannot_reach_their_threads(
    settings: Settings, saver: MemagentSaver, sign_in: SignIn
) -> None:
    """User ``a`` is not the owner of ``a:b:<uuid>``, the page thread of user ``a:b``."""
    a_b, a = sign_in("a:b"), sign_in("a")

    async with web_client() as client:
        thread = (await client.post("/api/threads", json={}, headers=a_b)).json()["thread_id"]
        await client.post(
            "/api/chat", json={"thread": thread, "text": "my PIN is 4321"}, headers=a_b
        )

        assert (await client.get("/api/threads", headers=a)).json()["threads"] == []
        peek = await client.get("/api/conversation", params={"thread": thread}, headers=a)
        assert peek.status_code == 404
        meddle = await client.post("/api/forget", json={"thread": thread}, headers=a)
        assert meddle.status_code == 404
        mine = (await client.get("/api/threads", headers=a_b)).json()["threads"]
        assert [row["thread_id"] for row in mine] == [thread]


ADDRESS = "12 Main St"


async def test_a_selected_detail_is_forgotten_undone_and_erased_for_good(
    settings: Settings, saver: MemagentSaver, database_url: str
) -> None:
    async with web_client() as client:
        await chat(client, "t", f"my address is {ADDRESS}")
        await chat(client, "t", "my name is Ada")

        forgot = await client.post(
            "/api/forget-detail", json={"thread": "t", "quote": ADDRESS.lower()}
        )
        assert forgot.status_code == 200, forgot.text
        after = await shown(client, "t")
        assert not any(ADDRESS.lower() in text.lower() for text in texts(after))
        assert texts(after)[0] == f"my address is {REMOVED_MARKER}"
        assert "my name is Ada" in texts(after)
        newest = after["tree"]["entries"][0]
        assert (newest["kind"], newest["erased"], newest["on_head_branch"]) == (
            "forget_details",
            False,
            True,
        )
        assert newest["checkpoint_id"] == forgot.json()["checkpoint_id"]
        assert newest["undo"], "a soft detail forget offers its undo"

        assert (await client.post("/api/undo", json={"thread": "t"})).status_code == 200
        assert texts(await shown(client, "t"))[0] == f"my address is {ADDRESS}"

        erased = await client.post("/api/erase", json={"thread": "t", "quote": ADDRESS})
        assert erased.status_code == 200, erased.text
        assert erased.json()["rows"]["memagent_messages"] > 0
        assert needle_columns(database_url, ADDRESS) == {}
        after = await shown(client, "t")
        assert texts(after)[0] == f"my address is {REMOVED_MARKER}"
        assert "my name is Ada" in texts(after)
        assert not any(ADDRESS in entry["preview"] for entry in after["tree"]["entries"])

        for entry in after["tree"]["entries"]:  # no point of any branch brings it back
            back = await client.post(
                "/api/rewind", json={"thread": "t", "checkpoint_id": entry["checkpoint_id"]}
            )
            assert back.status_code == 200, back.text
            assert not any(ADDRESS in text for text in texts(await shown(client, "t")))

    audit = [(row["operation"], row["surface"]) for row in await admin.aaudit(saver, "t")]
    assert ("forget_details", "web") in audit and ("redact", "web") in audit


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/api/forget-detail", {"thread": "t", "quote": "99 Oak Lane"}, 400, "nothing changed"),
        ("/api/forget-detail", {"thread": "t", "quote": "   "}, 400, "a quote is empty"),
        ("/api/forget-detail", {"thread": "t", "quote": "12\x00Main"}, 400, "NUL"),
        ("/api/forget-detail", {"thread": "t", "quote": "removed"}, 400, "part of the marker"),
        ("/api/forget-detail", {"thread": "t", "quote": "x" * 5000}, 400, "the limit is"),
        ("/api/forget-detail", {"thread": "t"}, 400, "'quote' as text"),
        ("/api/forget-detail", {"thread": "nobody", "quote": ADDRESS}, 404, "no thread"),
        ("/api/erase", {"thread": "t", "quote": "99 Oak Lane"}, 400, "Nothing to erase"),
        ("/api/erase", {"thread": "t", "quote": ""}, 400, "a quote is empty"),
        ("/api/erase", {"thread": "t", "quote": ["12 Main St"]}, 400, "'quote' as text"),
        ("/api/erase", {"thread": "nobody", "quote": ADDRESS}, 400, "Nothing to erase"),
        ("/api/erase", {"thread": "bad\x00id", "quote": ADDRESS}, 400, "control characters"),
    ],
)
async def test_a_refused_detail_request_says_why_and_changes_nothing(
    settings: Settings,
    saver: MemagentSaver,
    database_url: str,
    path: str,
    body: dict[str, Any],
    status: int,
    says: str,
) -> None:
    async with web_client() as client:
        await chat(client, "t", f"my address is {ADDRESS}")
        before = (await admin.atree(saver, "t"), needle_columns(database_url, ADDRESS))
        conversation = await shown(client, "t")
        response = await client.post(path, json=body)
        assert response.status_code == status
        error = response.json()["error"]
        assert says in error
        assert "Traceback" not in error and "\n" not in error
        assert await shown(client, "t") == conversation
    assert (await admin.atree(saver, "t"), needle_columns(database_url, ADDRESS)) == before


async def test_compact_summarises_shows_its_summary_and_undo_brings_the_turns_back(
    settings: Settings,
) -> None:
    async with web_client() as client:
        for text in ("my name is Ada", "my city is Paris", "what is my name?"):
            await chat(client, "t", text)
        before = texts(await shown(client, "t"))

        compacted = await client.post("/api/compact", json={"thread": "t"})
        assert compacted.status_code == 200, compacted.text
        assert compacted.json()["replaced"] >= 4
        after = await shown(client, "t")
        assert after["messages"][0]["role"] == "summary"
        newest = after["tree"]["entries"][0]
        assert newest["kind"] == "compact" and newest["symbol"] == "≡"
        assert "compacted" in newest["label"] and newest["undo"]

        summary = await client.get(
            "/api/summary", params={"thread": "t", "checkpoint": newest["checkpoint_id"]}
        )
        assert summary.status_code == 200, summary.text
        assert "my name is Ada" in summary.json()["text"]
        no_summary = await client.get(
            "/api/summary", params={"thread": "t", "checkpoint": newest["parent_id"]}
        )
        assert no_summary.status_code == 404

        assert (await client.post("/api/undo", json={"thread": "t"})).status_code == 200
        assert texts(await shown(client, "t"))[:-1] == before  # then the undo's confirmation


async def test_the_page_deletes_only_its_users_own_threads_and_audits_it(
    settings: Settings, saver: MemagentSaver, sign_in: SignIn
) -> None:
    """With auth on, another user's delete is "not found" and changes nothing; the
    owner's erases the thread, and the audit line says the page and who."""
    alice, bob = sign_in("alice"), sign_in("bob")

    async with web_client() as client:
        thread = (await client.post("/api/threads", json={}, headers=alice)).json()["thread_id"]
        await client.post(
            "/api/chat", json={"thread": thread, "text": "my name is Ada"}, headers=alice
        )

        refused = await client.post("/api/delete", json={"thread": thread}, headers=bob)
        assert refused.status_code == 404
        kept = await client.get("/api/conversation", params={"thread": thread}, headers=alice)
        assert kept.json()["messages"][0]["text"] == "my name is Ada"

        deleted = await client.post("/api/delete", json={"thread": thread}, headers=alice)
        assert deleted.status_code == 200
        assert deleted.json()["rows"]["checkpoints"] > 0
        assert (await client.get("/api/threads", headers=alice)).json()["threads"] == []
        gone = await client.get("/api/conversation", params={"thread": thread}, headers=alice)
        assert gone.json()["messages"] == []

    audit = await admin.aaudit(saver, thread)
    newest = audit[0]
    assert (newest["operation"], newest["surface"], newest["actor"]) == ("delete", "web", "alice")
