"""Headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by Selenium,
for tests that use the sign-in and consent pages as a person would.

The browser may only reach this machine: every other host name fails to resolve, so a
redirect to a public page (wrangler's "consent granted" page) goes nowhere.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def available() -> bool:
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


def chromium(profile_dir: Path, extra_args: list[str] | None = None):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1000,900", f"--user-data-dir={profile_dir}",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                *(extra_args or [])):
        opts.add_argument(arg)
    profile_dir.mkdir(parents=True, exist_ok=True)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER, log_output=str(profile_dir / "driver.log")),
                              options=opts)
    driver.set_page_load_timeout(60)
    return driver


def wait_for(driver, css: str, timeout: float = 30):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def fill(driver, css: str, text: str) -> None:
    el = wait_for(driver, css)
    el.clear()
    el.send_keys(text)


def click(driver, css: str) -> None:
    wait_for(driver, css).click()
