"""Market events spliced into real bars, and the crash scenario's reference crossing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.data import load_data
from ultrathink.data.frame import MarketData
from ultrathink.data.synthetic import Crash, FlashCrash, Gap, Halt
from ultrathink.errors import ConfigError
from ultrathink.hardening.crash import CrashConfig, CrashDetector
from ultrathink.stress.scenarios.crash import _crossing
from ultrathink.stress.splice import splice


def valid(data: MarketData) -> bool:
    top = np.maximum(data.open, data.close)
    bottom = np.minimum(data.open, data.close)
    return bool(np.all(data.high >= top) and np.all(data.low <= bottom) and np.all(data.low > 0))


def test_a_crash_spliced_into_synthetic_bars_moves_closes_as_the_generator_does() -> None:
    base = load_data("synthetic:n_bars=300,seed=1")
    generated = load_data("synthetic:n_bars=300,seed=1,crash=30@100/3")

    spliced = splice(base, [Crash(pct=30, start_bar=100, n_bars=3)])

    np.testing.assert_allclose(spliced.close, generated.close, rtol=1e-12)
    np.testing.assert_allclose(spliced.open, generated.open, rtol=1e-12)
    assert spliced.name == "synthetic:n_bars=300,seed=1+crash=30@100/3"


def test_a_crash_in_sp500_keeps_the_bars_valid_and_the_fall_permanent() -> None:
    real = load_data("sp500")

    spliced = splice(real, [Crash(pct=50, start_bar=1000, n_bars=3)])

    assert valid(spliced) and len(spliced) == len(real)
    np.testing.assert_array_equal(spliced.close[:1000], real.close[:1000])
    np.testing.assert_allclose(spliced.close[1003:] / real.close[1003:], 0.5)
    # the data's own overnight gaps stay: an open keeps its ratio to the previous close
    np.testing.assert_allclose(
        spliced.open[1004:] / spliced.close[1003:-1], real.open[1004:] / real.close[1003:-1]
    )


def test_a_flash_crash_recovers_and_a_gap_moves_the_open() -> None:
    real = load_data("sp500")

    flash = splice(real, [FlashCrash(pct=20, at_bar=50, n_bars_down=2, n_bars_recover=5)])
    gap = splice(real, [Gap(pct=-15, at_bar=50)])

    assert valid(flash) and valid(gap)
    np.testing.assert_allclose(flash.close[51] / real.close[51], 0.8)
    np.testing.assert_allclose(flash.close[56:] / real.close[56:], 1.0)
    np.testing.assert_allclose(gap.open[50] / real.open[50], 0.85)
    np.testing.assert_allclose(gap.close[50:] / real.close[50:], 0.85)


def test_a_halt_removes_its_bars_of_the_symbol_it_names_only() -> None:
    two = load_data("synthetic:n_bars=200,seed=2,symbols=AAA+BBB")

    halted = splice(
        two, [Halt(start_bar=50, n_bars=10, symbol="AAA"), Gap(pct=-10, at_bar=60, symbol="AAA")]
    )

    aaa, bbb = halted.for_symbol("AAA"), halted.for_symbol("BBB")
    assert len(aaa) == 190 and len(bbb) == 200
    np.testing.assert_array_equal(bbb.close, two.for_symbol("BBB").close)
    assert aaa.open[50] == pytest.approx(two.for_symbol("AAA").open[60] * 0.9)


def test_events_out_of_the_data_are_refused() -> None:
    short = load_data("synthetic:n_bars=50,seed=2")

    with pytest.raises(ConfigError, match="reaches bar 59 but SYN has 50 bars"):
        splice(short, [Crash(pct=10, start_bar=40, n_bars=20)])
    with pytest.raises(ConfigError, match="names symbol 'XYZ'"):
        splice(short, [Gap(pct=-5, at_bar=3, symbol="XYZ")])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=1.0, max_value=200.0), min_size=1, max_size=60),
    st.floats(min_value=0.5, max_value=60.0),
    st.integers(min_value=1, max_value=8),
)
def test_the_reference_crossing_is_the_detectors_first_trip(
    closes: list[float], pct: float, n_bars: int
) -> None:
    detector = CrashDetector(CrashConfig(pct=pct, n_bars=n_bars))
    trips = [i for i, c in enumerate(closes) if detector.update("S", c) is not None]
    n = len(closes)
    data = MarketData.single_symbol(
        "S", np.arange(n, dtype=np.int64), *(np.asarray(closes),) * 4, np.ones(n)
    )

    assert _crossing(data, pct, n_bars) == (trips[0] if trips else None)
