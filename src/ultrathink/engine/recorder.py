"""Collects what a run produces on the kernel thread and hands it off in batches.

Appending to lists is all the kernel pays per record; every ``flush`` packs the lists (and
the equity points of the chunk) into one batch for the store writer (a separate process
that owns the SQLite connection). Fills are also kept in memory for the run's result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ultrathink.core.events import Fill, OrderDenied, OrderEvent, OrderRequest

BatchSink = Callable[[dict[str, Any]], None]
#: Denials of one symbol for one reason from which the run summary calls them repeated.
REPEATED_DENIALS = 10


#: equity chunks joined into one once this many have been flushed since the last join
_MERGE_CHUNKS = 128


class Recorder:
    """Per-run buffers of order requests, decisions, events, fills and equity points."""

    __slots__ = (
        "_approvals",
        "_audit",
        "_denials",
        "_events",
        "_fills",
        "_merged",
        "_requests",
        "_sink",
        "_state_cash",
        "_state_exp",
        "_state_ts",
        "all_fills",
        "approved",
        "audit",
        "denial_reasons",
        "denials_by_symbol",
        "eq_ts",
        "eq_value",
        "event",
        "n_denied",
        "request",
    )

    def __init__(self, sink: BatchSink | None, starting_cash: float) -> None:
        self._sink = sink
        # cash and "any position open" only change on fills: recorded per fill, not per bar
        self._state_ts: list[int] = [-(2**63)]
        self._state_cash: list[float] = [starting_cash]
        self._state_exp: list[bool] = [False]
        self._requests: list[OrderRequest] = []
        self._approvals: list[str] = []
        self._denials: list[OrderDenied] = []
        self._events: list[OrderEvent] = []
        self._fills: list[Fill] = []
        self._audit: list[tuple[int, str, str]] = []
        self.audit = self._audit.append  # (ts_ns, kind, detail), e.g. a decision hold
        # hot-path recorders are the lists' own ``append`` (no Python frame per record);
        # ``flush`` therefore hands off copies and clears the lists in place
        self.request = self._requests.append  # a strategy asked for an order (before risk)
        self.approved = self._approvals.append  # risk approved a client order id
        self.event = self._events.append  # an order changed status
        self.all_fills: list[Fill] = []
        self.n_denied = 0
        self.denial_reasons: dict[str, int] = {}
        self.denials_by_symbol: dict[tuple[str, str], int] = {}
        self.eq_ts: list[np.ndarray] = []
        self.eq_value: list[np.ndarray] = []
        self._merged = 0  # the chunks before this index are already joined

    def denied(self, denial: OrderDenied) -> None:
        """Risk denied the request."""
        self._denials.append(denial)
        self.n_denied += 1
        code = denial.reason.value
        self.denial_reasons[code] = self.denial_reasons.get(code, 0) + 1
        key = (denial.symbol, code)
        self.denials_by_symbol[key] = self.denials_by_symbol.get(key, 0) + 1

    def repeated_denials(self, at_least: int = REPEATED_DENIALS) -> dict[str, dict[str, int]]:
        """Symbols whose orders were denied for the same reason ``at_least`` times."""
        out: dict[str, dict[str, int]] = {}
        for (symbol, code), n in sorted(self.denials_by_symbol.items()):
            if n >= at_least:
                out.setdefault(symbol, {})[code] = n
        return out

    def fill(self, fill: Fill, cash_after: float, exposed_after: bool) -> None:
        """An execution was booked; ``cash_after``/``exposed_after`` are the account after it."""
        self._fills.append(fill)
        self.all_fills.append(fill)
        self._state_ts.append(fill.ts_ns)
        self._state_cash.append(cash_after)
        self._state_exp.append(exposed_after)

    def flush(
        self,
        ts: list[int],
        equity: list[float],
        positions: list[tuple[str, float, float, float, float]] | None = None,
    ) -> None:
        """Hand everything buffered since the last flush, plus one equity chunk, to the sink.

        ``ts``/``equity`` are the close-marked points of the chunk; cash and exposure at each
        point are those after the last fill at or before it.
        """
        ts_arr = np.asarray(ts, dtype=np.int64)
        cash, _ = self._account_at(ts_arr, exposure=False)
        self.eq_ts.append(ts_arr)
        self.eq_value.append(np.asarray(equity, dtype=np.float64))
        if self._sink is not None:
            self._sink(
                {
                    "requests": list(self._requests),
                    "approvals": list(self._approvals),
                    "denials": list(self._denials),
                    "events": list(self._events),
                    "fills": list(self._fills),
                    "equity": (ts_arr, self.eq_value[-1], cash) if ts_arr.size else None,
                    "positions": positions or [],
                    "audit_extra": list(self._audit),
                }
            )
        for buf in (self._requests, self._approvals, self._denials, self._events, self._fills):
            buf.clear()
        self._audit.clear()
        if len(self.eq_ts) - self._merged >= _MERGE_CHUNKS:
            self._merge_curve()

    def _account_at(
        self, ts: np.ndarray, *, exposure: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        # cash (and "any position open") at each point: those after the last fill at or
        # before it; they change only on fills, so they are kept per fill, not per point
        idx = np.searchsorted(np.asarray(self._state_ts, dtype=np.int64), ts, "right") - 1
        cash = np.asarray(self._state_cash, dtype=np.float64)[idx]
        exposed = np.asarray(self._state_exp, dtype=bool)[idx] if exposure else None
        return cash, exposed

    def _merge_curve(self) -> None:
        # a live session flushes small chunks (every wait, at most every 0.1 s): two arrays
        # of a few points each cost ~0.25 KB of headers; the recent ones are joined into one,
        # so the curve costs its 16 bytes a point (ts, equity) and not a header per flush
        start = self._merged
        for parts in (self.eq_ts, self.eq_value):
            parts[start:] = [np.concatenate(parts[start:])]
        self._merged = len(self.eq_ts)

    def equity_curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ts_ns, equity, cash, exposed) over the whole run so far."""

        def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

        ts = cat(self.eq_ts, np.int64)
        cash, exposed = self._account_at(ts)
        assert exposed is not None
        return ts, cat(self.eq_value, np.float64), cash, exposed
