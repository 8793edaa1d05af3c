"""Take the README's pictures of the web page again: the zoo page and a search of the demo zoo.

    python docs/screenshots.py     # writes docs/web-zoo.png and docs/web-search.png (960 wide)

Needs the `web` extra, selenium, and Debian's chromium and chromium-driver. The server
listens on 127.0.0.1 only, on a free port, with a fresh index of `models/demo/` in a
temporary folder; the browser starts with a fresh profile and no background networking.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--hide-scrollbars")


def serve(app):
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}"


def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(options=options,
                            service=Service(executable_path="/usr/bin/chromedriver"))


def full_page(driver, path: Path, width: int = 960, most: int = 1020) -> None:
    driver.set_window_size(width, 600)
    height = min(most, driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, height)
    driver.save_screenshot(str(path))
    print(f"wrote {path.relative_to(ROOT)} ({width}x{height})")


def main() -> int:
    import zooindex
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import Select, WebDriverWait
    from zooindex.web import create_app

    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo"
        shutil.copytree(DEMO, demo)
        index = Path(tmp) / "zoo.db"
        zooindex.add(demo, index=index)
        server, url = serve(create_app(index, data=[demo]))
        driver = browser(Path(tmp) / "profile")
        try:
            driver.set_window_size(1280, 800)
            driver.get(url + "/")
            full_page(driver, ROOT / "docs" / "web-zoo.png")

            driver.get(url + "/search")
            Select(driver.find_element(By.ID, "path")).select_by_value(
                str(demo / "fashion-0-4-target.npz"))
            driver.find_element(By.ID, "run").click()
            WebDriverWait(driver, 300).until(
                seen.presence_of_element_located((By.CSS_SELECTOR, "table#ranking")))

            def drawn(d):
                images = d.find_elements(By.CSS_SELECTOR, "figure img")
                return images and all(d.execute_script(
                    "return arguments[0].complete && arguments[0].naturalWidth > 0", i)
                    for i in images)

            WebDriverWait(driver, 300).until(drawn)
            full_page(driver, ROOT / "docs" / "web-search.png")
        finally:
            driver.quit()
            server.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
