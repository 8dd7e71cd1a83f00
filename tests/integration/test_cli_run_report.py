"""``ultrathink run`` (the main job) and the HTML report."""

from __future__ import annotations

import re
from pathlib import Path

from ultrathink.persistence import Store

FIGURES = ["equity", "price0", "exposure", "monthly", "pnl"]
FIGURE_DIV = re.compile(r'<div id="([\w-]+)" class="plotly-graph-div"')
FETCHES = re.compile(r"<(?:script|link|img|iframe)[^>]*\b(?:src|href)=", re.IGNORECASE)


def assert_report(path: Path) -> str:
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    body = html[html.index("</head>") :]  # the head inlines plotly.js (it can export PNGs)
    assert "<img" not in body and "image/png" not in body, "charts, not pictures"
    assert FIGURE_DIV.findall(html) == FIGURES
    assert html.count("Plotly.newPlot(") == len(FIGURES)
    assert not FETCHES.search(html), "the report opens offline: nothing is fetched"
    return html


def test_run_prints_the_summary_and_writes_the_report(cli_subprocess, tmp_path: Path) -> None:
    db = tmp_path / "main" / "u.db"

    result = cli_subprocess("run", "--db", str(db))

    assert result.code == 0, result.err
    assert "training the default ensemble" in result.out
    assert "run: ml on embedded:sp500" in result.out
    assert "decision latency p50" in result.out
    for row in ("final equity", "total return", "max drawdown", "closed trades", "fees", "report"):
        assert row in result.out
    report = db.parent / "reports" / "run.html"
    assert report.is_file()
    assert_report(report)
    with Store(db) as store:
        [run] = store.list_runs()
    assert (run.kind, run.strategy, run.data_name, run.status) == (
        "run", "ml", "embedded:sp500", "completed",
    )  # fmt: skip
    assert run.config["broker"]["commission_bps"] > 0, "the main job uses realistic costs"


def test_run_json_with_explicit_report_path(cli, tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    report = tmp_path / "out" / "main.html"

    result = cli("run", "--db", str(db), "--json", "--report", str(report))

    assert result.code == 0, result.err
    summary = result.json()
    assert summary["mode"] == "run"
    assert summary["report"] == str(report)
    assert summary["data"] == "embedded:sp500"
    assert summary["metrics"]["total_fees"] > 0
    assert summary["strategy_stats"]["in_sample_bars"] == 0, "trades after the training period"
    assert summary["decision_latency_us"]["p99"] > 0
    html = assert_report(report)
    assert html.count("<td>long</td>") == min(summary["n_trades"], 200)


def test_backtest_report_lists_its_trades(cli, tmp_path: Path) -> None:
    report = tmp_path / "r.html"

    result = cli(
        "backtest", "--no-store", "--json", "--data", "synthetic:n_bars=5000,seed=3",
        "--report", str(report), "--param", "fast=20", "--param", "slow=60",
    )  # fmt: skip

    assert result.code == 0, result.err
    summary = result.json()
    html = assert_report(report)
    assert "ULTRATHINK backtest: sma_cross on synthetic:n_bars=5000,seed=3" in html
    assert "fast=20, slow=60" in html
    n_rows = min(summary["n_trades"], 200)
    assert html.count("<td>long</td>") == n_rows
    assert summary["report"] == str(report)


def test_backtest_without_trades_still_writes_a_report(cli, tmp_path: Path) -> None:
    report = tmp_path / "flat.html"

    result = cli(
        "backtest", "--no-store", "--data", "synthetic:n_bars=20,seed=1", "--report", str(report)
    )

    assert result.code == 0, result.err
    html = assert_report(report)
    assert "<td>long</td>" not in html
    assert str(report) in result.out
