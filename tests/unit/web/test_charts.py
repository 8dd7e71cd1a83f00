"""The chart layer: every figure on real small data and on empty data, JSON round trips,
downsampling bounds, and the run and training reports built on it (offline, no PNG)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from sklearn.linear_model import LogisticRegression

from ultrathink import services
from ultrathink.core.enums import Side
from ultrathink.engine import report as run_report
from ultrathink.errors import ConfigError
from ultrathink.models.pipeline import TrainResult, write_reports
from ultrathink.models.training import walk_forward_report
from ultrathink.web import charts

DAY_NS = 86_400 * 10**9
T0 = 1_577_836_800 * 10**9  # 2020-01-01 UTC


def walk(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Daily times and a positive random-walk equity of ``n`` points."""
    rng = np.random.default_rng(seed)
    return T0 + np.arange(n, dtype=np.int64) * DAY_NS, 1e5 * np.exp(
        np.cumsum(rng.normal(0, 0.01, n))
    )


def points(trace: Any) -> int:
    """How many points a trace draws (its longest data array)."""
    sizes = [len(v) for v in (trace.x, trace.y) if v is not None]
    return max(sizes, default=0)


def annotations(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def round_trips(fig: go.Figure) -> dict[str, Any]:
    """figure_json parses back to a figure that serialises to the same JSON."""
    text = charts.figure_json(fig)
    again = charts.figure_json(pio.from_json(text))
    assert json.loads(again) == json.loads(text)
    parsed: dict[str, Any] = json.loads(text)
    return parsed


# -- runs -----------------------------------------------------------------------------------


def test_equity_figure_has_linked_equity_drawdown_and_underwater() -> None:
    ts, eq = walk(500)
    eq[300] = eq[:300].max() * 0.5  # a one-day crash: the deepest drawdown

    fig = charts.equity_figure(ts, eq)

    names = [t.name for t in fig.data]
    assert names[:3] == ["equity", "drawdown %", "days under water"]
    assert fig.layout.xaxis.matches == fig.layout.xaxis2.matches == "x3", "one time axis"
    drawdown = np.asarray(fig.data[1].y)
    assert drawdown.max() <= 0 and drawdown.min() == pytest.approx(-50.0)
    assert "deepest drawdown" in names
    assert np.asarray(fig.data[2].y).min() == 0.0
    assert round_trips(fig)["data"][0]["x"][0].startswith("2020-01-01")


def test_equity_figure_downsamples_a_long_curve_and_keeps_its_trough() -> None:
    ts, eq = walk(200_000, seed=2)
    eq[123_457] = 1.0  # one bar: strided drawing would hide it

    fig = charts.equity_figure(ts, eq, max_points=500)

    assert all(points(t) <= 500 for t in fig.data)
    assert np.asarray(fig.data[0].y).min() == 1.0
    assert np.asarray(fig.data[1].y).min() == pytest.approx((1.0 / eq[:123_457].max() - 1) * 100)


def test_price_fills_figure_marks_buys_and_sells() -> None:
    ts, close = walk(300)
    fills = [(ts[10], Side.BUY, close[10], 5.0), (ts[20], "SELL", close[20], 5.0),
             (ts[30], "buy", close[30], 2.0)]  # fmt: skip

    fig = charts.price_fills_figure(ts, close, fills, symbol="SPY")

    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"SPY close", "buys", "sells"}
    assert by_name["buys"].marker.symbol == "triangle-up"
    assert by_name["sells"].marker.symbol == "triangle-down"
    assert len(by_name["buys"].y) == 2 and list(by_name["buys"].customdata) == [5.0, 2.0]
    assert fig.layout.yaxis.title.text == "SPY price"
    round_trips(fig)


def test_price_fills_figure_caps_many_fills_and_says_so() -> None:
    ts, close = walk(50_000)
    fills = [(ts[i], "BUY" if i % 2 else "SELL", close[i], 1.0) for i in range(0, 50_000, 5)]

    fig = charts.price_fills_figure(ts, close, fills, max_points=300)

    assert all(points(t) <= 300 for t in fig.data)
    buys = next(t for t in fig.data if t.name.startswith("buys"))
    assert re.fullmatch(r"buys \(\d+ of 5,000 shown\)", buys.name)
    assert max(buys.y) == max(f[2] for f in fills if f[1] == "BUY")


def test_price_fills_figure_without_fills_or_prices() -> None:
    ts, close = walk(10)
    assert "no fills" in annotations(charts.price_fills_figure(ts, close, []))
    fills_only = charts.price_fills_figure([], [], [(ts[1], "BUY", 1.0, 1.0)])
    assert any("no price series" in a for a in annotations(fills_only))
    assert annotations(charts.price_fills_figure([], [], [])) == ["no prices and no fills"]
    with pytest.raises(ConfigError, match="BUY or SELL"):
        charts.price_fills_figure(ts, close, [(ts[1], "HOLD", 1.0, 1.0)])


def test_monthly_returns_figure_is_year_by_month() -> None:
    ts = T0 + np.arange(400, dtype=np.int64) * DAY_NS  # 2020-01-01 .. 2021-02-03
    eq = np.full(400, 100.0)
    eq[ts >= T0 + 31 * DAY_NS] = 110.0  # February 2020 on: +10 % in February

    fig = charts.monthly_returns_figure(ts, eq)

    heat = fig.data[0]
    assert list(heat.y) == ["2020", "2021"] and len(heat.x) == 12
    z = np.asarray(heat.z, dtype=float)
    assert z[0, 0] == 0.0 and z[0, 1] == pytest.approx(10.0) and np.isnan(z[1, 2:]).all()
    round_trips(fig)
    assert annotations(charts.monthly_returns_figure([T0], [1.0]))[0].startswith("not enough")


def test_trade_pnl_figure_bins_gains_and_losses() -> None:
    pnls = np.random.default_rng(1).normal(0, 100, 10_000)

    fig = charts.trade_pnl_figure(pnls)

    assert [t.name.split(" (")[0] for t in fig.data] == ["winning", "losing or flat"]
    assert sum(int(np.sum(t.y)) for t in fig.data) == 10_000
    assert all(points(t) <= 81 for t in fig.data)
    assert annotations(charts.trade_pnl_figure([])) == ["no trades"]
    assert sum(np.sum(t.y) for t in charts.trade_pnl_figure([5.0, 5.0]).data) == 2


def test_exposure_and_compare_figures() -> None:
    ts, eq = walk(5_000)
    exposure = charts.exposure_figure(ts, np.abs(np.sin(np.arange(5_000))), max_points=100)
    assert points(exposure.data[0]) <= 100 and max(exposure.data[0].y) <= 100.0

    compare = charts.compare_equity_figure([("a", ts, eq), ("b", ts, eq * 3), ("c", [], [])])
    assert [t.name for t in compare.data] == ["a", "b"]
    assert compare.data[0].y[0] == compare.data[1].y[0] == 1.0
    assert "starts at 1.0" in compare.layout.yaxis.title.text
    assert any("c" in a for a in annotations(compare))
    assert annotations(charts.exposure_figure([], [])) == ["no exposure points"]
    assert annotations(charts.compare_equity_figure([])) == ["no equity curves to compare"]
    with pytest.raises(ConfigError, match="one length"):
        charts.equity_figure(ts, eq[:-1])
    with pytest.raises(ConfigError, match="max_points"):
        charts.equity_figure(ts, eq, max_points=3)


# -- models and performance -----------------------------------------------------------------


def test_folds_figure_plots_each_metric_with_its_baseline() -> None:
    folds = [{"fold": i, "auc": 0.5 + i / 100, "log_loss": 0.69 - i / 100,
              "baseline_log_loss": 0.693} for i in range(1, 5)]  # fmt: skip
    folds[1]["auc"] = float("nan")  # a single-class fold

    fig = charts.folds_figure(folds)

    assert [t.name for t in fig.data] == ["AUC", "log loss", "baseline log loss"]
    assert fig.data[0].y[1] is None and fig.layout.xaxis.type == "category"
    assert [a for a in annotations(fig) if a.startswith("chance")]
    round_trips(fig)
    assert annotations(charts.folds_figure([])) == ["no folds"]


def test_roc_calibration_importances_and_predictions() -> None:
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 20_000)
    p = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.2, y.size), 0, 1)
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)

    roc = charts.roc_figure([("oos", fpr, tpr, roc_auc_score(y, p))], max_points=500)
    assert roc.data[0].name.startswith("oos (AUC 0.") and points(roc.data[0]) == 500
    assert roc.data[-1].name == "chance"
    frac, mean = calibration_curve(y, p, n_bins=10)
    cal = charts.calibration_figure([("oos", mean, frac)])
    assert len(cal.data[0].x) == len(mean) and cal.data[-1].name == "perfectly calibrated"
    imp = charts.importances_figure([f"f{i}" for i in range(40)], np.arange(40.0), top=5)
    assert list(imp.data[0].y) == ["f39", "f38", "f37", "f36", "f35"]
    assert imp.layout.yaxis.title.text == "top 5 of 40 features"
    dist = charts.prediction_distribution_figure(p)
    assert int(np.sum(dist.data[0].y)) == y.size and len(dist.data[0].y) == 50
    edges = np.linspace(0, 1, 51)
    by_class = charts.prediction_histogram_figure(
        edges, {"class 1": np.histogram(p[y == 1], edges)[0],
                "class 0": np.histogram(p[y == 0], edges)[0]}
    )  # fmt: skip
    assert [t.name for t in by_class.data] == ["class 1", "class 0"]
    assert by_class.layout.barmode == "stack"
    assert sum(sum(t.y) for t in by_class.data) == y.size
    for fig in (roc, cal, imp, dist, by_class):
        round_trips(fig)
    assert annotations(charts.roc_figure([])) == ["no ROC curves"]
    assert annotations(charts.calibration_figure([])) == ["no calibration curves"]
    assert annotations(charts.importances_figure([], [])) == ["no feature importances"]
    assert annotations(charts.prediction_distribution_figure([np.nan])) == ["no predictions"]
    assert annotations(charts.prediction_histogram_figure(edges, {})) == ["no predictions"]
    with pytest.raises(ConfigError, match="51 edges need 50 counts"):
        charts.prediction_histogram_figure(edges, {"all": [1, 2]})
    with pytest.raises(ConfigError, match="one value per feature"):
        charts.importances_figure(["a"], [1.0, 2.0])


def bench_record(name: str, commit: str, median: float, **extra: Any) -> dict[str, Any]:
    """A ``.bench/results.jsonl`` line as ``ultrathink bench`` writes it (fields used here)."""
    return {"name": name, "group": "engine", "unit": "s", "lower_is_better": True,
            "mode": "full", "median": median, "p99": median * 1.1, "commit": commit,
            "dirty": False, "date_utc": "2026-01-01T00:00:00Z", **extra}  # fmt: skip


def test_bench_history_figure_relates_each_series_to_its_first_commit() -> None:
    records = [
        bench_record("engine.sma", "a" * 40, 2.0),
        bench_record("engine.rate", "a" * 40, 100.0, unit="bars/s", lower_is_better=False),
        {"name": "optimize.overhead", "commit": "b" * 10, "wall_s": 3.0},  # a pytest bench
        bench_record("engine.sma", "b" * 40, 3.0),
        bench_record("engine.rate", "b" * 40, 50.0, unit="bars/s", lower_is_better=False),
        bench_record("engine.sma", "c" * 40, 1.0, mode="quick"),
    ]
    comparison = {"name": "engine.sma", "verdict": {"status": "regression"}}

    fig = charts.bench_history_figure(records, [comparison, "engine.gone"])

    by_name = {t.name: t for t in fig.data}
    assert list(by_name["engine.sma"].x) == ["a" * 10, "b" * 10]
    assert list(by_name["engine.sma"].y) == [1.0, 1.5]
    assert list(by_name["engine.rate"].y) == [1.0, 2.0], "half the throughput: 2x slower"
    assert list(by_name["engine.sma (quick)"].x) == ["c" * 10]
    marked = by_name["regression (bench --compare)"]
    assert list(marked.x) == ["c" * 10]
    assert list(marked.text) == ["engine.sma (quick): regression"]
    assert any("engine.gone" in a for a in annotations(fig))
    round_trips(fig)
    assert annotations(charts.bench_history_figure([]))[0].startswith("no benchmark results")


def test_bench_history_figure_marks_each_regression_where_it_happened() -> None:
    records = [
        bench_record("engine.sma", c * 40, m)
        for c, m in zip("abcd", (2.0, 3.0, 2.0, 4.0), strict=True)
    ]
    records.insert(2, bench_record("engine.rate", "b" * 40, 50.0, lower_is_better=False))
    found = [  # as web.browse.bench_history lists them: the index of the record judged
        {"index": 1, "name": "engine.sma", "base_commit": "a" * 10, "slowdown": 0.5,
         "p_value": 0.001},
        {"index": 4, "name": "engine.sma", "base_commit": "c" * 10, "slowdown": 1.0,
         "p_value": 0.002},
        {"index": 1, "name": "engine.sma"},  # the same point twice: one mark
        {"index": 99, "name": "engine.sma"},  # no such record: nothing to mark
    ]  # fmt: skip

    fig = charts.bench_history_figure(records, found)

    marked = next(t for t in fig.data if t.name == "regression (bench --compare)")
    assert list(marked.x) == ["b" * 10, "d" * 10]
    assert list(marked.y) == [1.5, 2.0], "on the series' own points"
    assert marked.text[0] == "engine.sma: regression, 50.0% slower than aaaaaaaaaa (p=0.001)"
    assert not annotations(fig)
    round_trips(fig)


def test_stage_shares_figure_reads_a_profile() -> None:
    summary = {"p50_us": 1.0, "p90_us": 2.0, "p99_us": 5.0}
    profile = {
        "bottleneck": [{"stage": "model", "share": 0.6, "estimated_s": 1.0},
                       {"stage": "persistence_queue", "share": 0.3, "estimated_s": 0.5},
                       {"stage": "other", "share": 0.1, "estimated_s": 0.1}],
        "stages": {"model": summary, "other": summary},
        "calls": {"persistence_queue": {**summary, "p99_us": 50.0}},
    }  # fmt: skip

    fig = charts.stage_shares_figure(profile)

    bars = fig.data[0]
    assert list(bars.y) == ["model", "persistence_queue", "other"]
    assert list(bars.x) == pytest.approx([60.0, 30.0, 10.0])
    p99 = next(t for t in fig.data if t.name == "p99")
    assert list(p99.x) == [5.0, 50.0, 5.0]
    assert fig.layout.xaxis2.type == "log"
    rows = charts.stage_shares_figure([{"stage": "risk", "share": 1.0}])
    assert list(rows.data[0].y) == ["risk"]
    assert annotations(charts.stage_shares_figure({"bottleneck": []})) == ["no sampled bars"]


def test_figure_div_is_a_fragment_for_a_page_with_plotly_inlined() -> None:
    fig = charts.trade_pnl_figure([1.0, -1.0])
    div = charts.figure_div(fig, "pnl-1")
    assert '<div id="pnl-1" class="plotly-graph-div"' in div and "Plotly.newPlot" in div
    assert "<script src" not in div and "<html" not in div
    with pytest.raises(ConfigError, match="div id"):
        charts.figure_div(fig, "1 bad")


# -- the reports built on the charts --------------------------------------------------------


def embedded_arrays(html: str) -> list[int]:
    """Lengths of the arrays the page's figures carry: typed arrays and lists of dates."""
    sizes = []
    for dtype, data in re.findall(r'"dtype":"(\w+)","bdata":"([^"]*)"', html):
        raw = base64.b64decode(json.loads(f'"{data}"'))  # the page escapes "/" as "\\/"
        sizes.append(len(raw) // np.dtype(dtype).itemsize)
    for body in re.findall(r'"x":\[("\d{4}-[^\]]*)\]', html):
        sizes.append(body.count(",") + 1)
    return sizes


@pytest.fixture(scope="module")
def long_run() -> Any:
    data = services.load("synthetic:n_bars=20000,seed=5")
    strategy = services.make_strategy("sma_cross", {"fast": "5", "slow": "20"})
    return services.run_strategy(strategy, data, services.engine_config(realistic=False)), data


def test_run_report_is_interactive_offline_and_downsampled(long_run, tmp_path: Path) -> None:
    result, data = long_run
    assert result.ts_ns.size == 20_000 > 2 * run_report.MAX_POINTS

    path = run_report.write_report(result, tmp_path / "out" / "run.html", data=data)

    html = path.read_text(encoding="utf-8")
    body = html[html.index("</head>") :]  # the head inlines plotly.js (it can export PNGs)
    assert "<img" not in body and "image/png" not in body
    divs = re.findall(r'<div id="([\w-]+)" class="plotly-graph-div"', html)
    assert divs == ["equity", "price0", "exposure", "monthly", "pnl"]
    assert not re.search(r"<(script|link|img)[^>]*(src|href)=", html), "opens offline"
    sizes = embedded_arrays(html)
    assert max(sizes) <= run_report.MAX_POINTS
    assert sum(n > run_report.MAX_POINTS // 2 for n in sizes) >= 6, "reduced, not dropped"
    assert "<td>long</td>" in html and "gross position value / equity" in html


def test_run_report_without_the_price_series_draws_the_fills(long_run) -> None:
    result, _ = long_run
    html = run_report.render(result)
    assert "the close is not drawn" in html
    assert "no price series given" in html


def test_training_report_has_fold_roc_calibration_and_distribution_charts(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1_200, 3))
    y = (X[:, 0] + rng.normal(size=1_200) > 0).astype(np.int64)
    splits = [(np.arange(0, k * 300), np.arange(k * 300, (k + 1) * 300)) for k in (1, 2, 3)]
    report = walk_forward_report(X, y, rng.normal(size=1_200) * 0.01, splits,
                                 LogisticRegression)  # fmt: skip
    result = TrainResult("v0007", report, 1_200, ["a", "b", "c"], T0, T0 + 1_199 * DAY_NS, 1.5)

    bare, md = write_reports(result, tmp_path / "bare")
    full, _ = write_reports(result, tmp_path / "full", y_true=y[report.test_index],
                            importances={"a": 3.0, "b": 1.0, "c": -0.5})  # fmt: skip

    assert md.read_text(encoding="utf-8").startswith("| fold |")
    text = bare.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and "<td>overall</td>" in text
    # the walk-forward keeps its out-of-sample labels: ROC and calibration by default
    assert re.findall(r'<div id="(\w+)" class="plotly-graph-div"', text) == [
        "folds", "roc", "calibration", "proba",
    ]  # fmt: skip
    assert text.count("not available: the training result holds") == 1
    text = full.read_text(encoding="utf-8")
    assert re.findall(r'<div id="(\w+)" class="plotly-graph-div"', text) == [
        "folds", "roc", "calibration", "importances", "proba",
    ]  # fmt: skip
    assert "not available: " not in text and "<script src" not in text
    with pytest.raises(ConfigError, match="labels for 900 out-of-sample predictions"):
        write_reports(result, tmp_path, y_true=y)


@pytest.mark.parametrize("long_short", [False, True])
def test_run_report_exposure_of_several_symbols_is_gross(long_short: bool) -> None:
    data = services.load("synthetic:n_bars=3000,seed=4,n_symbols=3")
    params = {"fast": "5", "slow": "20", "long_short": str(long_short).lower()}
    strategy = services.make_strategy("sma_cross", params)
    result = services.run_strategy(strategy, data, services.engine_config(realistic=False))
    assert {f.symbol for f in result.fills} == set(data.symbols)

    gross, title, _ = run_report._exposure(result, data)
    net, net_title, _ = run_report._exposure(result, None)

    assert (title, net_title) == ("gross position value / equity", "net position value / equity")
    if long_short:  # positions of both signs: the gross exceeds the net somewhere
        assert np.all(gross >= np.abs(net) - 1e-12) and np.any(gross > np.abs(net) + 1e-3)
    else:  # long only: the positions marked from fills and closes are the engine's own marks
        np.testing.assert_allclose(gross, np.abs(net), rtol=0, atol=1e-12)
    html = run_report.render(result, data=data)
    assert re.findall(r'<div id="([\w-]+)" class="plotly-graph-div"', html) == [
        "equity", "price0", "price1", "price2", "exposure", "monthly", "pnl",
    ]  # fmt: skip
