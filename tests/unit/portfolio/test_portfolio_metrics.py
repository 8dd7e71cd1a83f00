"""Run metrics on small hand-computed equity curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ultrathink.portfolio.metrics import Metrics, compute_metrics, drawdown_series
from ultrathink.portfolio.portfolio import ClosedTrade

DAY_NS = 86_400 * 10**9


def days(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) * DAY_NS


def trade(pnl: float) -> ClosedTrade:
    return ClosedTrade("AAA", 1, 0, 1, 1.0, pnl)


def metrics_of(
    equity: list[float],
    trades: list[ClosedTrade] | None = None,
    exposed: list[bool] | None = None,
    traded_notional: float = 0.0,
    total_fees: float = 0.0,
    start: float | None = None,
    ts_ns: np.ndarray | None = None,
) -> Metrics:
    eq = np.array(equity, dtype=np.float64)
    return compute_metrics(
        days(eq.size) if ts_ns is None else ts_ns,
        eq,
        np.array(exposed if exposed is not None else [False] * eq.size, dtype=bool),
        trades or [],
        traded_notional,
        total_fees,
        eq[0] if start is None and eq.size else (start or 100.0),
    )


def test_total_return_and_final_equity() -> None:
    m = metrics_of([100.0, 110.0, 99.0, 120.0])

    assert m.start_equity == 100.0
    assert m.final_equity == 120.0
    assert m.total_return == pytest.approx(0.2)


def test_max_drawdown_and_duration_recovered() -> None:
    # peak 110 at day 1, trough 99 (-10 %), back above at day 3
    m = metrics_of([100.0, 110.0, 99.0, 120.0])

    assert m.max_drawdown == pytest.approx(0.1)
    assert m.max_drawdown_duration_bars == 2
    assert m.max_drawdown_duration_days == pytest.approx(2.0)


def test_max_drawdown_duration_unrecovered_runs_to_the_end() -> None:
    m = metrics_of([100.0, 120.0, 90.0, 100.0, 110.0, 105.0])

    assert m.max_drawdown == pytest.approx(0.25)
    assert m.max_drawdown_duration_bars == 4
    assert m.max_drawdown_duration_days == pytest.approx(4.0)


def test_longest_drawdown_is_not_the_deepest() -> None:
    # deep but short (1 -> 3) vs shallow but long (3 -> 8)
    m = metrics_of([100, 200, 100, 210, 205, 205, 205, 205, 211.0])

    assert m.max_drawdown == pytest.approx(0.5)
    assert m.max_drawdown_duration_bars == 5


def test_drawdown_series() -> None:
    dd = drawdown_series(np.array([100.0, 110.0, 99.0, 120.0, 90.0]))

    np.testing.assert_allclose(dd, [0.0, 0.0, 0.1, 0.0, 0.25])


def test_drawdown_series_empty() -> None:
    assert drawdown_series(np.array([])).size == 0


def test_win_rate_and_profit_factor() -> None:
    m = metrics_of([100.0, 101.0], trades=[trade(10.0), trade(-5.0), trade(20.0), trade(0.0)])

    assert m.n_trades == 4
    assert m.win_rate == pytest.approx(0.5)  # a zero-PnL trade is not a win
    assert m.profit_factor == pytest.approx(30.0 / 5.0)


def test_profit_factor_without_losses_is_infinite_and_json_safe() -> None:
    m = metrics_of([100.0, 101.0], trades=[trade(3.0)])

    assert m.profit_factor == math.inf
    assert m.win_rate == 1.0
    assert m.to_dict()["profit_factor"] == 1e308


def test_no_trades() -> None:
    m = metrics_of([100.0, 101.0])

    assert (m.n_trades, m.win_rate, m.profit_factor) == (0, 0.0, 0.0)


def test_only_losing_trades() -> None:
    m = metrics_of([100.0, 99.0], trades=[trade(-1.0), trade(-2.0)])

    assert (m.win_rate, m.profit_factor) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("equity", "sign"),
    [
        ([100.0, 101.0, 103.0, 102.5, 105.0], 1),
        ([100.0, 99.0, 97.0, 97.5, 95.0], -1),
    ],
)
def test_sharpe_and_sortino_have_the_sign_of_the_mean_return(
    equity: list[float], sign: int
) -> None:
    m = metrics_of(equity)

    assert math.copysign(1, m.sharpe) == sign
    assert m.sharpe != 0.0
    assert math.copysign(1, m.sortino) == sign


def test_flat_curve_has_zero_volatility_and_sharpe() -> None:
    m = metrics_of([100.0] * 5)

    assert (m.sharpe, m.sortino, m.annual_volatility) == (0.0, 0.0, 0.0)
    assert m.max_drawdown == 0.0
    assert m.total_return == 0.0


def test_sharpe_is_annualised_with_observed_bar_rate() -> None:
    equity = [100.0, 101.0, 103.0, 102.5, 105.0]
    rets = np.diff(equity) / np.array(equity[:-1])

    m = metrics_of(equity)

    ppy = 4 / (4 / 365.25)  # 4 daily returns over 4 days
    assert m.periods_per_year == pytest.approx(ppy)
    assert m.annual_volatility == pytest.approx(rets.std(ddof=1) * math.sqrt(ppy))
    assert m.sharpe == pytest.approx(rets.mean() / rets.std(ddof=1) * math.sqrt(ppy))


def test_cagr_over_exactly_one_year() -> None:
    year_ns = int(365.25 * DAY_NS)

    m = metrics_of([100.0, 121.0], ts_ns=np.array([0, year_ns]))

    assert m.cagr == pytest.approx(0.21)


def test_cagr_of_a_curve_of_seconds_is_not_annualised_and_never_overflows() -> None:
    # a live feed session of 20 s: 1.01 ** (1 / 6e-7 years) overflowed before
    m = metrics_of([100.0, 101.0], ts_ns=np.array([0, 20_000_000_000]))

    assert m.cagr == 0.0 and m.total_return == pytest.approx(0.01)


def test_cagr_of_an_extreme_day_is_capped_not_an_error() -> None:
    m = metrics_of([100.0, 1e6], ts_ns=np.array([0, DAY_NS]))

    assert math.isfinite(m.cagr) and m.cagr > 1e300


def test_exposure_is_share_of_points_with_positions() -> None:
    m = metrics_of([100.0, 101.0, 102.0, 103.0], exposed=[True, False, True, True])

    assert m.exposure == pytest.approx(0.75)


def test_turnover_and_fees() -> None:
    m = metrics_of([100.0, 200.0, 300.0], traded_notional=600.0, total_fees=3.5)

    assert m.turnover == pytest.approx(600.0 / 200.0)
    assert m.total_fees == 3.5


def test_single_point_curve() -> None:
    m = metrics_of([100.0])

    assert m.total_return == 0.0
    assert (m.cagr, m.sharpe, m.periods_per_year) == (0.0, 0.0, 0.0)
    assert m.max_drawdown_duration_bars == 0


def test_empty_curve_falls_back_to_start_equity() -> None:
    m = compute_metrics(
        np.array([], dtype=np.int64),
        np.array([]),
        np.array([], dtype=bool),
        [],
        0.0,
        0.0,
        1_000.0,
    )

    assert m.final_equity == 1_000.0
    assert m.total_return == 0.0
    assert m.exposure == 0.0
    assert m.max_drawdown == 0.0


def test_to_dict_has_every_field_and_only_finite_numbers() -> None:
    m = metrics_of([100.0, 110.0, 99.0, 120.0], trades=[trade(1.0)])

    d = m.to_dict()

    assert set(d) == set(Metrics.__dataclass_fields__)
    assert all(math.isfinite(v) for v in d.values())


def test_curve_without_drawdown_has_zero_drawdown_duration() -> None:
    m = metrics_of([100.0, 101.0, 102.0, 103.0])

    assert m.max_drawdown == 0.0
    assert m.max_drawdown_duration_bars == 0
    assert m.max_drawdown_duration_days == 0.0
