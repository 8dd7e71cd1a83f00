"""User strategies loaded from a file with ``--strategy path.py[:Class]``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from ultrathink.data import load_data
from ultrathink.persistence import Store

DATA = "synthetic:n_bars=40,seed=9"

BUY_5_SELL_10 = '''
from ultrathink.decision.strategy import Strategy


class BuyFifthSellTenth(Strategy):
    """Buys on the 5th bar and sells on the 10th (market orders)."""

    name = "buy5_sell10"

    class Params(Strategy.Params):
        quantity: int = 7

    def on_start(self):
        self.n_bars = 0
        self.events = []

    def on_bar(self, bar):
        self.n_bars += 1
        if self.n_bars == 5:
            self.buy(bar.symbol, self.params.quantity, tag="entry")
        elif self.n_bars == 10:
            self.sell(bar.symbol, self.params.quantity, tag="exit")
'''

TWO_CLASSES = """
from ultrathink.decision.strategy import Strategy


class First(Strategy):
    name = "first"

    def on_bar(self, bar):
        if self.position(bar.symbol) == 0:
            self.buy(bar.symbol, 1)


class Second(Strategy):
    name = "second"
"""


def write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def iso(ts_ns: int) -> str:
    return pd.Timestamp(int(ts_ns), unit="ns", tz="UTC").isoformat()


def test_user_strategy_fills_at_the_next_bars_open(cli, tmp_path: Path) -> None:
    path = write(tmp_path, "buy5.py", BUY_5_SELL_10)
    data = load_data(DATA)

    result = cli("backtest", "--no-store", "--json", "--data", DATA, "--strategy", str(path))

    assert result.code == 0, result.err
    summary = result.json()
    assert summary["strategy"] == "buy5_sell10"
    assert summary["params"] == {"quantity": 7}
    fills = [(f["time"], f["side"], f["quantity"], f["price"], f["fee"]) for f in summary["fills"]]
    assert fills == [
        (iso(data.ts_ns[5]), "BUY", 7.0, float(data.open[5]), 0.0),
        (iso(data.ts_ns[10]), "SELL", 7.0, float(data.open[10]), 0.0),
    ]
    assert summary["n_trades"] == 1
    assert summary["final_positions"] == {}
    pnl = 7.0 * (float(data.open[10]) - float(data.open[5]))
    assert summary["final_equity"] == pytest.approx(100_000.0 + pnl, rel=1e-12)


def test_user_strategy_params_and_store(cli, tmp_path: Path) -> None:
    path = write(tmp_path, "buy5.py", BUY_5_SELL_10)
    db = tmp_path / "u.db"

    result = cli(
        "backtest", "--json", "--db", str(db), "--data", DATA, "--strategy", f"{path}",
        "--param", "quantity=3",
    )  # fmt: skip

    assert result.code == 0, result.err
    assert [f["quantity"] for f in result.json()["fills"]] == [3.0, 3.0]
    with Store(db) as store:
        run = store.get_run(1)
        orders = store.load_orders(1)
    assert (run.strategy, run.params, run.status) == ("buy5_sell10", {"quantity": 3}, "completed")
    assert list(orders["tag"]) == ["entry", "exit"]
    assert list(orders["status"]) == ["FILLED", "FILLED"]


def test_class_is_picked_with_colon_suffix(cli, tmp_path: Path) -> None:
    path = write(tmp_path, "two.py", TWO_CLASSES)

    result = cli("backtest", "--no-store", "--json", "--data", DATA, "--strategy", f"{path}:First")

    assert result.code == 0, result.err
    assert result.json()["strategy"] == "first"
    assert result.json()["n_fills"] == 1


@pytest.mark.parametrize(
    ("source", "spec_suffix", "fragment"),
    [
        (TWO_CLASSES, "", "pick one with path.py:ClassName"),
        (TWO_CLASSES, ":Third", "no Strategy subclass 'Third'"),
        ("def broken(:\n", "", "failed to import"),
        ("raise RuntimeError('import-time boom')\n", "", "import-time boom"),
        ("x = 1\n", "", "Strategy subclass"),
    ],
    ids=["ambiguous", "unknown-class", "syntax-error", "raises-on-import", "no-strategy"],
)
def test_unloadable_strategy_file_is_a_clean_error(
    cli, tmp_path: Path, source: str, spec_suffix: str, fragment: str
) -> None:
    path = write(tmp_path, "user.py", source)

    result = cli("backtest", "--no-store", "--data", DATA, "--strategy", f"{path}{spec_suffix}")

    assert result.code == 2
    assert fragment in result.err
    assert "Traceback" not in result.err


def test_strategy_raising_in_on_bar_is_reported_with_the_bar(cli, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "raiser.py",
        """
        from ultrathink.decision.strategy import Strategy

        class Raiser(Strategy):
            name = "raiser"

            def on_bar(self, bar):
                raise ValueError("bad bar")
        """,
    )
    db = tmp_path / "r.db"

    result = cli("backtest", "--db", str(db), "--data", DATA, "--strategy", str(path))

    assert result.code == 2
    assert "Traceback" not in result.err
    assert "'raiser' raised in on_bar at bar 0" in result.err
    assert "bad bar" in result.err
    with Store(db) as store:
        assert store.get_run(1).status == "failed"


HOOK_RAISER = """
from ultrathink.decision.strategy import Strategy

class HookRaiser(Strategy):
    name = "hook_raiser"

    def on_start(self):
        self.n = 0
        {on_start}

    def on_bar(self, bar):
        self.n += 1
        if self.n == 3:
            self.buy(bar.symbol, 1)

    def on_fill(self, fill):
        {on_fill}

    def on_stop(self):
        {on_stop}
"""


@pytest.mark.parametrize("hook", ["on_start", "on_fill", "on_stop"])
def test_strategy_raising_in_any_hook_is_a_clean_error(cli, tmp_path: Path, hook: str) -> None:
    bodies = dict.fromkeys(("on_start", "on_fill", "on_stop"), "pass")
    bodies[hook] = f"raise RuntimeError('boom in {hook}')"
    path = write(tmp_path, "hooks.py", HOOK_RAISER.format(**bodies))

    try:
        result = cli("backtest", "--no-store", "--data", DATA, "--strategy", str(path))
    except RuntimeError as exc:  # escaped main(): the console script prints a traceback
        pytest.fail(f"exception escaped the CLI: {exc!r}")

    assert result.code == 2
    assert f"boom in {hook}" in result.err


OCO = """
from ultrathink.decision.strategy import Strategy

class OneCancelsOther(Strategy):
    name = "oco"

    def on_start(self):
        self.n = 0
        self.legs = []

    def on_bar(self, bar):
        self.n += 1
        if self.n == 5:
            self.legs = [self.buy(bar.symbol, 1), self.buy(bar.symbol, 1)]

    def on_fill(self, fill):
        for leg in self.legs:
            if leg != fill.client_order_id:
                self.cancel(leg)
"""


def test_one_cancels_other_from_on_fill(cli, tmp_path: Path) -> None:
    path = write(tmp_path, "oco.py", OCO)

    result = cli("backtest", "--no-store", "--json", "--data", DATA, "--strategy", str(path))

    assert result.code == 0, result.err
    summary = result.json()
    assert summary["n_fills"] == 1
    assert summary["orders"] == {"CANCELLED": 1, "FILLED": 1}


def test_user_strategy_in_a_real_subprocess(cli_subprocess, tmp_path: Path) -> None:
    path = write(tmp_path, "buy5.py", BUY_5_SELL_10)

    result = cli_subprocess(
        "backtest", "--no-store", "--json", "--data", DATA, "--strategy", path.name
    )

    assert result.code == 0, result.err
    assert [f["side"] for f in result.json()["fills"]] == ["BUY", "SELL"]
