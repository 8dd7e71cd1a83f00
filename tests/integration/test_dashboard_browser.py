"""The dashboard in a real headless Chromium (Debian's, driven by Playwright).

* the live page of a paced paper session started with ``--dashboard`` draws its equity and
  keeps updating it;
* an operator logs in, presses the kill switch and confirms: the page shows HALTED, and the
  store holds an audit row naming the operator;
* a run page of ``ultrathink dashboard`` draws every chart.

Readiness is always a signal: the login line the session prints, a page's frame counter, a
chart's SVG. Screenshots go to ``docs/img/`` when ``DASHBOARD_SCREENSHOTS`` names the
repository (how the README's pictures are made), else to the test's temp dir.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration import browser_fixtures

from ultrathink.persistence import Store

browser = browser_fixtures.browser
page = browser_fixtures.page

EXE = str(Path(sys.executable).with_name("ultrathink"))
DEADLINE_S = 120.0
LOGIN = re.compile(r"log in \(one-time link\): (\S+)")


class Process:
    """A CLI process whose output is read line by line in a thread."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen(
            [EXE, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: re.Pattern[str]) -> re.Match[str]:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            for line in list(self.lines):
                found = pattern.search(line)
                if found:
                    return found
            if self.proc.poll() is not None and not self._thread.is_alive():
                raise AssertionError(f"exited before {pattern.pattern}: {''.join(self.lines)}")
            assert time.monotonic() < deadline, f"no {pattern.pattern}: {''.join(self.lines)}"
            time.sleep(0.05)

    def interrupt(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(timeout=DEADLINE_S)
        self._thread.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[Process, str, Path]]:
    db = tmp_path / "u.db"
    proc = Process(
        "paper", "--data", "synthetic:n_bars=200000,seed=3", "--speed", "600", "--db", str(db),
        "--dashboard", "--dashboard-port", "0",
    )  # fmt: skip
    try:
        link = proc.wait_for(LOGIN).group(1)
        yield proc, link, db
    finally:
        proc.interrupt()


def frames(tab: Any) -> int:
    return int(tab.eval_on_selector("#live", "el => Number(el.dataset.frames)"))


def equity_points(tab: Any) -> int:
    return int(tab.evaluate("() => document.getElementById('equity').data[0].x.length"))


def test_the_live_page_draws_the_equity_and_keeps_updating_it(
    session: tuple[Process, str, Path], page: Any
) -> None:
    _, link, _ = session
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(link)

    assert page.url.endswith("/live/run-1"), "the login link leads to the session's page"
    page.wait_for_function("() => Number(document.getElementById('live').dataset.frames) >= 3")
    seen = frames(page)
    before = equity_points(page)
    page.wait_for_function(
        f"() => document.getElementById('equity').data[0].x.length > {before}"
    )  # a new point arrived without a reload
    assert frames(page) > seen
    assert page.text_content("#state").startswith("ACTIVE")
    assert page.locator("#positions tr").count() >= 1
    browser_fixtures.screenshot(page, "dashboard-live.png")
    assert errors == []


def test_an_operator_kills_the_session_from_the_page_and_the_audit_names_them(
    session: tuple[Process, str, Path], page: Any
) -> None:
    proc, link, db = session
    page.goto(link)
    page.wait_for_function("() => Number(document.getElementById('live').dataset.frames) >= 1")
    page.fill("#operator", "alice")
    page.fill("#reason", "browser test")

    page.click("#kill")
    assert page.is_visible("#kill-yes"), "a confirmation step before anything is sent"
    page.click("#kill-yes")

    page.wait_for_function("() => document.getElementById('result').textContent.includes('HALTED')")
    page.wait_for_function(
        "() => document.getElementById('state').textContent.startsWith('HALTED')"
    )
    page.wait_for_function(
        "() => document.getElementById('alerts').textContent.includes('alice: halt')"
    )
    browser_fixtures.screenshot(page, "dashboard-halted.png")
    proc.interrupt()
    page.wait_for_function(
        "() => document.getElementById('connection').textContent.includes('ended')"
    )  # the page says the session ended, and keeps its last state
    with Store(db, readonly=True) as store:
        rows = store.audit_details(1, ("operator.halt",))
        status = store.get_run(1).status
    assert len(rows) == 1 and "alice" in rows[0][1] and "browser test" in rows[0][1]
    assert status == "interrupted"


def test_a_run_page_draws_every_chart(tmp_path: Path, page: Any) -> None:
    db = tmp_path / "u.db"
    done = subprocess.run(
        [EXE, "backtest", "--data", "sp500", "--db", str(db), "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    server = Process("dashboard", "--db", str(db), "--port", "0")
    try:
        link = server.wait_for(LOGIN).group(1)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(link)
        page.goto(link.split("/login")[0] + "/runs/1")
        charts = page.locator(".js-plotly-plot")
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 5")
        assert charts.count() >= 5
        assert page.locator("text=audit").count() >= 1
        browser_fixtures.screenshot(page, "dashboard-run.png", full_page=False)
        assert errors == []
    finally:
        server.interrupt()


def test_a_model_page_draws_its_roc_calibration_and_predictions(tmp_path: Path, page: Any) -> None:
    db, registry = tmp_path / "u.db", tmp_path / "models"
    for argv in (
        ["backtest", "--data", "synthetic:n_bars=500,seed=1", "--db", str(db)],
        ["train", "--data", "synthetic:n_bars=1500,seed=3,freq=1D", "--folds", "3",
         "--param", "gbm_n_estimators=20", "--param", "forest_n_estimators=20",
         "--registry", str(registry)],
    ):  # fmt: skip
        done = subprocess.run([EXE, *argv], capture_output=True, text=True, timeout=300,
                              check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
    server = Process("dashboard", "--db", str(db), "--registry", str(registry), "--port", "0")
    try:
        link = server.wait_for(LOGIN).group(1)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(link)
        page.goto(link.split("/login")[0] + "/models/v0001")
        drawn = "[data-fig$='/charts/{}'].js-plotly-plot .scatterlayer .trace"
        for chart in ("roc", "calibration"):
            page.wait_for_selector(drawn.format(chart))
        page.wait_for_selector("[data-fig$='/charts/predictions'].js-plotly-plot .barlayer .trace")
        roc = page.evaluate(
            "() => document.querySelector(\"[data-fig$='/charts/roc']\").data.map(t => t.name)"
        )
        assert roc[:3] == [n for n in roc[:3] if n.startswith("fold ")] and len(roc) == 5
        assert roc[-2].startswith("all folds (AUC 0.") and roc[-1] == "chance"
        page.locator("[data-fig$='/charts/roc']").scroll_into_view_if_needed()
        browser_fixtures.screenshot(page, "dashboard-model.png", full_page=False)
        assert errors == []
    finally:
        server.interrupt()
