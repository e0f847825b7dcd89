"""The chat page in a real browser (Debian's headless chromium, driven by Selenium): load it, send a
message, see the streamed reply appear; reset clears the conversation.

docs/serving_chat.png was taken by this test with the shared SFT model (docs/serving.md):
`SERVE_PAGE_MODEL=<model folder> SERVE_PAGE_SCREENSHOT=docs/serving_chat.png pytest tests/serve/test_chat_page.py`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from serve_fixtures import chat_model_folder, running_server

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMEDRIVER is None or shutil.which("chromium") is None,
    reason="no chromium + chromedriver here: apt-get install -y chromium chromium-driver (as .ci/run does)",
)
def test_page_streams_a_reply_and_resets(tmp_path: Path) -> None:
    folder = os.environ.get("SERVE_PAGE_MODEL") or chat_model_folder(tmp_path / "model", endless=True)
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,700"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or ""
    with running_server(folder) as url:
        browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
        try:
            browser.get(url)
            assert browser.title == "minigpt chat"
            browser.find_element(By.ID, "system").send_keys("You answer sums.")
            browser.find_element(By.ID, "message").send_keys("2+3=")
            browser.find_element(By.ID, "send").click()
            reply = WebDriverWait(browser, 30).until(lambda b: b.find_element(By.CSS_SELECTOR, ".turn.assistant"))
            # Streaming: the reply is seen with part of its text before the stream ends.
            partial = WebDriverWait(browser, 30, poll_frequency=0.005).until(
                lambda b: reply.text if reply.text and reply.get_attribute("data-done") is None else None
            )
            WebDriverWait(browser, 60).until(lambda b: reply.get_attribute("data-done") == "true")
            assert len(reply.text) > len(partial) and "error" not in reply.get_attribute("class")
            assert browser.find_element(By.CSS_SELECTOR, ".turn.user").text == "2+3="
            if os.environ.get("SERVE_PAGE_SCREENSHOT"):
                browser.save_screenshot(os.environ["SERVE_PAGE_SCREENSHOT"])
            browser.find_element(By.ID, "reset").click()
            assert browser.find_elements(By.CSS_SELECTOR, ".turn") == []
        finally:
            browser.quit()
