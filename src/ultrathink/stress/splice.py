"""Splice a scripted market event into real bars: a crash, a flash crash, a gap or a halt.

The events are the synthetic generator's own scenario models (``data/synthetic_config.py``)
and their price paths come from the generator's own arithmetic (``data.synthetic.
scenario_path``, its public API for it), so ``crash=30@500/3`` moves
real sp500 bars exactly as it moves synthetic ones: every close from the event on is
multiplied by the event's cumulative factor, each open by the previous close's factor (times
the gap, at a gap), so the data's own overnight gaps are kept; highs and lows are scaled with
their bar and widened to contain the new open and close. A halt removes its bars. Bar numbers
are positions in each symbol's own sequence, as in the generator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ultrathink.data.frame import MarketData
from ultrathink.data.synthetic import (
    Crash,
    FlashCrash,
    Gap,
    Halt,
    Scenario,
    format_synthetic_spec,
    scenario_path,
)
from ultrathink.data.synthetic_config import SyntheticConfig
from ultrathink.errors import ConfigError

Event = Crash | FlashCrash | Gap | Halt


def splice(data: MarketData, events: Sequence[Event]) -> MarketData:
    """A copy of ``data`` with ``events`` laid over each symbol they name (all by default).

    Raises
    ------
    ConfigError
        If an event reaches past a symbol's last bar, or names a symbol not in the data.
    """
    open_, high, low, close = (a.copy() for a in (data.open, data.high, data.low, data.close))
    keep = np.ones(len(data), dtype=bool)
    for event in events:
        if event.symbol is not None and event.symbol not in data.symbols:
            raise ConfigError(
                f"{event.kind} names symbol {event.symbol!r}, not one of {list(data.symbols)}"
            )
    for i, symbol in enumerate(data.symbols):
        mine: list[Scenario] = [e for e in events if e.symbol in (None, symbol)]
        if not mine:
            continue
        rows = np.flatnonzero(data.symbol_idx == i)
        reach = max(e.span()[1] for e in mine)
        if reach > rows.size:
            raise ConfigError(
                f"{mine[0].kind} reaches bar {reach - 1} but {symbol} has {rows.size} bars in "
                f"{data.name}; move it earlier"
            )
        path = scenario_path(rows.size, mine)
        f_open, f_close = path.factors()
        o, c = data.open[rows] * f_open, data.close[rows] * f_close
        open_[rows], close[rows] = o, c
        high[rows] = np.maximum.reduce([data.high[rows] * np.maximum(f_open, f_close), o, c])
        low[rows] = np.minimum.reduce([data.low[rows] * np.minimum(f_open, f_close), o, c])
        keep[rows] = path.keep
    name = f"{data.name}+{_label(events, data.symbols)}" if events else data.name
    spliced = dataclasses.replace(data, open=open_, high=high, low=low, close=close, name=name)
    return spliced if bool(keep.all()) else spliced._take(keep, data.symbols, reindex=False)


def _label(events: Sequence[Event], symbols: tuple[str, ...]) -> str:
    # the events as the synthetic spec writes them, e.g. crash=30@500/3 or halt=50/10:AAA
    reach = max(e.span()[1] for e in events)
    try:
        config = SyntheticConfig(n_bars=reach, symbols=symbols, scenarios=tuple(events))
    except ValueError:  # a symbol name the spec cannot write: name the kinds only
        return "+".join(e.kind for e in events)
    return "+".join(format_synthetic_spec(config).split(",")[-len(events) :])
