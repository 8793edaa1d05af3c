"""A real browser on the web page: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium opens the zoo, ranks the demo zoo for the shipped
Fashion-MNIST target, and finds the Fashion-trained models on top.

The server listens on 127.0.0.1 only, on a free port; the browser starts with a fresh
profile and no background networking. Skipped, with the reason, where Chromium or its
driver is not installed (`.ci/run` installs both).
"""

import os
import shutil
from pathlib import Path

import pytest

import zooindex

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--window-size=1280,1000")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Chromium and its driver are not installed: "
                    "apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium is not installed: pip install selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('profile')}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(URL, app) of the demo zoo served on loopback."""
    pytest.importorskip("uvicorn")
    from support.web import served
    from zooindex.web import create_app

    index = tmp_path_factory.mktemp("demo") / "demo.db"
    zooindex.add(DEMO, index=index)
    app = create_app(index, data=[DEMO])
    with served(app) as url:
        yield url, app


def test_a_search_in_the_browser_puts_the_fashion_models_on_top(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, _ = server
    browser.get(url + "/")
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#zoo a.model")]
    assert sorted(names) == ["cifar10-0-4", "cifar10-all", "fashion-0-4", "fashion-all",
                             "mnist-5-9", "mnist-all"]

    browser.find_element(By.LINK_TEXT, "Rank the zoo for your data →").click()
    WebDriverWait(browser, 30).until(seen.presence_of_element_located((By.ID, "path")))
    target = str(DEMO / "fashion-0-4-target.npz")
    Select(browser.find_element(By.ID, "path")).select_by_value(target)
    browser.find_element(By.ID, "run").click()

    table = WebDriverWait(browser, 180).until(
        seen.presence_of_element_located((By.CSS_SELECTOR, "table#ranking")))
    top = [a.text for a in table.find_elements(By.CSS_SELECTOR, "tbody a.model")]
    assert len(top) == 6 and set(top[:2]) == {"fashion-0-4", "fashion-all"}

    # the figures come after the ranking; wait until both are drawn
    def drawn(driver):
        images = driver.find_elements(By.CSS_SELECTOR, "figure img")
        return len(images) == 2 and all(driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", i)
            for i in images)

    WebDriverWait(browser, 180).until(drawn)
    shot = tmp_path / "search.png"
    browser.set_window_size(1280, 2400)
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    browser.find_element(By.LINK_TEXT, "fashion-0-4").click()
    WebDriverWait(browser, 30).until(seen.presence_of_element_located((By.ID, "layers")))
    assert browser.find_elements(By.CSS_SELECTOR, "#scores tbody tr")


def test_a_waiting_search_shows_its_place_then_its_ranking(browser, server):
    """Live progress through server-sent events: the page waits its turn, then reloads
    itself with the ranking when the search is done."""
    import threading

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait
    from zooindex.web import jobs

    url, app = server
    release = threading.Event()

    def blocked():
        release.wait(60)
        raise zooindex.TargetError("released")

    app.state.server.queue.submit(jobs.Job(label="blocker", load=blocked, options=None))
    try:
        browser.get(url + "/search?" + "path=" + str(DEMO / "fashion-0-4-target.npz"))
        dim = browser.find_element(By.NAME, "dim")
        dim.clear()
        dim.send_keys("4")
        browser.find_element(By.ID, "run").click()
        WebDriverWait(browser, 30).until(
            seen.text_to_be_present_in_element((By.ID, "status"), "Waiting: 1 search ahead"))
    finally:
        release.set()
    table = WebDriverWait(browser, 180).until(
        seen.presence_of_element_located((By.CSS_SELECTOR, "table#ranking")))
    top = [a.text for a in table.find_elements(By.CSS_SELECTOR, "tbody a.model")]
    assert set(top[:2]) == {"fashion-0-4", "fashion-all"}
    # ranked by the default, LogME, which reads the full features: no D is named
    assert "logme" in browser.page_source and "D=4" not in browser.page_source
