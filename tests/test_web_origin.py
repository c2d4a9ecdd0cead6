"""Nobody but the page drives ``memagent web``: other sites and rebound names are refused.

Against the real command (``memagent web``, a subprocess on a fresh database with the
offline model), with requests as a browser would send them from an attacker's page:
a simple cross-origin ``POST`` (``text/plain``, no preflight) from another site or
from an opaque origin (``null``), and reads under a name rebound to 127.0.0.1. Each is
refused with a 403, and the thread's rows are compared byte for byte before and after.
The same requests from the page itself, from ``localhost`` and from a script without
an ``Origin`` still work. ``tests/test_server.py`` runs the same checks on the page
``langgraph dev`` mounts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from agent import auth
from tests.helpers import (
    FOREIGN_ORIGINS,
    REBOUND_NAME,
    STATE_CHANGING_ENDPOINTS,
    WebServer,
    assert_refused,
    fresh_database,
    running_web,
    simple_cross_site_post,
    stored_state,
    working_body,
)

ADDRESS = "12 Main St"
NAME = "Ada Lovelace"


@dataclass
class Page:
    """A running ``memagent web`` with one conversation in it, the attacks' target."""

    server: WebServer
    database_url: str
    thread_id: str
    checkpoint_id: str

    @property
    def port(self) -> int:
        port = urlsplit(self.server.url).port
        assert port is not None
        return port

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def say(url: str, thread_id: str, text: str, **headers: str) -> None:
    """One turn, sent as a script would (JSON, no ``Origin`` unless given)."""
    sent = httpx.post(url, json={"thread": thread_id, "text": text}, headers=headers, timeout=60)
    assert sent.status_code == 200, sent.text
    assert json.loads(sent.text.splitlines()[-1]) == {"done": True}


def oldest_turn(url: str, thread_id: str) -> str:
    """The checkpoint id of the thread's first turn point, to rewind to."""
    tree = httpx.get(url, params={"thread": thread_id}, timeout=10).json()["tree"]
    return str(tree["entries"][-1]["checkpoint_id"])


def seed(base: str, thread_id: str) -> str:
    """Two turns on ``thread_id`` (an address, then a name); the first turn's point."""
    say(f"{base}/api/chat", thread_id, f"my address is {ADDRESS}")
    say(f"{base}/api/chat", thread_id, f"my name is {NAME}")
    return oldest_turn(f"{base}/api/conversation", thread_id)


@pytest.fixture(scope="module")
def page(postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """``memagent web`` on a fresh database, with the conversation "victim" in it."""
    with fresh_database(postgres_server_url) as database_url:
        home = tmp_path_factory.mktemp("web-origin") / "home"
        with running_web(database_url, home) as server:
            base = server.url.rstrip("/")
            yield Page(server, database_url, "victim", seed(base, "victim"))


# --- refused, and nothing changed -------------------------------------------------------


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
@pytest.mark.parametrize("endpoint", STATE_CHANGING_ENDPOINTS)
def test_a_cross_site_simple_post_is_refused_and_changes_nothing(
    page: Page, endpoint: str, origin: str
) -> None:
    before = stored_state(page.database_url, page.thread_id)
    body = working_body(endpoint, page.thread_id, page.checkpoint_id, ADDRESS)
    response = simple_cross_site_post(page.url(endpoint), body, origin)
    error = assert_refused(response)
    assert ("opaque origin" if origin == "null" else "another site") in error
    assert "thread_id" not in response.json()
    assert stored_state(page.database_url, page.thread_id) == before


@pytest.mark.parametrize(
    "origin",
    ["http://127.0.0.1:{other}", "http://localhost:{port}", "https://127.0.0.1:{port}"],
)
def test_another_local_origin_is_refused_even_with_json(page: Page, origin: str) -> None:
    """Another local app (another port, another name, another scheme) is another site."""
    before = stored_state(page.database_url, page.thread_id)
    response = httpx.post(
        page.url("/api/forget"),
        json={"thread": page.thread_id},
        headers={"Origin": origin.format(port=page.port, other=page.port + 1)},
        timeout=10,
    )
    assert "another site" in assert_refused(response)
    assert stored_state(page.database_url, page.thread_id) == before


@pytest.mark.parametrize("path", ["/api/conversation?thread=victim", "/api/threads", "/"])
@pytest.mark.parametrize("origin", [None, f"http://{REBOUND_NAME}:{{port}}"])
def test_a_rebound_name_reads_nothing(page: Page, path: str, origin: str | None) -> None:
    """A DNS-rebinding page's reads (same-origin to it, so often without ``Origin``)."""
    headers = {"Host": f"{REBOUND_NAME}:{page.port}"}
    if origin is not None:
        headers["Origin"] = origin.format(port=page.port)
    response = httpx.get(page.url(path), headers=headers, timeout=10)
    assert "rebound its name" in assert_refused(response)
    for secret in (page.thread_id, ADDRESS, NAME):
        assert secret not in response.text


@pytest.mark.parametrize("host", ["localhost:1", "127.0.0.1:1", "[::2]:{port}", "127.0.0.2:{port}"])
def test_a_served_name_on_another_port_or_an_unserved_address_is_refused(
    page: Page, host: str
) -> None:
    response = httpx.get(
        page.url("/api/threads"), headers={"Host": host.format(port=page.port)}, timeout=10
    )
    assert_refused(response)
    assert page.thread_id not in response.text


@pytest.mark.parametrize("content_type", [None, "text/plain", "multipart/form-data; boundary=x"])
def test_a_change_without_a_json_body_type_is_refused_even_from_a_script(
    page: Page, content_type: str | None
) -> None:
    before = stored_state(page.database_url, page.thread_id)
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = httpx.post(
        page.url("/api/chat"),
        content=json.dumps({"thread": page.thread_id, "text": "hello"}),
        headers=headers,
        timeout=10,
    )
    assert "Content-Type: application/json" in assert_refused(response)
    assert stored_state(page.database_url, page.thread_id) == before


# --- the page itself, localhost and scripts keep working --------------------------------


def test_every_refused_request_works_from_the_page_itself(page: Page) -> None:
    """The bodies the attacks sent are real: with the page's own origin each is carried out."""
    own = page.url("")
    checkpoint_id = seed(own, "own")
    order = ("/api/chat", "/api/forget-detail", "/api/undo", "/api/erase", "/api/rewind")
    statuses = {}
    for endpoint in (*order, "/api/forget", "/api/threads"):
        body = working_body(endpoint, "own", checkpoint_id, ADDRESS)
        response = httpx.post(page.url(endpoint), json=body, headers={"Origin": own}, timeout=60)
        statuses[endpoint] = response.status_code
    assert statuses == {
        endpoint: 201 if endpoint == "/api/threads" else 200
        for endpoint in STATE_CHANGING_ENDPOINTS
    }
    shown = httpx.get(page.url("/api/conversation"), params={"thread": "own"}, timeout=10).json()
    assert [m for m in shown["messages"] if m["role"] == "user"] == [], "no forget happened"


def test_localhost_and_scripts_without_origin_still_work(page: Page) -> None:
    at_localhost = page.url("", host="localhost")
    say(
        page.url("/api/chat", host="localhost"),
        "by-name",
        "my city is Paris",
        Origin=at_localhost,
    )
    shown = httpx.get(
        page.url("/api/conversation", host="localhost"),
        params={"thread": "by-name"},
        headers={"Origin": at_localhost},
        timeout=10,
    )
    assert shown.status_code == 200
    assert shown.json()["messages"][0]["text"] == "my city is Paris"
    assert httpx.get(page.url("/", host="localhost"), timeout=10).status_code == 200

    listed = httpx.get(page.url("/api/threads"), timeout=10)  # curl: no Origin
    assert listed.status_code == 200
    assert "by-name" in [row["thread_id"] for row in listed.json()["threads"]]
    forgot = httpx.post(
        page.url("/api/forget"),
        content=json.dumps({"thread": "by-name"}),
        headers={"Content-Type": "application/json; charset=utf-8"},
        timeout=10,
    )
    assert forgot.status_code == 200, forgot.text
    assert "Warning" not in "".join(page.server.output)


@pytest.mark.parametrize("auth_on", [False, True])
def test_a_network_address_is_served_and_warned_about_with_auth_off(
    postgres_server_url: str, tmp_path: Path, auth_on: bool
) -> None:
    settings = {"MEMAGENT_AUTH": "true", auth.SECRET_VARIABLE: "s" * 40} if auth_on else {}
    with (
        fresh_database(postgres_server_url) as database_url,
        running_web(database_url, tmp_path / "home", "--host", "0.0.0.0", **settings) as server,
    ):
        port = urlsplit(server.url).port
        output = "".join(server.output)
        warned = "Warning: auth is off" in output and "anyone there" in output
        assert warned is not auth_on, output
        named = httpx.get(
            f"http://127.0.0.1:{port}/", headers={"Host": f"0.0.0.0:{port}"}, timeout=10
        )
        assert named.status_code == 200
        rebound = httpx.get(
            f"http://127.0.0.1:{port}/api/threads",
            headers={"Host": f"{REBOUND_NAME}:{port}"},
            timeout=10,
        )
        assert_refused(rebound)
