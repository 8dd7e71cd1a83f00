"""Strategies the stress scenarios trade: each makes one kind of pressure, deterministically.

The file is importable (``ultrathink.stress.strategies``) for runs in this process, and
loadable by path for a paper session in a child process (``ultrathink paper --strategy
<this file>:Burner``): it imports only absolute names, so both ways define the same classes.

==============  ===================================================================
strategy        what it does
==============  ===================================================================
``Rebuyer``     holds its allotted size; whenever flat, asks to buy it back (so every
                bar after a halt tries an exposure-increasing order)
``Flipper``     alternates its target between ``qty`` long and flat every ``every``
                bars: a steady stream of orders for broker faults and kills
``Quoter``      keeps one resting limit buy ``offset_pct`` under the close, cancelled
                and replaced every bar: a steady stream of cancels
``Burner``      ``Flipper`` plus ``work`` units of pure-Python CPU work per decision
                (CPU contention shows as decision latency)
``Ballast``     ``Flipper`` plus ``mb_per_bar`` MiB kept per bar, up to ``max_mb`` (a
                leak the degraded-mode cleanup cannot free)
==============  ===================================================================
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ultrathink.core.events import Bar
from ultrathink.decision.strategy import Strategy

_MIB = 1 << 20
_EPS = 1e-9


class Rebuyer(Strategy):
    """Buy the allotted size of each symbol; whenever flat with nothing working, buy again."""

    name = "rebuyer"

    def on_bar(self, bar: Bar) -> None:
        symbol = bar.symbol
        ctx = self.ctx
        # within the accounting's 1e-9 (the working-orders view is exactly 0 when empty)
        if abs(ctx.position(symbol)) < _EPS and abs(ctx.pending_qty(symbol)) < _EPS:
            self.target_position(symbol, self.order_size(symbol, bar.close))


class Flipper(Strategy):
    """Every ``every`` bars of a symbol, alternate its target between ``qty`` and flat."""

    name = "flipper"

    class Params(Strategy.Params):
        every: int = Field(default=2, ge=1)
        qty: float = Field(default=10.0, gt=0)

    params: Params

    def on_start(self) -> None:
        self._seen: dict[str, int] = {}

    def on_bar(self, bar: Bar) -> None:
        i = self._seen.get(bar.symbol, 0)
        self._seen[bar.symbol] = i + 1
        every = self.params.every
        if i % every == 0:
            long = (i // every) % 2 == 0
            self.target_position(bar.symbol, self.params.qty if long else 0.0)


class Quoter(Strategy):
    """Every bar, cancel the symbol's working orders and rest a limit buy under the close."""

    name = "quoter"

    class Params(Strategy.Params):
        offset_pct: float = Field(default=5.0, gt=0, lt=100)
        qty: float = Field(default=5.0, gt=0)

    params: Params

    def on_bar(self, bar: Bar) -> None:
        self.cancel_all(bar.symbol)
        limit = round(bar.close * (1.0 - self.params.offset_pct / 100.0), 2)
        self.buy(bar.symbol, self.params.qty, limit=limit)


class Burner(Flipper):
    """A ``Flipper`` whose every decision also does ``work`` units of CPU work."""

    name = "burner"

    class Params(Flipper.Params):
        work: int = Field(default=20_000, ge=0, le=100_000_000)

    params: Params

    def on_bar(self, bar: Bar) -> None:
        total = 0
        for i in range(self.params.work):  # pure Python: the GIL is held, nothing is cached
            total += i
        self._last = total
        super().on_bar(bar)


class Ballast(Flipper):
    """A ``Flipper`` that keeps ``mb_per_bar`` MiB more at every bar, up to ``max_mb``."""

    name = "ballast"

    class Params(Flipper.Params):
        mb_per_bar: float = Field(default=1.0, gt=0, le=1024)
        max_mb: float = Field(default=256.0, ge=0, le=1_000_000)

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        # here, not in on_start: a session's first snapshot reads stats() before on_start
        self._ballast: list[bytes] = []
        self._held_bytes = 0
        self._chunk = int(self.params.mb_per_bar * _MIB)
        self._cap = int(self.params.max_mb * _MIB)

    def on_bar(self, bar: Bar) -> None:
        if self._held_bytes + self._chunk <= self._cap:
            # bytes filled with a non-zero value: every page is written, so it is resident
            self._ballast.append(b"\x01" * self._chunk)
            self._held_bytes += self._chunk
        super().on_bar(bar)

    def stats(self) -> dict[str, Any]:
        return {"ballast_mb": round(self._held_bytes / _MIB, 1)}
