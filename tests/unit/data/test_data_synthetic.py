"""Synthetic generator: determinism, scenarios, validity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ultrathink.data import MarketData, SyntheticConfig, generate, validate_frame
from ultrathink.data.synthetic import Crash, FlashCrash, Gap, Halt, Scenario, VolSpike
from ultrathink.errors import ConfigError

# no jumps or regime switches: scenario effects are then not blurred by random events
CALM = {"jump_intensity": 0.0, "regime_switch_prob": 0.0, "n_bars": 3000}


def calm(*scenarios: Scenario, **overrides: object) -> MarketData:
    return generate(SyntheticConfig.model_validate({**CALM, **overrides, "scenarios": scenarios}))


def test_same_seed_gives_identical_arrays() -> None:
    config = SyntheticConfig(n_bars=2000, symbols=("A", "B"), seed=11)

    first, second = generate(config), generate(config)

    for name in ("ts_ns", "symbol_idx", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


def test_different_seed_differs() -> None:
    assert generate(SyntheticConfig(seed=1)).sha256() != generate(SyntheticConfig(seed=2)).sha256()


def test_symbols_have_independent_streams() -> None:
    both = generate(SyntheticConfig(n_bars=500, symbols=("A", "B")))
    alone = generate(SyntheticConfig(n_bars=500, symbols=("A",)))

    assert not np.array_equal(both.for_symbol("A").close, both.for_symbol("B").close)
    np.testing.assert_array_equal(both.for_symbol("A").close, alone.close)


def test_multi_symbol_output_is_sorted_by_time_then_symbol() -> None:
    data = generate(SyntheticConfig(n_bars=300, n_symbols=3, freq="5min"))

    assert data.symbols == ("SYN1", "SYN2", "SYN3")
    assert len(data) == 900
    order = np.lexsort((data.symbol_idx, data.ts_ns))
    np.testing.assert_array_equal(order, np.arange(len(data)))


def test_timestamps_follow_start_and_freq() -> None:
    data = generate(SyntheticConfig(n_bars=10, freq="1h", start="2021-03-04"))

    assert data.start_ns == pd.Timestamp("2021-03-04", tz="UTC").value
    assert set(np.diff(data.ts_ns).tolist()) == {3_600_000_000_000}


def test_bars_per_year() -> None:
    assert SyntheticConfig(freq="1D").bars_per_year == 252
    assert SyntheticConfig(freq="1h").bars_per_year == pytest.approx(365.25 * 24)


def test_open_is_previous_close() -> None:
    data = generate(SyntheticConfig(n_bars=100))

    np.testing.assert_array_equal(data.open[1:], data.close[:-1])
    assert data.open[0] == 100.0


def test_crash_lowers_price_by_pct_over_the_window() -> None:
    data = calm(Crash(pct=20, start_bar=1000, n_bars=50))

    assert data.close[1049] / data.close[999] == pytest.approx(0.8, rel=0.01)


@pytest.mark.parametrize("pct", [-5.0, 7.5])
def test_gap_moves_the_open_against_previous_close(pct: float) -> None:
    data = calm(Gap(pct=pct, at_bar=300))

    assert data.open[300] / data.close[299] == pytest.approx(1 + pct / 100, rel=1e-12)


def test_flash_crash_falls_then_recovers() -> None:
    data = calm(FlashCrash(pct=10, at_bar=2000, n_bars_down=5, n_bars_recover=20))

    before = data.close[1999]
    assert data.close[2004] / before == pytest.approx(0.9, rel=0.01)
    assert data.close[2024] / before == pytest.approx(1.0, rel=0.01)


def test_vol_spike_multiplies_volatility_and_volume() -> None:
    data = calm(VolSpike(multiplier=3, start_bar=1000, n_bars=1000))
    returns = np.diff(np.log(data.close))

    ratio = returns[1000:1999].std() / returns[:999].std()

    assert ratio == pytest.approx(3, rel=0.15)
    assert data.volume[1000:2000].mean() / data.volume[:1000].mean() == pytest.approx(3, rel=0.15)


def test_halt_removes_the_bars_of_one_symbol() -> None:
    halt = Halt(start_bar=400, n_bars=30, symbol="AAA")

    data = calm(halt, n_bars=1000, symbols=("AAA", "BBB"))

    aaa, bbb = data.for_symbol("AAA"), data.for_symbol("BBB")
    assert (len(aaa), len(bbb)) == (970, 1000)
    missing = np.setdiff1d(bbb.ts_ns, aaa.ts_ns)
    np.testing.assert_array_equal(missing, bbb.ts_ns[400:430])


def test_prices_out_of_float_range_are_config_error() -> None:
    config = SyntheticConfig(n_bars=2000, jump_intensity=1e6, jump_mean=-1.0)

    with pytest.raises(ConfigError, match="float range"):
        generate(config)


def test_config_is_frozen_and_strict() -> None:
    config = SyntheticConfig()

    with pytest.raises(ValidationError):
        config.n_bars = 5  # type: ignore[misc]
    with pytest.raises(ValidationError, match="nbars"):
        SyntheticConfig(nbars=5)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "fields",
    [
        {"n_bars": 0},
        {"freq": "1M"},
        {"start": "not a date"},
        {"symbols": ("A", "A")},
        {"n_bars": 10, "scenarios": (Crash(pct=10, start_bar=5, n_bars=10),)},
        {"scenarios": (Halt(start_bar=1, n_bars=1, symbol="ZZZ"),)},
        {"n_bars": 1_000_000, "freq": "1D"},
        {"n_symbols": 2, "symbols": ("A",)},
    ],
)
def test_invalid_config_is_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SyntheticConfig.model_validate(fields)


@st.composite
def configs(draw: st.DrawFn) -> SyntheticConfig:
    n_bars = draw(st.integers(2, 300))
    bar = st.integers(1, n_bars - 1)
    length = st.integers(1, 5)
    pct = st.floats(1, 90)
    scenario_options = [
        st.builds(Crash, pct=pct, start_bar=bar, n_bars=length),
        st.builds(Gap, pct=st.floats(-90, 200), at_bar=bar),
        st.builds(FlashCrash, pct=pct, at_bar=bar, n_bars_down=length, n_bars_recover=length),
        st.builds(VolSpike, multiplier=st.floats(0.1, 10), start_bar=bar, n_bars=length),
        st.builds(Halt, start_bar=bar, n_bars=length),
    ]
    scenarios = draw(st.lists(st.one_of(scenario_options), max_size=3))
    return SyntheticConfig(
        n_bars=n_bars,
        n_symbols=draw(st.integers(1, 3)),  # type: ignore[call-arg]
        freq=draw(st.sampled_from(["1s", "1min", "5min", "1h", "1D"])),
        seed=draw(st.integers(0, 2**32)),
        vol_annual=draw(st.floats(0, 3)),
        drift_annual=draw(st.floats(-1, 1)),
        jump_intensity=draw(st.floats(0, 1000)),
        regime_switch_prob=draw(st.floats(0, 1)),
        scenarios=tuple(s for s in scenarios if s.span()[1] <= n_bars),
    )


@settings(max_examples=60, deadline=None)
@given(config=configs())
def test_generated_data_always_passes_validation(config: SyntheticConfig) -> None:
    data = generate(config)

    again = validate_frame(data.to_frame(), "property")

    assert again.sha256() == data.sha256()
    assert np.all(data.high >= np.maximum(data.open, data.close))
    assert np.all(data.low <= np.minimum(data.open, data.close))
