"""Sizing through the whole engine: a sized buy is never refused for buying power.

Regressions of the audit finding "Multi-symbol all-in sizing drops entries": all-in sizing
split equity across the symbols at the signal close, but the second symbol's entry could
cost more than the cash left (the first position had gained), and risk denied it with
INSUFFICIENT_BUYING_POWER — the entry was lost. ``Strategy.target_position`` now caps such a
buy at what cash covers (``decision/sizing.py``), with the risk check's own arithmetic.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ultrathink.cli import main
from ultrathink.core.enums import Side
from ultrathink.data import load_data
from ultrathink.decision.builtin import SmaCross
from ultrathink.engine.config import EngineConfig
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.services import run_strategy

TWO_SYMBOLS = "synthetic:n_bars=5000,seed=7,symbols=AAA+BBB"


def backtest(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = main(["backtest", "--data", TWO_SYMBOLS, "--json", "--no-store", *args])
    out = capsys.readouterr().out
    assert code == 0, out
    summary: dict[str, Any] = json.loads(out)
    return summary


def entries(summary: dict[str, Any]) -> Counter[str]:
    return Counter(f["symbol"] for f in summary["fills"] if f["side"] == "BUY")


def test_multi_symbol_all_in_sizing_drops_no_entry(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    all_in = backtest(capsys)  # used to give 24 INSUFFICIENT_BUYING_POWER denials
    one_unit = backtest(capsys, "--quantity", "1")  # cash never binds: every signal enters

    assert all_in["n_denied"] == 0
    assert all_in["denial_reasons"] == {} and all_in["repeated_denials"] == {}
    assert all_in["orders"] == {"FILLED": all_in["n_fills"]}
    assert all_in["capped_buys"] > 0  # the case arose: buys were cut to the cash left
    assert entries(all_in) == entries(one_unit)  # and none was dropped
    assert set(entries(all_in)) == {"AAA", "BBB"}


@pytest.mark.parametrize(
    "broker",
    [
        {"commission_bps": 10.0},
        {"commission_bps": 10.0, "slippage_bps": 5.0, "fee_per_order": 5.0},
    ],
    ids=["commission", "commission+slippage+order-fee"],
)
def test_single_symbol_sizing_leaves_room_for_the_costs(broker: dict[str, float]) -> None:
    data = load_data("synthetic:n_bars=5000,seed=7")
    config = EngineConfig(broker=PaperBrokerConfig(**broker))
    cost_factor = 1 + (broker["commission_bps"] + broker.get("slippage_bps", 0.0)) / 1e4
    fee_per_order = broker.get("fee_per_order", 0.0)

    result = run_strategy(SmaCross(), data, config)

    assert result.n_denied == 0 and result.denial_reasons == {}
    assert data.n_symbols == 1 and np.array_equal(result.ts_ns, data.ts_ns)
    bar_of = {int(ts): i for i, ts in enumerate(data.ts_ns)}
    buys = [f for f in result.fills if f.side is Side.BUY]
    assert len(buys) > 10
    for fill in buys:
        i = bar_of[fill.ts_ns]  # latency 0: the order was sent at the previous bar's close
        close, cash_then = float(data.close[i - 1]), float(result.cash[i - 1])
        reserved = fill.quantity * close * cost_factor + fee_per_order
        assert reserved <= cash_then + 1e-9, f"buy at {fill.ts_ns} sized past the cash"
        # cash goes below zero only by what the fill cost above the reservation (a gap up)
        paid = fill.quantity * fill.price + fill.fee
        assert float(result.cash[i]) >= -max(0.0, paid - reserved) - 1e-6
