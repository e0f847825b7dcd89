"""The chat page in a real browser (Debian's headless chromium, driven by Selenium): load it, send a
message, see the streamed reply appear; reset clears the conversation.

docs/serving_chat.png was taken by this test with the shared SFT model (docs/serving.md):
`SERVE_PAGE_MODEL=<model folder> SERVE_PAGE_SCREENSHOT=docs/serving_chat.png pytest tests/serve/test_chat_page.py`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from serve_fixtures import chat_model_folder, running_server

from minigpt.alignment.constitution import load_constitution
from minigpt.alignment.safety_filter import SafetyFilter

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMEDRIVER = shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    CHROMEDRIVER is None or shutil.which("chromium") is None,
    reason="no chromium + chromedriver here: apt-get install -y chromium chromium-driver (as .ci/run does)",
)


@contextmanager
def headless_chromium() -> Iterator[webdriver.Chrome]:
    """Debian's chromium, headless, driven by its chromedriver."""
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,640"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or ""
    browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.mark.slow
@needs_chromium
def test_page_streams_a_reply_and_resets(tmp_path: Path) -> None:
    own_model = os.environ.get("SERVE_PAGE_MODEL")  # e.g. the shared SFT model, for the docs' screenshot
    folder = own_model or chat_model_folder(tmp_path / "model", endless=True)
    with running_server(folder, default_max_tokens=128) as url, headless_chromium() as browser:
        browser.get(url)
        assert browser.title == "minigpt chat"
        browser.find_element(By.ID, "system").send_keys("Answer briefly.")
        for turn, message in enumerate(["what is 12 plus 7?", "reverse: garden"]):
            browser.find_element(By.ID, "message").send_keys(message)
            browser.find_element(By.ID, "send").click()
            replies = WebDriverWait(browser, 30).until(
                lambda b: b.find_elements(By.CSS_SELECTOR, ".turn.assistant")[turn:]  # noqa: B023
            )
            reply = replies[0]
            # Streaming: part of the reply shows before the stream ends (the test model's replies are
            # 128 tokens long; an SFT model's answer of two tokens may come in one piece).
            partial, done = WebDriverWait(browser, 30, poll_frequency=0.005).until(
                lambda b: (reply.text, reply.get_attribute("data-done")) if reply.text else None  # noqa: B023
            )
            WebDriverWait(browser, 60).until(lambda b: reply.get_attribute("data-done") == "true")  # noqa: B023
            assert own_model or (done is None and len(reply.text) > len(partial))
            assert "error" not in reply.get_attribute("class")
        users = [element.text for element in browser.find_elements(By.CSS_SELECTOR, ".turn.user")]
        assert users == ["what is 12 plus 7?", "reverse: garden"]
        if os.environ.get("SERVE_PAGE_SCREENSHOT"):
            browser.save_screenshot(os.environ["SERVE_PAGE_SCREENSHOT"])
        browser.find_element(By.ID, "reset").click()
        assert browser.find_elements(By.CSS_SELECTOR, ".turn") == []


@pytest.mark.slow
@needs_chromium
def test_page_shows_the_filters_refusal_and_principle(tmp_path: Path) -> None:
    folder = chat_model_folder(tmp_path / "model")
    guard = SafetyFilter(load_constitution("default"))
    with running_server(folder, guard=guard, default_max_tokens=16) as url, headless_chromium() as browser:
        browser.get(url)
        browser.find_element(By.ID, "message").send_keys("tell bob he is a fool")
        browser.find_element(By.ID, "send").click()
        note = WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".turn.filter"))[0]
        assert note.text == "filter: prompt block — no_insults (judge, 1.00)"
        reply = browser.find_element(By.CSS_SELECTOR, ".turn.assistant")
        assert reply.text == guard.constitution.refusal and reply.get_attribute("data-done") == "true"
