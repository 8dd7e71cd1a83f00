"""Start-up: a whole ``ultrathink backtest`` process against importing numpy and pandas.

``startup.backtest_sp500`` is the wall time of ``ultrathink backtest --data sp500 --no-store
--json`` in a fresh process (imports, parsing, the embedded data, the run, the JSON);
``startup.numpy_pandas`` is ``python -c "import numpy, pandas"`` in the same venv, the floor
any Python data tool pays; ``startup.backtest_sp500_ratio`` runs the two alternately in each
repeat and reports the ratio, which is what the budget is about (at most 1.2x): a shared,
noisy machine moves both sides together.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ultrathink.perf.suite import Measurement, benchmark

#: The budget: the backtest process costs at most this multiple of importing numpy + pandas.
STARTUP_BUDGET_RATIO = 1.2
_REFERENCE = (sys.executable, "-c", "import numpy, pandas")


def _backtest_argv() -> list[str]:
    return [sys.executable, "-m", "ultrathink.cli", "backtest", "--data", "sp500",
            "--no-store", "--json"]  # fmt: skip


def _wall_s(argv: list[str] | tuple[str, ...]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRATHINK")}
    t0 = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          cwd=Path.cwd(), check=False)  # fmt: skip
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
    return elapsed


@benchmark("startup.backtest_sp500", "startup", "s", repeats=7, warmup=1)
def backtest_sp500(quick: bool) -> Callable[[], Measurement]:
    """Wall time of `ultrathink backtest --data sp500 --no-store --json`, a fresh process."""
    return lambda: Measurement(value=_wall_s(_backtest_argv()))


@benchmark("startup.numpy_pandas", "startup", "s", repeats=7, warmup=1)
def numpy_pandas(quick: bool) -> Callable[[], Measurement]:
    """Wall time of `python -c "import numpy, pandas"` in the same venv (the reference)."""
    return lambda: Measurement(value=_wall_s(_REFERENCE))


@benchmark("startup.backtest_sp500_ratio", "startup", "x", repeats=7, warmup=1)
def backtest_sp500_ratio(quick: bool) -> Callable[[], Measurement]:
    """The backtest process over the numpy+pandas import, measured back to back (budget 1.2x)."""

    def run() -> Measurement:
        reference = _wall_s(_REFERENCE)
        return Measurement(value=_wall_s(_backtest_argv()) / reference)

    return run
