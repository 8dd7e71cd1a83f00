"""Benchmarks of the trading path: risk, paper broker, portfolio, end-to-end backtest, memory.

The component benchmarks drive one public method in a loop over pre-built events (requests,
fills, prices), so they measure that method and not the construction of its inputs. The
end-to-end benchmarks run ``sma_cross`` over synthetic minute bars with the SQLite store on,
as ``tests/benchmarks/test_bench_engine.py`` does: 1,000,000 bars in full mode.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ultrathink.perf.bench_data import bars
from ultrathink.perf.suite import Measurement, benchmark

SYMBOL = "SPX"


def _n(quick: bool, quick_n: int, full_n: int) -> int:
    return quick_n if quick else full_n


class _FlatOrders:
    # OrdersView of a book with no working orders: risk sees only the portfolio
    def pending_qty(self, symbol: str) -> float:
        return 0.0

    def n_open_orders(self) -> int:
        return 0

    def pending_buy_notional(self) -> float:
        return 0.0

    def pending_gross_notional(self, exclude_symbol: str) -> float:
        return 0.0


class _CountingSink:
    # ExecutionSink that only counts what the broker reports
    def __init__(self) -> None:
        self.n_events = 0
        self.n_fills = 0

    def on_order_event(self, event: Any) -> None:
        self.n_events += 1

    def on_fill(self, fill: Any, order: Any) -> None:
        self.n_fills += 1


def _requests(n: int, prefix: str) -> list[Any]:
    from ultrathink.core.enums import Side
    from ultrathink.core.events import OrderRequest

    sides = (Side.BUY, Side.SELL)
    return [OrderRequest(f"{prefix}-{i:09d}", i, SYMBOL, sides[i % 2], 1.0) for i in range(n)]


@benchmark("risk.check", "risk", "ops/s")
def risk_check(quick: bool) -> Any:
    """``RiskEngine.check`` with the default limits on alternating 1-unit orders (checks/s)."""
    from ultrathink.portfolio.portfolio import Portfolio
    from ultrathink.risk.config import RiskConfig
    from ultrathink.risk.engine import RiskEngine

    portfolio = Portfolio(100_000.0)
    portfolio.mark(SYMBOL, 100.0)
    risk = RiskEngine(RiskConfig(), portfolio, _FlatOrders())
    requests = _requests(_n(quick, 50_000, 500_000), "R")

    def run() -> int:
        check = risk.check
        for req in requests:
            check(req)
        return len(requests)

    return run


class _Broker:
    # a fresh PaperBroker per repeat: its books grow with every order
    def __init__(self, quick: bool, with_fills: bool) -> None:
        n_orders = _n(quick, 20_000, 200_000)
        self.bars = list(bars(True, quick_n=n_orders + 1).iter_bars())
        symbol = self.bars[0].symbol
        self.requests = [r._replace(symbol=symbol) for r in _requests(n_orders, "P")]
        self.with_fills = with_fills

    def setup(self) -> None:
        from ultrathink.core.clock import TestClock
        from ultrathink.execution.costs import PaperBrokerConfig
        from ultrathink.execution.paper import PaperBroker

        self.clock = TestClock(0)
        self.sink = _CountingSink()
        config = PaperBrokerConfig(commission_bps=1.0, slippage_bps=2.0)
        self.broker = PaperBroker(config, self.clock, self.sink)

    def run(self) -> int:
        if not self.with_fills:
            submit = self.broker.submit
            for req in self.requests:
                submit(req)
            return len(self.requests)
        return self._submit_and_fill()

    def _submit_and_fill(self) -> int:
        # order i is submitted at bar i's time and filled at bar i + 1's open
        submit, on_bar, clock = self.broker.submit, self.broker.on_bar, self.clock
        bars_ = self.bars
        for i, req in enumerate(self.requests):
            bar = bars_[i]
            clock.set_ns(bar.ts_ns)
            on_bar(bar)
            submit(req._replace(ts_ns=bar.ts_ns))
        on_bar(bars_[-1])
        if self.sink.n_fills != len(self.requests):
            raise RuntimeError(f"{self.sink.n_fills} fills for {len(self.requests)} orders")
        return self.sink.n_fills

    def teardown(self) -> None:
        del self.broker


@benchmark("execution.paper_submit", "execution", "ops/s")
def paper_submit(quick: bool) -> _Broker:
    """``PaperBroker.submit`` of market orders: validation, ACCEPTED event, book (orders/s)."""
    return _Broker(quick, with_fills=False)


@benchmark("execution.paper_fill", "execution", "ops/s")
def paper_fill(quick: bool) -> _Broker:
    """Submit a market order on each bar and fill it at the next open (fills/s)."""
    return _Broker(quick, with_fills=True)


class _PortfolioCase:
    def __init__(self, quick: bool, marks: bool) -> None:
        from ultrathink.core.enums import Side
        from ultrathink.core.events import Fill

        n = _n(quick, 50_000, 500_000)
        self.marks = marks
        self.prices = [100.0 + (i % 97) * 0.01 for i in range(n)]
        sides = (Side.BUY, Side.SELL)
        self.fills = [
            Fill(i, f"O-{i}", f"F-{i}", SYMBOL, sides[i % 2], 10.0, p, 0.1)
            for i, p in enumerate(self.prices)
        ]

    def setup(self) -> None:
        from ultrathink.portfolio.portfolio import Portfolio

        self.portfolio = Portfolio(1_000_000.0)
        self.portfolio.apply_fill(self.fills[0])  # an open position: marks move equity

    def run(self) -> int:
        if self.marks:
            mark = self.portfolio.mark
            for price in self.prices:
                mark(SYMBOL, price)
            return len(self.prices)
        apply_fill = self.portfolio.apply_fill
        for fill in self.fills[1:]:
            apply_fill(fill)
        return len(self.fills) - 1

    def teardown(self) -> None:
        del self.portfolio


@benchmark("portfolio.apply_fill", "portfolio", "ops/s")
def portfolio_apply_fill(quick: bool) -> _PortfolioCase:
    """``Portfolio.apply_fill`` alternating buys and sells: round trips booked (fills/s)."""
    return _PortfolioCase(quick, marks=False)


@benchmark("portfolio.mark", "portfolio", "ops/s")
def portfolio_mark(quick: bool) -> _PortfolioCase:
    """``Portfolio.mark`` of an open position at each close (marks/s)."""
    return _PortfolioCase(quick, marks=True)


class _Backtest:
    # sma_cross through services.run_strategy with a fresh SQLite store per repeat
    def __init__(self, quick: bool) -> None:
        self.data = bars(quick)
        self._dir = Path(tempfile.mkdtemp(prefix="ultrathink-bench-"))
        self._n = 0

    def setup(self) -> None:
        from ultrathink import services

        self._n += 1
        self.strategy = services.make_strategy("sma_cross", {})

    def run(self) -> Measurement:
        from ultrathink import services
        from ultrathink.engine.config import EngineConfig

        db = self._dir / f"bt{self._n}.db"
        result = services.run_strategy(self.strategy, self.data, EngineConfig(), db_path=db)
        return Measurement(value=result.bars_per_s)

    def teardown(self) -> None:
        for path in self._dir.glob(f"bt{self._n}.db*"):
            path.unlink()

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


@benchmark("engine.backtest_sma_cross", "engine", "ops/s", repeats=3)
def backtest_sma_cross(quick: bool) -> _Backtest:
    """End-to-end ``sma_cross`` backtest, store on: the engine's own bars/s."""
    return _Backtest(quick)


PEAK_RSS_WRAPPER = """
import runpy, sys
sys.argv = ["ultrathink", *sys.argv[1:]]
try:
    runpy.run_module("ultrathink.cli", run_name="__main__")
finally:
    with open("/proc/self/status") as fh:
        hwm = next(line.split()[1] for line in fh if line.startswith("VmHWM"))
    print(f"PEAK_KB {hwm}", file=sys.stderr)
"""
# VmHWM is this process image's own high-water mark; ru_maxrss would fold in the forked
# parent: a child of a large pytest process reported 315-405 MB for a 240 MB run


def cli_with_peak_rss(args: list[str], cwd: Path | str) -> tuple[str, float]:
    """Run ``ultrathink ARGS`` in a fresh process; its stdout and its own peak RSS (MB).

    The store writer runs in a child process (~55 MB steady) and is not included.
    """
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_WRAPPER, *args],
        capture_output=True, text=True, check=False, cwd=cwd,
    )  # fmt: skip
    lines = [x for x in proc.stderr.splitlines() if x.startswith("PEAK_KB")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"ultrathink {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return proc.stdout, int(lines[-1].split()[1]) / 1024


@benchmark("engine.peak_rss_session", "engine", "MB", repeats=3, warmup=0)
def peak_rss_session(quick: bool) -> Any:
    """Peak RSS (VmHWM, MB) of a fresh ``ultrathink backtest`` process, 1,000,000 bars."""
    spec = f"synthetic:n_bars={_n(quick, 50_000, 1_000_000)}"

    def run() -> Measurement:
        with tempfile.TemporaryDirectory(prefix="ultrathink-bench-") as tmp:
            args = ["backtest", "--data", spec, "--db", str(Path(tmp) / "rss.db"), "--json"]
            _out, peak_mb = cli_with_peak_rss(args, tmp)
        return Measurement(value=peak_mb)

    return run
