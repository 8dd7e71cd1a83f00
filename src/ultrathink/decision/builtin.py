"""Built-in strategies: ``sma_cross`` and ``buy_and_hold``."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from ultrathink.core.events import Bar
from ultrathink.decision.strategy import Strategy


class SmaCross(Strategy):
    """Moving-average crossover on closes.

    Goes long when the fast SMA crosses above the slow one; on the cross below it goes flat
    (``long_short=false``) or short (``long_short=true``). Acts only on crossings, i.e. when
    the sign of fast − slow changes between two consecutive bars with both averages ready.
    """

    name = "sma_cross"

    class Params(Strategy.Params):
        fast: int = Field(default=10, ge=1)
        slow: int = Field(default=30, ge=2)
        long_short: bool = False

        @model_validator(mode="after")
        def _fast_below_slow(self) -> SmaCross.Params:
            if self.fast >= self.slow:
                raise ValueError(f"fast must be < slow, was fast={self.fast}, slow={self.slow}")
            return self

    params: Params

    def on_start(self) -> None:
        self.fast = self.sma(self.params.fast)
        self.slow = self.sma(self.params.slow)
        self._prev_diff: dict[str, float] = {}
        # per symbol, the (fast, slow) indicator objects: two attribute reads per bar
        # instead of two IndicatorSet lookups (~0.1 µs per bar on the 1M-bar benchmark)
        self._pairs: dict[str, tuple[Any, Any]] = {}

    def on_bar(self, bar: Bar) -> None:
        symbol = bar.symbol
        pair = self._pairs.get(symbol)
        if pair is None:
            pair = self._pairs[symbol] = (
                self.fast.for_symbol(symbol),
                self.slow.for_symbol(symbol),
            )
        diff = pair[0].value - pair[1].value
        if diff != diff:  # NaN while the slow average warms up
            return
        prev = self._prev_diff.get(symbol)
        self._prev_diff[symbol] = diff
        if prev is None:
            return
        if prev <= 0.0 < diff:
            self.target_position(symbol, self.order_size(symbol, bar.close))
        elif prev >= 0.0 > diff:
            short = self.order_size(symbol, bar.close) if self.params.long_short else 0.0
            self.target_position(symbol, -short)


class BuyAndHold(Strategy):
    """Buys its allotted size of each symbol on its first bar and holds to the end."""

    name = "buy_and_hold"

    def on_start(self) -> None:
        self._bought: set[str] = set()

    def on_bar(self, bar: Bar) -> None:
        if bar.symbol in self._bought:
            return
        self._bought.add(bar.symbol)
        self.target_position(bar.symbol, self.order_size(bar.symbol, bar.close))


BUILTIN_STRATEGIES: dict[str, type[Strategy]] = {
    SmaCross.name: SmaCross,
    BuyAndHold.name: BuyAndHold,
}
