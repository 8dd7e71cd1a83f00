"""Crash detector: a fall of ``pct`` % from the highest close of the last ``n_bars`` bars.

``update`` is O(1) amortised per bar: a monotonic deque keeps the candidates for the window
maximum, so the check costs a few dictionary and deque operations, whatever ``n_bars`` is.
"""

from __future__ import annotations

from collections import deque

from pydantic import BaseModel, ConfigDict, Field


class CrashConfig(BaseModel):
    """Trip when a close is ``pct`` % or more below the highest of the last ``n_bars`` closes."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    pct: float = Field(gt=0, lt=100)
    n_bars: int = Field(default=5, ge=1, le=100_000)


class CrashDetector:
    """Per-symbol sliding-window drawdown of closes."""

    def __init__(self, config: CrashConfig) -> None:
        self.config = config
        self._keep = 1.0 - config.pct / 100.0
        # per symbol: bar counter and a deque of (index, close) with decreasing closes
        self._state: dict[str, tuple[list[int], deque[tuple[int, float]]]] = {}

    def update(self, symbol: str, close: float) -> str | None:
        """Feed one close; return a reason when it completes a crash, else None."""
        state = self._state.get(symbol)
        if state is None:
            state = self._state[symbol] = ([0], deque())
        counter, window = state
        i = counter[0]
        counter[0] = i + 1
        while window and window[-1][1] <= close:
            window.pop()
        window.append((i, close))
        while window[0][0] <= i - self.config.n_bars:
            window.popleft()
        high = window[0][1]
        if close < high * self._keep:
            fall_pct = (1.0 - close / high) * 100.0
            return (
                f"crash detector: {symbol} fell {fall_pct:.2f}% from {high:g} to {close:g} "
                f"within {self.config.n_bars} bars (limit {self.config.pct}%)"
            )
        return None
