"""Headless Chromium (Debian's, with its chromedriver) for the browser tests: the flags
every test needs — nothing fetched from the network, names resolve to loopback only —
plus the test's own."""

from __future__ import annotations

import os
from collections.abc import Iterable

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BASE_ARGS = (
    "--headless",
    "--no-sandbox",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chrome(args: Iterable[str]):
    """A selenium Chrome driver on Debian's Chromium with ``BASE_ARGS`` and ``args``."""
    os.environ["SE_OFFLINE"] = "true"  # never let selenium-manager download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (*BASE_ARGS, *args):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
