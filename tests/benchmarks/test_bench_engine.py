"""Engine benchmarks (``make bench``): throughput and memory budgets of issue #2.

Each benchmark runs the real CLI in a subprocess — the full path, persistence included — and
reports the median and spread over repeats, plus the ratio to a reference measured in the
same job: iterating the same bars as ``Bar`` events with no engine at all. Results are
appended to ``.bench/results.jsonl`` with the git commit and machine description.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ultrathink.perf.bench_engine import cli_with_peak_rss

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[2]
N_BARS = 1_000_000
REPEATS = 3
BUDGET_BARS_PER_S = 500_000
BUDGET_PEAK_MB = 300
SPEC = f"synthetic:n_bars={N_BARS}"


def _cli(*args: str) -> tuple[dict[str, object], float]:
    """Run the CLI in a fresh process; return its JSON and the CLI process's peak RSS (MB)."""
    out, peak_mb = cli_with_peak_rss(list(args), ROOT)
    return json.loads(out), peak_mb


def _reference_bars_per_s() -> float:
    code = (
        "import time; from ultrathink.data import load_data;"
        f"d = load_data({SPEC!r}); t = time.perf_counter()\n"
        "for b in d.iter_bars(): pass\n"
        "print(len(d) / (time.perf_counter() - t))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def test_sma_cross_one_million_bars_full_path(
    tmp_path: Path, record: Callable[[str, dict[str, Any]], None]
) -> None:
    """sma_cross over 1,000,000 synthetic bars, persisted: >= 500k bars/s, <= 300 MB."""
    rates, peaks, refs = [], [], []
    summary: dict[str, object] = {}
    for i in range(REPEATS):
        refs.append(_reference_bars_per_s())
        db = tmp_path / f"bench{i}.db"
        summary, peak_mb = _cli("backtest", "--data", SPEC, "--db", str(db), "--json")
        rates.append(float(summary["bars_per_s"]))  # type: ignore[arg-type]
        peaks.append(peak_mb)
    median = statistics.median(rates)
    record(
        "backtest_sma_cross_1m_bars",
        {
            "bars_per_s_median": median,
            "bars_per_s_min": min(rates),
            "bars_per_s_max": max(rates),
            "bars_per_s_all": rates,
            "reference_iterate_bars_per_s_median": statistics.median(refs),
            "ratio_to_reference": median / statistics.median(refs),
            "peak_rss_mb_max": max(peaks),
            "peak_rss_mb_all": peaks,
            "n_trades": summary["n_trades"],
            "n_fills": summary["n_fills"],
        },
    )
    assert median >= BUDGET_BARS_PER_S, f"{median:,.0f} bars/s < budget {BUDGET_BARS_PER_S:,}"
    assert max(peaks) <= BUDGET_PEAK_MB, f"peak RSS {max(peaks):.0f} MB > {BUDGET_PEAK_MB} MB"
