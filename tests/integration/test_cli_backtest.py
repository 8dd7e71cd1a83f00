"""``ultrathink backtest``: the JSON summary, accounting, parameters, costs and sizing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ultrathink.data import MarketData, load_data
from ultrathink.persistence import Store

SYNTH = "synthetic:n_bars=3000,seed=5"
FILL_KEYS = {"time", "symbol", "side", "quantity", "price", "fee"}
SUMMARY_KEYS = {
    "n_trades", "final_equity", "total_return", "max_drawdown", "bars_per_s", "fills",
    "n_fills", "orders", "metrics", "final_positions", "n_bars", "run_id",
}  # fmt: skip


def backtest_json(cli, *args: str) -> dict[str, Any]:
    result = cli("backtest", "--no-store", "--json", *args)
    assert result.code == 0, result.err
    return result.json()


def fill_ns(fill: dict[str, Any]) -> int:
    return int(pd.Timestamp(fill["time"]).value)


def bar_index(data: MarketData, ts_ns: int) -> int:
    i = int(np.searchsorted(data.ts_ns, ts_ns))
    assert data.ts_ns[i] == ts_ns, "fill time is not a bar time"
    return i


def replay_cash(fills: list[dict[str, Any]], cash: float) -> tuple[float, dict[str, float]]:
    """Cash and positions after ``fills``, booked the way the portfolio books them."""
    positions: dict[str, float] = {}
    for f in fills:
        signed = f["quantity"] if f["side"] == "BUY" else -f["quantity"]
        cash -= signed * f["price"] + f["fee"]
        positions[f["symbol"]] = positions.get(f["symbol"], 0.0) + signed
    return cash, positions


def final_equity_from_fills(summary: dict[str, Any], data: MarketData, cash: float) -> float:
    cash, positions = replay_cash(summary["fills"], cash)
    for symbol, qty in positions.items():
        cash += qty * float(data.for_symbol(symbol).close[-1])
    return cash


# -- summary shape and accounting ------------------------------------------------------------
def test_json_summary_has_metrics_and_complete_fills(cli) -> None:
    summary = backtest_json(cli)

    assert summary.keys() >= SUMMARY_KEYS
    assert summary["run_id"] is None
    assert summary["n_bars"] == len(load_data("sp500"))
    assert summary["bars_per_s"] > 0
    assert 0.0 <= summary["max_drawdown"] < 1.0
    assert summary["fills"], "the reference strategy trades on sp500"
    assert summary["n_fills"] == len(summary["fills"])
    for fill in summary["fills"]:
        assert fill.keys() >= FILL_KEYS
        assert fill["side"] in ("BUY", "SELL")
        assert fill["quantity"] > 0
        assert fill["price"] > 0
        assert fill["fee"] == 0.0  # backtests default to zero costs
    start = summary["metrics"]["start_equity"]
    assert summary["total_return"] == pytest.approx(summary["final_equity"] / start - 1.0)


@pytest.mark.parametrize("spec", ["sp500", "nasdaq", SYNTH, "synthetic:n_bars=2500,seed=11"])
def test_n_trades_counts_closed_long_round_trips(cli, spec: str) -> None:
    summary = backtest_json(cli, "--data", spec)
    sides = [f["side"] for f in summary["fills"]]

    assert sides[0::2] == ["BUY"] * len(sides[0::2]), "long-only: fills alternate BUY/SELL"
    assert sides[1::2] == ["SELL"] * len(sides[1::2])
    assert summary["n_trades"] == sides.count("SELL")
    if sides[-1] == "BUY":  # the last round trip is still open
        symbol = summary["fills"][-1]["symbol"]
        assert summary["final_positions"] == {symbol: summary["fills"][-1]["quantity"]}
    else:
        assert summary["final_positions"] == {}


@pytest.mark.parametrize(
    ("spec", "extra"),
    [
        ("sp500", ()),
        (SYNTH, ()),
        (SYNTH, ("--commission-bps", "5", "--slippage-bps", "3", "--fee-per-order", "1.5")),
        ("synthetic:n_bars=2000,seed=2,n_symbols=3", ()),
    ],
    ids=["sp500", "synthetic", "synthetic-costs", "three-symbols"],
)
def test_final_equity_equals_cash_from_fills_plus_marked_positions(
    cli, spec: str, extra: tuple[str, ...]
) -> None:
    summary = backtest_json(cli, "--data", spec, *extra)

    expected = final_equity_from_fills(summary, load_data(spec), 100_000.0)

    assert summary["final_equity"] == pytest.approx(expected, rel=1e-6)
    assert summary["metrics"]["total_fees"] == pytest.approx(
        sum(f["fee"] for f in summary["fills"]), rel=1e-9, abs=1e-12
    )


def test_market_orders_fill_at_the_next_bars_open(cli) -> None:
    data = load_data(SYNTH)

    summary = backtest_json(cli, "--data", SYNTH)

    for fill in summary["fills"]:
        i = bar_index(data, fill_ns(fill))
        assert i > 0
        assert fill["price"] == data.open[i]


def test_cash_option_sets_starting_equity(cli) -> None:
    summary = backtest_json(cli, "--data", SYNTH, "--cash", "50000")

    assert summary["metrics"]["start_equity"] == 50_000.0
    expected = final_equity_from_fills(summary, load_data(SYNTH), 50_000.0)
    assert summary["final_equity"] == pytest.approx(expected, rel=1e-6)


def test_start_and_end_restrict_the_bars(cli) -> None:
    summary = backtest_json(cli, "--start", "2005-01-01", "--end", "2006-12-31")
    data = load_data("sp500")
    lo = pd.Timestamp("2005-01-01", tz="UTC").value
    hi = pd.Timestamp("2007-01-01", tz="UTC").value

    assert summary["n_bars"] == int(((data.ts_ns >= lo) & (data.ts_ns < hi)).sum())
    assert all(lo <= fill_ns(f) < hi for f in summary["fills"])


# -- strategy parameters ------------------------------------------------------------------------
def test_params_change_the_result_and_are_reported(cli) -> None:
    default = backtest_json(cli, "--data", SYNTH)

    tuned = backtest_json(cli, "--data", SYNTH, "--param", "fast=5", "--param", "slow=20")

    assert tuned["params"] == {"fast": 5, "slow": 20, "long_short": False}
    assert default["params"] == {"fast": 10, "slow": 30, "long_short": False}
    assert tuned["fills"] != default["fills"]
    assert tuned["final_equity"] != default["final_equity"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        (("fast=50", "slow=20"), "fast"),
        (("fast=5", "slow=5"), "slow"),
        (("bogus=1",), "bogus"),
        (("fast=abc",), "fast"),
        (("fast=2.5",), "fast"),
        (("slow=-3",), "slow"),
        (("fast",), "fast"),
        (("=3",), "=3"),
    ],
    ids=["fast>slow", "fast=slow", "unknown-key", "not-int", "float", "negative", "no-=", "no-key"],
)
def test_bad_params_exit_2_with_one_line_error(cli, params: tuple[str, ...], named: str) -> None:
    argv = [a for p in params for a in ("--param", p)]

    result = cli("backtest", "--no-store", "--json", "--data", SYNTH, *argv)

    assert result.code == 2
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert named in lines[0]
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("--strategy", "no_such_strategy"), "unknown strategy"),
        (("--strategy", "missing_file.py"), "not found"),
        (("--data", "no_such_dataset"), "unknown data spec"),
        (("--data", "synthetic:n_bars=0"), "n_bars"),
        (("--commission-bps", "-1"), "commission_bps"),
        (("--slippage-bps", "5000"), "slippage_bps"),
        (("--cash", "0"), "starting_cash"),
        (("--quantity", "-5"), "quantity"),
        (("--max-drawdown-pct", "150"), "max_drawdown_pct"),
        (("--start", "not-a-date"), "--start"),
        (("--start", "2050-01-01"), "no bars"),
        (("--config", "missing.toml"), "missing.toml"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(v),
)
def test_bad_options_exit_2_with_one_line_error(cli, argv: tuple[str, ...], fragment: str) -> None:
    result = cli("backtest", "--no-store", "--json", *argv)

    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]


def test_invalid_toml_config_is_a_clean_error(cli, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[broker]\ncommission_bps = 1\nunknown_key = 3\n", encoding="utf-8")

    result = cli("backtest", "--no-store", "--json", "--config", str(config))

    assert result.code == 2
    assert "unknown_key" in result.err
    assert "Traceback" not in result.err


# -- costs -----------------------------------------------------------------------------------
def test_commission_lowers_final_equity_and_shows_in_fills(cli) -> None:
    free = backtest_json(cli, "--data", SYNTH, "--quantity", "100", "--commission-bps", "0")

    costly = backtest_json(cli, "--data", SYNTH, "--quantity", "100", "--commission-bps", "10")

    assert [(f["time"], f["price"]) for f in costly["fills"]] == [
        (f["time"], f["price"]) for f in free["fills"]
    ]
    for fill in costly["fills"]:
        assert fill["fee"] == pytest.approx(fill["quantity"] * fill["price"] * 10 / 1e4)
    total_fees = sum(f["fee"] for f in costly["fills"])
    assert costly["metrics"]["total_fees"] == pytest.approx(total_fees)
    assert costly["final_equity"] == pytest.approx(free["final_equity"] - total_fees)
    assert costly["final_equity"] < free["final_equity"]


def test_fee_per_order_is_charged_once_per_fill_of_each_order(cli) -> None:
    free = backtest_json(cli, "--data", SYNTH, "--quantity", "100")

    costly = backtest_json(cli, "--data", SYNTH, "--quantity", "100", "--fee-per-order", "2.5")

    assert all(f["fee"] == 2.5 for f in costly["fills"])
    n = len(costly["fills"])
    assert costly["final_equity"] == pytest.approx(free["final_equity"] - 2.5 * n)


def test_slippage_moves_fill_prices_against_the_trader(cli) -> None:
    data = load_data(SYNTH)
    free = backtest_json(cli, "--data", SYNTH, "--quantity", "100")

    slipped = backtest_json(cli, "--data", SYNTH, "--quantity", "100", "--slippage-bps", "20")

    assert len(slipped["fills"]) == len(free["fills"]) > 0
    n_capped = 0
    for fill in slipped["fills"]:
        i = bar_index(data, fill_ns(fill))
        open_, high, low = data.open[i], data.high[i], data.low[i]
        if fill["side"] == "BUY":  # worse by 20 bps, but never above the bar's high
            expected = min(open_ * (1 + 20 / 1e4), max(high, open_))
        else:
            expected = max(open_ * (1 - 20 / 1e4), min(low, open_))
        n_capped += expected != open_ * (1 + 20 / 1e4 if fill["side"] == "BUY" else 1 - 20 / 1e4)
        assert fill["price"] == pytest.approx(expected, rel=1e-12)
        assert low <= fill["price"] <= high or fill["price"] == open_
        assert fill["fee"] == 0.0
    assert n_capped > 0  # minute bars: 20 bps is often beyond the bar
    assert slipped["final_equity"] < free["final_equity"]


def test_latency_delays_fills_past_the_next_bar(cli) -> None:
    data = load_data(SYNTH)  # one-minute bars
    quick = backtest_json(cli, "--data", SYNTH, "--quantity", "100")

    slow = backtest_json(cli, "--data", SYNTH, "--quantity", "100", "--latency-ms", "90000")

    quick_idx = [bar_index(data, fill_ns(f)) for f in quick["fills"]]
    slow_idx = [bar_index(data, fill_ns(f)) for f in slow["fills"]]
    assert slow_idx == [i + 1 for i in quick_idx if i + 1 < len(data)]


def test_volume_cap_splits_fills(cli) -> None:
    summary = backtest_json(cli, "--data", SYNTH, "--quantity", "500", "--max-volume-pct", "10")
    data = load_data(SYNTH)

    by_order: dict[str, float] = {}
    for fill in summary["fills"]:
        volume = data.volume[bar_index(data, fill_ns(fill))]
        assert fill["quantity"] <= volume * 0.10 + 1e-9
        by_order[fill["client_order_id"]] = (
            by_order.get(fill["client_order_id"], 0.0) + fill["quantity"]
        )
    assert len(summary["fills"]) > len(by_order), "some order needed several fills"
    assert all(q <= 500 + 1e-9 for q in by_order.values())


# -- sizing ------------------------------------------------------------------------------------
def test_quantity_trades_exactly_that_many_units_per_order(cli) -> None:
    summary = backtest_json(cli, "--data", SYNTH, "--quantity", "10")

    assert summary["fills"]
    assert {f["quantity"] for f in summary["fills"]} == {10.0}
    assert set(summary["final_positions"].values()) <= {10.0}


def test_all_in_buys_floor_of_equity_over_signal_close(cli) -> None:
    data = load_data(SYNTH)

    summary = backtest_json(cli, "--data", SYNTH, "--all-in")

    cash = 100_000.0
    n_buys = 0
    for fill in summary["fills"]:
        if fill["side"] == "BUY":  # long-only: flat before each buy, so equity == cash
            signal_close = data.close[bar_index(data, fill_ns(fill)) - 1]
            assert fill["quantity"] == math.floor(cash / signal_close + 1e-9)
            n_buys += 1
        cash -= (fill["quantity"] if fill["side"] == "BUY" else -fill["quantity"]) * fill[
            "price"
        ] + fill["fee"]
    assert n_buys > 0


def test_all_in_is_the_default_sizing(cli) -> None:
    explicit = backtest_json(cli, "--data", SYNTH, "--all-in")

    default = backtest_json(cli, "--data", SYNTH)

    assert default["fills"] == explicit["fills"]


def test_quantity_and_all_in_are_mutually_exclusive(cli) -> None:
    result = cli("backtest", "--no-store", "--quantity", "5", "--all-in")

    assert result.code == 2
    assert "not allowed with" in result.err


def test_risk_limit_denies_orders_with_a_reason(cli) -> None:
    summary = backtest_json(cli, "--data", SYNTH, "--quantity", "10", "--max-position-qty", "5")

    assert summary["fills"] == []
    assert summary["n_denied"] > 0
    assert summary["orders"] == {"DENIED": summary["n_denied"]}
    assert summary["denial_reasons"] == {"MAX_POSITION": summary["n_denied"]}
    assert summary["final_equity"] == 100_000.0


# -- determinism -----------------------------------------------------------------------------
def _stable(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in summary.items()
        if k not in ("elapsed_s", "bars_per_s", "run_id", "audit_head")
    }


def test_same_inputs_give_identical_results(cli) -> None:
    args = ("--data", SYNTH, "--commission-bps", "2", "--slippage-bps", "1")

    first = backtest_json(cli, *args)
    second = backtest_json(cli, *args)

    assert _stable(first) == _stable(second)


def test_same_inputs_give_identical_stored_curves(cli, tmp_path: Path) -> None:
    db = tmp_path / "det.db"
    args = ("backtest", "--json", "--db", str(db), "--data", SYNTH, "--slippage-bps", "1")

    first = cli(*args).json()
    second = cli(*args).json()

    assert (first["run_id"], second["run_id"]) == (1, 2)
    assert _stable(first) == _stable(second)
    with Store(db) as store:
        ts1, eq1, cash1 = store.load_equity(1)
        ts2, eq2, cash2 = store.load_equity(2)
        assert store.load_fills(1) == store.load_fills(2)
    assert ts1.size == first["n_bars"]
    np.testing.assert_array_equal(ts1, ts2, strict=True)
    np.testing.assert_array_equal(eq1, eq2, strict=True)
    np.testing.assert_array_equal(cash1, cash2, strict=True)
    assert eq1[-1] == first["final_equity"]


def test_backtest_in_a_real_subprocess(cli_subprocess, cli) -> None:
    in_process = backtest_json(cli, "--data", SYNTH)

    result = cli_subprocess("backtest", "--no-store", "--json", "--data", SYNTH)

    assert result.code == 0, result.err
    assert _stable(result.json()) == _stable(in_process)


def count_round_trips(fills: list[dict[str, Any]]) -> int:
    """Round trips closed by ``fills``: each fill that brings a position to flat or through it."""
    positions: dict[str, float] = {}
    n = 0
    for f in fills:
        before = positions.get(f["symbol"], 0.0)
        after = before + (f["quantity"] if f["side"] == "BUY" else -f["quantity"])
        positions[f["symbol"]] = after
        if before and (after == 0 or (after > 0) != (before > 0)):
            n += 1
    return n


def test_long_short_flips_and_counts_every_closed_round_trip(cli) -> None:
    summary = backtest_json(cli, "--data", SYNTH, "--param", "long_short=true")

    fills = summary["fills"]
    _, positions = replay_cash(fills, 0.0)
    assert fills[1]["quantity"] > fills[0]["quantity"], "the second order flips the position"
    assert summary["n_trades"] == count_round_trips(fills) > 0
    assert {k: v for k, v in positions.items() if v} == summary["final_positions"]
    expected = final_equity_from_fills(summary, load_data(SYNTH), 100_000.0)
    assert summary["final_equity"] == pytest.approx(expected, rel=1e-6)


def test_environment_overrides_the_config(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ULTRATHINK__BROKER__COMMISSION_BPS", "10")

    summary = backtest_json(cli, "--data", SYNTH, "--quantity", "10")

    assert summary["fills"]
    for fill in summary["fills"]:
        assert fill["fee"] == pytest.approx(fill["quantity"] * fill["price"] * 10 / 1e4)


def test_bad_environment_value_is_a_clean_error(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ULTRATHINK__RISK__MAX_DRAWDOWN_PCT", "lots")

    result = cli("backtest", "--no-store", "--data", SYNTH)

    assert result.code == 2
    assert "risk.max_drawdown_pct" in result.err
    assert "Traceback" not in result.err
