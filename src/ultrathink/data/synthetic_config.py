"""Configuration of the synthetic market generator: ``SyntheticConfig`` and its scenarios.

Scenarios are small frozen models told apart by ``kind``; each applies to every symbol unless
its ``symbol`` names one. Bar numbers are 0-based positions in a symbol's bar sequence.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ultrathink.data.frame import NS_PER_DAY

# Parsed here with numpy rather than pandas: importing pandas costs ~80 MB of RSS, which the
# 1,000,000-bar benchmark run (budget 300 MB) cannot afford just to read "1min".
_FREQ = re.compile(r"^(\d*)\s*(ns|us|ms|s|min|h|H|d|D|w|W)$")
_UNIT_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "min": 60 * 10**9,
            "h": 3_600 * 10**9, "d": 86_400 * 10**9, "w": 7 * 86_400 * 10**9}  # fmt: skip
_MAX_NS = int(np.iinfo(np.int64).max)
_UTC_SUFFIXES = ("Z", "+00:00", "+0000")


def freq_to_ns(text: str) -> int:
    """Bar length of a fixed frequency such as ``1s``, ``5min``, ``1h``, ``1D``; 0 if invalid."""
    match = _FREQ.match(text.strip())
    if match is None:
        return 0
    count = int(match.group(1) or 1)
    return count * _UNIT_NS[match.group(2).lower()]


def start_to_ns(text: str) -> int | None:
    """UTC nanoseconds of an ISO date/time (naive = UTC, or with Z/+00:00); None if invalid."""
    value = text.strip()
    for suffix in _UTC_SUFFIXES:
        if value.endswith(suffix):
            value = value[: -len(suffix)]
    try:
        stamp = np.datetime64(value, "ns")
    except ValueError:
        return None
    return None if np.isnat(stamp) else int(stamp.astype(np.int64))


_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
_NS_PER_YEAR_24_7 = 365.25 * NS_PER_DAY
_TRADING_DAYS_PER_YEAR = 252.0


class _Scenario(BaseModel):
    model_config = _FROZEN

    symbol: str | None = None

    def span(self) -> tuple[int, int]:
        """Return the bars ``[start, stop)`` the scenario touches."""
        raise NotImplementedError


class Crash(_Scenario):
    """Price falls ``pct`` % spread evenly over ``n_bars`` bars from ``start_bar`` on."""

    kind: Literal["crash"] = "crash"
    pct: float = Field(gt=0, lt=100)
    start_bar: int = Field(ge=0)
    n_bars: int = Field(ge=1)

    def span(self) -> tuple[int, int]:
        """Return the bars ``[start, stop)`` the scenario touches."""
        return self.start_bar, self.start_bar + self.n_bars


class Gap(_Scenario):
    """The open of bar ``at_bar`` is ``pct`` % above (or, if negative, below) the last close."""

    kind: Literal["gap"] = "gap"
    pct: float = Field(gt=-100)
    at_bar: int = Field(ge=1)

    def span(self) -> tuple[int, int]:
        """Return the bars ``[start, stop)`` the scenario touches."""
        return self.at_bar, self.at_bar + 1


class FlashCrash(_Scenario):
    """Price falls ``pct`` % over ``n_bars_down`` bars, then regains it over ``n_bars_recover``."""

    kind: Literal["flash_crash"] = "flash_crash"
    pct: float = Field(gt=0, lt=100)
    at_bar: int = Field(ge=0)
    n_bars_down: int = Field(ge=1)
    n_bars_recover: int = Field(ge=1)

    def span(self) -> tuple[int, int]:
        """Return the bars ``[start, stop)`` the scenario touches."""
        return self.at_bar, self.at_bar + self.n_bars_down + self.n_bars_recover


class VolSpike(_Scenario):
    """Volatility (and volume) is multiplied by ``multiplier`` for ``n_bars`` bars."""

    kind: Literal["vol_spike"] = "vol_spike"
    multiplier: float = Field(gt=0, le=1000)
    start_bar: int = Field(ge=0)
    n_bars: int = Field(ge=1)

    def span(self) -> tuple[int, int]:
        """Return the bars ``[start, stop)`` the scenario touches."""
        return self.start_bar, self.start_bar + self.n_bars


class Halt(_Scenario):
    """Trading stops: ``n_bars`` bars from ``start_bar`` on are missing from the output."""

    kind: Literal["halt"] = "halt"
    start_bar: int = Field(ge=0)
    n_bars: int = Field(ge=1)

    def span(self) -> tuple[int, int]:
        """Return the bars ``[start, stop)`` the scenario touches."""
        return self.start_bar, self.start_bar + self.n_bars


Scenario = Annotated[Crash | Gap | FlashCrash | VolSpike | Halt, Field(discriminator="kind")]


def default_symbol_names(n_symbols: int) -> tuple[str, ...]:
    """Names ``SYN1``.. for ``n_symbols`` symbols, zero-padded so they sort in order."""
    width = len(str(n_symbols))
    return tuple(f"SYN{i:0{width}d}" for i in range(1, n_symbols + 1))


class SyntheticConfig(BaseModel):
    """Parameters of the seeded synthetic OHLCV generator.

    Log returns follow a geometric Brownian motion with Poisson jumps, a two-state Markov
    volatility regime and optional scenarios. Pass ``n_symbols=k`` instead of ``symbols`` to
    get ``k`` symbols named ``SYN1``..``SYNk``. Timestamps are evenly spaced every ``freq``
    from ``start`` (a 24/7 calendar); annualised parameters use 365.25 × 24 h per year for
    intraday bars and 252 bars per year for daily bars.
    """

    model_config = _FROZEN

    n_bars: int = Field(default=1000, ge=1, le=100_000_000)
    symbols: tuple[str, ...] = ("SYN",)
    freq: str = "1min"
    start: str = "2020-01-01"
    seed: int = Field(default=42, ge=0)
    start_price: float = Field(default=100.0, gt=0, le=1e12)
    drift_annual: float = Field(default=0.05, ge=-10, le=10)
    vol_annual: float = Field(default=0.20, ge=0, le=10)
    jump_intensity: float = Field(default=5.0, ge=0, le=1e6)
    jump_mean: float = Field(default=-0.02, ge=-1, le=1)
    jump_std: float = Field(default=0.04, ge=0, le=1)
    regime_low_mult: float = Field(default=1.0, gt=0, le=100)
    regime_high_mult: float = Field(default=2.5, gt=0, le=100)
    regime_switch_prob: float = Field(default=0.001, ge=0, le=1)
    base_volume: float = Field(default=1000.0, ge=0, le=1e15)
    scenarios: tuple[Scenario, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _expand_n_symbols(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "n_symbols" not in data:
            return data
        data = dict(data)
        n_symbols = data.pop("n_symbols")
        if not isinstance(n_symbols, int) or isinstance(n_symbols, bool) or n_symbols < 1:
            raise ValueError(f"n_symbols must be a positive integer, was {n_symbols!r}")
        names = default_symbol_names(n_symbols)
        if "symbols" in data and len(tuple(data["symbols"])) != n_symbols:
            raise ValueError(
                f"n_symbols={n_symbols} but {len(tuple(data['symbols']))} symbols were given; "
                f"fix: give only one of them"
            )
        data.setdefault("symbols", names)
        return data

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(s.strip() for s in value)
        if not names or any(not s or any(c in s for c in "+,:=") for s in names):
            raise ValueError(
                f"symbols must be one or more non-empty names without '+,:=', was {value!r}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"symbols must be distinct, was {value!r}")
        return names

    @field_validator("freq")
    @classmethod
    def _check_freq(cls, value: str) -> str:
        text = value.strip()
        if freq_to_ns(text) <= 0:
            raise ValueError(
                f"freq must be a fixed positive bar length such as 1s, 1min, 5min, 1h or 1D, "
                f"was {value!r}"
            )
        return text

    @field_validator("start")
    @classmethod
    def _check_start(cls, value: str) -> str:
        if start_to_ns(value) is None:
            raise ValueError(f"start must be an ISO date such as 2020-01-01, was {value!r}")
        return value

    @model_validator(mode="after")
    def _check_ranges(self) -> SyntheticConfig:
        last_ns = self.start_ns + (self.n_bars - 1) * self.bar_ns
        if last_ns > _MAX_NS:
            raise ValueError(
                f"{self.n_bars} bars of {self.freq} from {self.start} run past 2262-04-11; "
                f"fix: lower n_bars, use a shorter freq or an earlier start"
            )
        for scenario in self.scenarios:
            start, stop = scenario.span()
            if stop > self.n_bars:
                raise ValueError(
                    f"{scenario.kind} scenario covers bars {start}..{stop - 1} but n_bars is "
                    f"{self.n_bars}; fix: move it earlier or raise n_bars"
                )
            if scenario.symbol is not None and scenario.symbol not in self.symbols:
                raise ValueError(
                    f"{scenario.kind} scenario names symbol {scenario.symbol!r}, not one of "
                    f"{list(self.symbols)}"
                )
        return self

    @property
    def n_symbols(self) -> int:
        """Number of symbols."""
        return len(self.symbols)

    @property
    def bar_ns(self) -> int:
        """Bar length in nanoseconds."""
        return freq_to_ns(self.freq)

    @property
    def start_ns(self) -> int:
        """UTC nanoseconds of the first bar (a naive ``start`` is UTC)."""
        ts = start_to_ns(self.start)
        assert ts is not None  # validated
        return ts

    @property
    def bars_per_year(self) -> float:
        """Bars per year used to scale the annual drift, volatility and jump intensity."""
        if self.bar_ns >= NS_PER_DAY:
            return _TRADING_DAYS_PER_YEAR * NS_PER_DAY / self.bar_ns
        return _NS_PER_YEAR_24_7 / self.bar_ns

    def bar_sigma(self) -> float:
        """Volatility of one bar's log return before regime and scenario multipliers."""
        return self.vol_annual / math.sqrt(self.bars_per_year)
