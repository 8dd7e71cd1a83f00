"""Headless Chromium for the dashboard's browser tests: Debian's ``chromium`` driven by
Playwright through ``executable_path`` (no browser download: ``.ci/run`` installs the Debian
package when it is missing).

``browser`` is session-scoped; ``page`` gives each test a fresh context. Without a chromium
binary the tests are skipped, saying how to install it, except under CI (``CI`` set), where
they fail: CI installs it, so a missing browser there is a broken setup, not a reason to skip.
A test module registers them by binding them to module names, e.g.
``browser = browser_fixtures.browser``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: where Debian's chromium lives; ``ULTRATHINK_CHROMIUM`` overrides it
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    given = os.environ.get("ULTRATHINK_CHROMIUM")
    if given:
        return given
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    exe = chromium_path()
    if exe is None:
        message = (
            "no chromium binary: install Debian's package (`apt-get install chromium`, as "
            ".ci/run does) or set ULTRATHINK_CHROMIUM"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        chrome = pw.chromium.launch(
            executable_path=exe, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield chrome
        finally:
            chrome.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        tab = context.new_page()
        tab.set_default_timeout(60_000)  # a busy machine is slow, never wrong
        yield tab
    finally:
        context.close()


def screenshot(tab: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a full-page screenshot under ``docs/img/`` when ``DASHBOARD_SCREENSHOTS`` names
    the repository (the README shows them), else under the test's temp dir; return it."""
    repo = os.environ.get("DASHBOARD_SCREENSHOTS")
    out = Path(repo) / "docs" / "img" / name if repo else Path(os.getcwd()) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(out), full_page=full_page)
    return out
