"""``write_plots``: latency histograms and the throughput chart are valid PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ultrathink.perf.plots import write_plots
from ultrathink.perf.suite import BenchResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _result(
    name: str, unit: str, values: list[float], events: np.ndarray | None = None
) -> BenchResult:
    return BenchResult(name, "test", unit, unit != "ops/s", values, 1, True, events)


def _assert_png(path: Path) -> None:
    import matplotlib.pyplot as plt

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = plt.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_writes_a_histogram_per_latency_result_and_one_throughput_chart(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    events = (rng.lognormal(np.log(8_000), 0.3, 5_000)).astype(np.int64)
    results = [
        _result("decision.ml_latency", "us", [8.0, 8.2], events),
        _result("risk.check", "ops/s", [7e5, 7.2e5, 6.9e5]),
        _result("engine.backtest_sma_cross", "ops/s", [5.9e5, 6.0e5]),
        _result("models.train_ensemble", "s", [1.9, 2.0]),
    ]

    files = write_plots(results, tmp_path / "plots")

    assert sorted(p.name for p in files) == ["latency_decision_ml_latency.png", "throughput.png"]
    for path in files:
        _assert_png(path)


def test_nothing_to_plot_writes_nothing(tmp_path: Path) -> None:
    assert write_plots([_result("models.train_ensemble", "s", [1.0, 2.0])], tmp_path) == []


def test_cli_plots_option_writes_pngs(bench_cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "plots"

    result = bench_cli(
        "--filter", "streaming_update", "--quick", "--repeats", "1", "--warmup", "0",
        "--no-save", "--plots", str(out),
    )  # fmt: skip

    assert result.code == 0, result.err
    [png] = sorted(out.iterdir())
    assert png.name == "latency_features_streaming_update.png"
    _assert_png(png)


@pytest.mark.parametrize("events", [None, np.array([], dtype=np.int64)])
def test_latency_plot_needs_events(tmp_path: Path, events: np.ndarray | None) -> None:
    from ultrathink.perf.plots import plot_latency

    with pytest.raises(ValueError, match="no per-event latencies"):
        plot_latency(_result("x", "us", [1.0], events), tmp_path / "x.png")
