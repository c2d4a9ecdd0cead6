"""``memagent web`` used as a person would: in headless Chromium, driven by Selenium.

The server is the real command (``memagent web``, a subprocess on a fresh database with
the offline model); the browser is the system's Chromium with its own chromedriver
(Debian's ``chromium`` and ``chromium-driver``; ``.ci/run`` installs them), so nothing is
downloaded at run time. Without them the tests skip and say what to install.

Screenshots of the page go to the test's output directory. Set
``MEMAGENT_WEB_SCREENSHOT=docs/web.png`` to also write the README's picture (the page
with a detail forgotten, from the detail test).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import auth
from agent.prompts import REMOVED_MARKER
from tests.helpers import WEB_STOP_SECONDS, WebServer, needle_columns, running_web

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_SECONDS = 20.0


@pytest.fixture
def web_server(database_url: str, tmp_path: Path) -> Iterator[WebServer]:
    """``memagent web`` on this test's database, auth off (the default)."""
    with running_web(database_url, tmp_path / "home") as server:
        yield server


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium from the system, through the system's chromedriver."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "needs Chromium and its driver from the system: "
            "apt-get install chromium chromium-driver (.ci/run does this when it can)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1440,900")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


# --- acting and looking, as a user ----------------------------------------------------


def wait_for(driver: WebDriver, what: str, check: object) -> None:
    """Waits until ``check(driver)`` is truthy; fails saying what the page never showed."""
    try:
        WebDriverWait(
            driver, WAIT_SECONDS, ignored_exceptions=(StaleElementReferenceException,)
        ).until(check)  # type: ignore[arg-type]
    except TimeoutException:
        error = driver.find_element(By.ID, "error")
        shown = error.text if error.is_displayed() else "(no error shown)"
        pytest.fail(f"the page never showed {what}; its error bar: {shown}")


def idle(driver: WebDriver) -> bool:
    return not driver.execute_script("return document.body.classList.contains('busy')")


def messages(driver: WebDriver) -> list[str]:
    """The texts of the chat's bubbles, read in one go (the page may be redrawing them)."""
    texts: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#messages .message .text')]"
        ".map((bubble) => bubble.textContent)"
    )
    return texts


def tree_rows(driver: WebDriver) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, "#tree .row")


def say(driver: WebDriver, text: str) -> str:
    """Types a message, presses Enter, waits for the whole reply and returns it."""
    before = len(messages(driver))
    box = driver.find_element(By.ID, "text")
    box.send_keys(text)
    box.send_keys("\n")
    wait_for(driver, f"a reply to {text!r}", lambda d: len(messages(d)) >= before + 2 and idle(d))
    return messages(driver)[-1]


def click(driver: WebDriver, element: WebElement) -> None:
    element.click()
    wait_for(driver, "the page settle", idle)


def watch_reply_growth(driver: WebDriver) -> None:
    """Records each text an agent bubble is given while its reply streams in.

    From the mutation records rather than the DOM at callback time: parts that
    arrive in one network read are drawn one by one, but observed in one batch.
    """
    driver.execute_script(
        """
        window.replyTexts = [];
        new MutationObserver((records) => {
          for (const record of records) {
            if (!record.target.closest || !record.target.closest('.message.agent')) continue;
            for (const node of record.addedNodes) window.replyTexts.push(node.textContent);
          }
        }).observe(document.getElementById('messages'), {subtree: true, childList: true});
        """
    )


def select_in_message(driver: WebDriver, quote: str) -> None:
    """Selects ``quote`` in the first user message holding it, as a drag of the mouse would."""
    driver.execute_script(
        """
        const [quote] = arguments;
        const bubble = [...document.querySelectorAll('#messages .message.user .text')]
          .find((b) => b.textContent.includes(quote));
        const text = bubble.firstChild;
        const at = text.textContent.indexOf(quote);
        const range = document.createRange();
        range.setStart(text, at);
        range.setEnd(text, at + quote.length);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        bubble.dispatchEvent(new MouseEvent('mouseup', {bubbles: true}));
        """,
        quote,
    )
    wait_for(
        driver,
        "the buttons for the selected text",
        lambda d: d.find_element(By.ID, "detail-actions").is_displayed(),
    )


def screenshot(driver: WebDriver, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"


# --- the tests -------------------------------------------------------------------------


def test_chat_forget_undo_and_rewind_in_the_page(
    web_server: WebServer, browser: WebDriver, tmp_path: Path
) -> None:
    browser.get(web_server.url)
    wait_for(
        browser,
        "the model in the header",
        lambda d: "offline" in d.find_element(By.ID, "info").text,
    )

    watch_reply_growth(browser)
    reply = say(browser, "my name is Ada")
    assert reply.startswith('Noted: "my name is Ada"')
    grown = [text for text in browser.execute_script("return window.replyTexts") if text]
    assert any(reply.startswith(text) and text != reply for text in grown), (
        f"the reply was not drawn part by part: {grown}"
    )
    say(browser, "my city is Paris")
    assert [row.get_attribute("data-kind") for row in tree_rows(browser)] == ["turn", "turn"]
    thread_buttons = browser.find_elements(By.CSS_SELECTOR, "#threads button.thread")
    assert len(thread_buttons) == 1

    click(browser, browser.find_element(By.ID, "forget"))
    kinds = [row.get_attribute("data-kind") for row in tree_rows(browser)]
    assert kinds == ["turn", "turn", "forget"]
    current = browser.find_element(By.CSS_SELECTOR, "#tree .row.current")
    assert current.get_attribute("data-kind") == "forget"
    assert "I don't know your name" in say(browser, "what is my name?")

    click(browser, browser.find_element(By.ID, "undo"))  # takes back the question
    click(browser, browser.find_element(By.ID, "undo"))  # and the forget
    assert "You told me" in say(browser, "what is my name?")

    paris = next(r for r in tree_rows(browser) if "my city is Paris" in r.text)
    click(browser, paris.find_element(By.CSS_SELECTOR, "button.go"))
    shown = messages(browser)
    assert not any("Paris" in text for text in shown), shown
    assert shown[0] == "my name is Ada"
    current = browser.find_element(By.CSS_SELECTOR, "#tree .row.current")
    assert current.get_attribute("data-kind") == "rewind"
    assert browser.find_elements(By.CSS_SELECTOR, "#tree .branch"), "the rewind drew no branch"
    set_aside = browser.find_elements(By.CSS_SELECTOR, "#tree .row.set-aside")
    assert any("my city is Paris" in row.text for row in set_aside)
    say(browser, "my city is Rome")
    browser.find_element(By.ID, "text").click()  # the pointer off the tree, for the picture

    screenshot(browser, tmp_path / "web.png")
    tree = browser.find_element(By.ID, "tree-panel")
    assert tree.screenshot(str(tmp_path / "tree.png"))


ADDRESS = "12 Main St"


def test_forget_a_selected_detail_undo_it_and_erase_it_for_good(
    web_server: WebServer, browser: WebDriver, database_url: str, tmp_path: Path
) -> None:
    browser.get(web_server.url)
    wait_for(browser, "the page", lambda d: "offline" in d.find_element(By.ID, "info").text)
    say(browser, "my name is Ada")
    say(browser, f"my address is {ADDRESS}")

    select_in_message(browser, ADDRESS)
    click(browser, browser.find_element(By.ID, "forget-detail"))
    wait_for(browser, "the marker", lambda d: f"my address is {REMOVED_MARKER}" in messages(d))
    assert not any(ADDRESS in text for text in messages(browser))
    assert "my name is Ada" in messages(browser)
    forgot = browser.find_element(By.CSS_SELECTOR, "#tree .row.forget_details")
    assert "✎" in forgot.text and "forgot a detail" in forgot.text
    assert not browser.find_element(By.ID, "detail-actions").is_displayed()

    say(browser, "my city is Paris")
    browser.find_element(By.ID, "text").click()  # the pointer off the tree, for the picture
    select_in_message(browser, "Paris")  # the picture shows the two buttons too
    screenshot(browser, tmp_path / "forgot-detail.png")
    if target := os.environ.get("MEMAGENT_WEB_SCREENSHOT"):
        screenshot(browser, Path(target))

    forgot = browser.find_element(By.CSS_SELECTOR, "#tree .row.forget_details")
    click(browser, forgot.find_element(By.CSS_SELECTOR, "button.small"))  # its undo
    shown = messages(browser)
    assert f"my address is {ADDRESS}" in shown, shown
    assert not any("Paris" in text for text in shown), shown

    select_in_message(browser, ADDRESS)
    browser.find_element(By.ID, "erase-detail").click()
    dialog = browser.find_element(By.ID, "erase-dialog")
    wait_for(browser, "the confirmation", lambda d: dialog.is_displayed())
    assert browser.find_element(By.ID, "erase-quote").text == ADDRESS
    assert "cannot be undone" in dialog.text
    screenshot(browser, tmp_path / "erase-confirmation.png")
    tree_before = [row.text for row in tree_rows(browser)]
    browser.find_element(By.ID, "erase-no").click()
    wait_for(browser, "the confirmation closed", lambda d: not dialog.is_displayed() and idle(d))
    assert messages(browser) == shown
    assert [row.text for row in tree_rows(browser)] == tree_before
    assert needle_columns(database_url, ADDRESS), "a no erased the detail anyway"

    select_in_message(browser, ADDRESS)
    browser.find_element(By.ID, "erase-detail").click()
    wait_for(browser, "the confirmation", lambda d: dialog.is_displayed())
    browser.find_element(By.ID, "erase-yes").click()
    wait_for(
        browser, "the erased detail", lambda d: f"my address is {REMOVED_MARKER}" in messages(d)
    )
    assert not any(ADDRESS in row.text for row in tree_rows(browser))
    assert needle_columns(database_url, ADDRESS) == {}


def test_errors_are_shown_in_the_page_as_one_sentence(
    web_server: WebServer, browser: WebDriver
) -> None:
    browser.get(web_server.url + "#thread=" + "x%01y")
    wait_for(browser, "an error", lambda d: d.find_element(By.ID, "error").is_displayed())
    error = browser.find_element(By.ID, "error-text").text
    assert "control characters" in error
    assert "Traceback" not in error

    browser.find_element(By.ID, "new-thread").click()
    wait_for(browser, "the new thread", idle)
    click(browser, browser.find_element(By.ID, "undo"))
    assert browser.find_element(By.ID, "error-text").text == "Nothing to undo yet."

    say(browser, "my name is Ada")
    select_in_message(browser, "Ada")
    click(browser, browser.find_element(By.ID, "forget-detail"))
    assert messages(browser)[0] == f"my name is {REMOVED_MARKER}"
    rows = [row.text for row in tree_rows(browser)]
    select_in_message(browser, "removed")  # a word of the marker itself
    click(browser, browser.find_element(By.ID, "forget-detail"))
    assert "part of the marker" in browser.find_element(By.ID, "error-text").text
    assert messages(browser)[0] == f"my name is {REMOVED_MARKER}"
    assert [row.text for row in tree_rows(browser)] == rows


def test_with_auth_on_the_page_asks_for_a_token(
    database_url: str, tmp_path: Path, browser: WebDriver
) -> None:
    secret = secrets.token_urlsafe(32)
    with running_web(
        database_url, tmp_path / "home", MEMAGENT_AUTH="true", MEMAGENT_AUTH_SECRET=secret
    ) as server:
        browser.get(server.url)
        wait_for(
            browser, "the sign-in form", lambda d: d.find_element(By.ID, "token").is_displayed()
        )
        assert "token" in browser.find_element(By.ID, "error-text").text

        token = browser.find_element(By.ID, "token")
        token.send_keys(auth.issue_token("alice", secret))
        token.send_keys("\n")
        wait_for(
            browser, "alice signed in", lambda d: "alice" in d.find_element(By.ID, "info").text
        )
        assert not browser.find_element(By.ID, "signin").is_displayed()
        assert "Noted" in say(browser, "my name is Ada")
        thread = browser.find_element(By.CSS_SELECTOR, "#threads button.thread.current")
        assert (thread.get_attribute("title") or "").startswith("alice:")


def test_the_page_works_at_localhost_and_another_origin_changes_nothing(
    web_server: WebServer, browser: WebDriver
) -> None:
    """From ``http://localhost:PORT`` the page works; from there, ``127.0.0.1:PORT`` is
    another origin, so the browser's own cross-site simple POSTs to it are refused."""
    at_localhost = web_server.url.replace("127.0.0.1", "localhost")
    browser.get(at_localhost)
    wait_for(browser, "the page", lambda d: "offline" in d.find_element(By.ID, "info").text)
    say(browser, "my name is Ada")
    thread = browser.execute_script("return view.thread")
    statuses = browser.execute_async_script(
        """
        const [base, thread, done] = arguments;
        const post = (path, body, mode) => fetch(base + path, {
          method: "POST", mode, body: JSON.stringify(body),
          headers: {"Content-Type": "text/plain"},
        }).then((r) => r.status, () => "blocked");
        Promise.all([
          post("api/forget", {thread}, "no-cors"),
          post("api/chat", {thread, text: "injected"}, "no-cors"),
          post("api/forget", {thread}, "cors"),
        ]).then(done);
        """,
        web_server.url,
        thread,
    )
    assert statuses == [0, 0, "blocked"]  # opaque answers, and a CORS failure
    browser.refresh()
    wait_for(browser, "the conversation", lambda d: len(messages(d)) == 2)
    assert messages(browser)[0] == "my name is Ada"


def test_ctrl_c_stops_memagent_web_cleanly(web_server: WebServer) -> None:
    web_server.process.send_signal(signal.SIGINT)
    assert web_server.process.wait(WEB_STOP_SECONDS) == 0
    output = "".join(web_server.output)
    assert "memagent web stopped." in output
    assert "Traceback" not in output
