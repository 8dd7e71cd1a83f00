"""Seeded, vectorised synthetic OHLCV generator with market scenarios.

Each symbol's close follows a geometric Brownian motion with Poisson jumps and a two-state
Markov volatility regime; scenarios (crash, gap, flash crash, volatility spike, trading halt)
are laid on top. Bar ``i`` opens at the close of bar ``i - 1`` (plus any gap) and its high/low
extend the open/close by a non-negative random excursion, so the output always satisfies the
validation rules. The same config gives bit-identical arrays; every symbol draws from its own
stream spawned from ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ultrathink.data.frame import MarketData
from ultrathink.data.synthetic_config import (
    Crash,
    FlashCrash,
    Gap,
    Halt,
    Scenario,
    SyntheticConfig,
    VolSpike,
    default_symbol_names,
)
from ultrathink.data.synthetic_spec import (
    SCENARIO_FORMATS,
    format_synthetic_spec,
    parse_synthetic_spec,
)
from ultrathink.errors import ConfigError

__all__ = [
    "SCENARIO_FORMATS",
    "Crash",
    "FlashCrash",
    "Gap",
    "Halt",
    "Scenario",
    "ScenarioPath",
    "SyntheticConfig",
    "VolSpike",
    "default_symbol_names",
    "format_synthetic_spec",
    "generate",
    "parse_synthetic_spec",
    "scenario_path",
]

# intrabar high/low excursion, in units of the bar's volatility
_RANGE_SCALE = 0.5
# log-normal noise of volume around its regime level (mean-corrected so E[volume] is kept)
_VOLUME_NOISE = 0.25


_Part = tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class ScenarioPath(NamedTuple):
    """What the price scenarios do to one symbol's ``n`` bars, as ``generate`` applies them.

    ``gaps[i]`` is the log move of bar ``i``'s open (a gap: it carries on to every later
    price); ``shifts[i]`` is added to bar ``i``'s close-to-close log return (a crash spread
    over its bars, a flash crash and its recovery); ``keep[i]`` is False where a halt removes
    the bar. Volatility spikes change no price level and are not in it. Other price series
    may take the same path (``stress/splice.py`` lays it over real bars).
    """

    gaps: np.ndarray
    shifts: np.ndarray
    keep: np.ndarray

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(open, close)`` multipliers of each bar: the path's cumulative effect at the
        bar's open (the previous close's, times its gap) and at its close."""
        log_close = np.cumsum(self.shifts + self.gaps)
        log_open = np.concatenate([[0.0], log_close[:-1]]) + self.gaps
        return np.exp(log_open), np.exp(log_close)


def scenario_path(n_bars: int, scenarios: Sequence[Scenario]) -> ScenarioPath:
    """The price path of ``scenarios`` over ``n_bars`` bars of one symbol (bar numbers are
    positions in that symbol's sequence; pass the scenarios that apply to it)."""
    gaps, shifts = _price_shifts(n_bars, scenarios)
    return ScenarioPath(gaps, shifts, _kept_bars(n_bars, scenarios))


def generate(config: SyntheticConfig) -> MarketData:
    """Generate synthetic OHLCV bars.

    Parameters
    ----------
    config : SyntheticConfig
        Size, calendar, seed, price dynamics and scenarios.

    Returns
    -------
    MarketData
        ``config.n_bars`` bars per symbol (fewer where a ``halt`` removes bars), sorted by
        (timestamp, symbol), named by the canonical spec string of ``config``.

    Raises
    ------
    ConfigError
        When the parameters drive prices out of the float range (zero or infinite).
    """
    seeds = np.random.SeedSequence(config.seed).spawn(config.n_symbols)
    times = config.start_ns + np.arange(config.n_bars, dtype=np.int64) * config.bar_ns
    parts: list[_Part] = []
    for symbol, seed in zip(config.symbols, seeds, strict=True):
        scenarios = [s for s in config.scenarios if s.symbol in (None, symbol)]
        # extreme parameters overflow exp(); _check_prices turns that into a ConfigError
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            columns = _symbol_bars(config, np.random.default_rng(seed), scenarios)
        keep = _kept_bars(config.n_bars, scenarios)
        if bool(keep.all()):  # no halt: no masked copies of every column
            o, h, lo, c, v = columns
            parts.append((symbol, times, o, h, lo, c, v))
        else:
            o, h, lo, c, v = (column[keep] for column in columns)
            parts.append((symbol, times[keep], o, h, lo, c, v))
        del columns
    if len(parts) == 1:
        symbol, ts, o, h, lo, c, v = parts[0]
        _check_prices([o, h, lo, c, v], config)
        return MarketData.single_symbol(symbol, ts, o, h, lo, c, v, format_synthetic_spec(config))
    ts = np.concatenate([p[1] for p in parts])
    names = np.repeat(np.asarray(config.symbols), [p[1].shape[0] for p in parts])
    values = [np.concatenate([p[i] for p in parts]) for i in range(2, 7)]
    _check_prices(values, config)
    open_, high, low, close, volume = values
    return MarketData.from_arrays(
        ts, names, open_, high, low, close, volume, name=format_synthetic_spec(config)
    )


def _symbol_bars(
    config: SyntheticConfig, rng: np.random.Generator, scenarios: list[Scenario]
) -> tuple[np.ndarray, ...]:
    n = config.n_bars
    dt = 1.0 / config.bars_per_year
    # draw every stream in a fixed order so scenarios never shift the random numbers
    shocks = rng.standard_normal(n)
    switches = rng.random(n)
    n_jumps = rng.poisson(config.jump_intensity * dt, n)
    jump_shocks = rng.standard_normal(n)
    excursions = np.abs(rng.standard_normal((2, n)))
    volume_shocks = rng.standard_normal(n)

    # in-place arithmetic and early ``del``: a 1,000,000-bar series must stay well under the
    # 300 MB budget of the benchmark run, so temporaries are released as soon as possible
    multiplier = _vol_multiplier(config, switches, scenarios)
    del switches
    sigma = config.bar_sigma() * multiplier
    jumps = np.sqrt(n_jumps) * config.jump_std * jump_shocks
    jumps += n_jumps * config.jump_mean
    del n_jumps, jump_shocks
    log_close = sigma * shocks
    del shocks
    log_close += config.drift_annual * dt
    log_close -= 0.5 * sigma**2
    log_close += jumps
    del jumps
    gaps, shifts = _price_shifts(n, scenarios)
    log_close += gaps
    log_close += shifts
    del shifts
    log_start = np.log(config.start_price)
    np.cumsum(log_close, out=log_close)
    log_close += log_start
    open_ = np.empty(n)
    open_[0] = log_start
    open_[1:] = log_close[:-1]
    open_ += gaps
    del gaps
    np.exp(open_, out=open_)
    close = np.exp(log_close, out=log_close)
    open_[0] = config.start_price  # exact, not exp(log(x)); bar 0 never gaps
    high = np.exp(_RANGE_SCALE * sigma * excursions[0])
    high *= np.maximum(open_, close)
    low = np.exp(-_RANGE_SCALE * sigma * excursions[1])
    low *= np.minimum(open_, close)
    del excursions, sigma
    volume = np.exp(_VOLUME_NOISE * volume_shocks - 0.5 * _VOLUME_NOISE**2)
    volume *= config.base_volume * multiplier
    np.round(volume, out=volume)
    return open_, high, low, close, volume


def _vol_multiplier(
    config: SyntheticConfig, switches: np.ndarray, scenarios: list[Scenario]
) -> np.ndarray:
    flips = switches < config.regime_switch_prob
    flips[0] = False
    is_high = (np.cumsum(flips) & 1).astype(bool)
    multiplier = np.where(is_high, config.regime_high_mult, config.regime_low_mult)
    for scenario in scenarios:
        if isinstance(scenario, VolSpike):
            start, stop = scenario.span()
            multiplier[start:stop] *= scenario.multiplier
    return multiplier


def _price_shifts(n: int, scenarios: Sequence[Scenario]) -> tuple[np.ndarray, np.ndarray]:
    # gaps move a bar's open (and everything after); shifts add to close-to-close returns
    gaps = np.zeros(n)
    shifts = np.zeros(n)
    for scenario in scenarios:
        if isinstance(scenario, Gap):
            gaps[scenario.at_bar] += np.log1p(scenario.pct / 100.0)
        elif isinstance(scenario, Crash):
            start, stop = scenario.span()
            shifts[start:stop] += np.log1p(-scenario.pct / 100.0) / scenario.n_bars
        elif isinstance(scenario, FlashCrash):
            drop = np.log1p(-scenario.pct / 100.0)
            bottom = scenario.at_bar + scenario.n_bars_down
            shifts[scenario.at_bar : bottom] += drop / scenario.n_bars_down
            shifts[bottom : scenario.span()[1]] -= drop / scenario.n_bars_recover
    return gaps, shifts


def _kept_bars(n: int, scenarios: Sequence[Scenario]) -> np.ndarray:
    keep = np.ones(n, dtype=bool)
    for scenario in scenarios:
        if isinstance(scenario, Halt):
            start, stop = scenario.span()
            keep[start:stop] = False
    return keep


def _check_prices(values: list[np.ndarray], config: SyntheticConfig) -> None:
    if values[0].shape[0] == 0:
        raise ConfigError("synthetic halt scenarios remove every bar; fix: shorten the halts")
    prices = values[:4]
    if all(bool(np.all(np.isfinite(p) & (p > 0))) for p in prices):
        return
    raise ConfigError(
        f"synthetic prices left the float range (zero or infinite) with n_bars={config.n_bars}, "
        f"freq={config.freq}, drift_annual={config.drift_annual}, "
        f"vol_annual={config.vol_annual}, jump_mean={config.jump_mean}; "
        f"fix: lower n_bars or the drift, volatility or jump parameters"
    )
