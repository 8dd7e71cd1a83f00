"""The ML strategy: ensemble probabilities -> target positions, with reasons to hold.

Per bar and symbol: streaming features (O(1)) -> the compiled ensemble's probability of an
up move -> a position state with hysteresis (enter long at ``p >= entry_threshold``, leave
below ``exit_threshold``; shorts mirror when allowed) -> a size by volatility targeting,
capped by the run's sizing policy and ``max_leverage``. It holds instead of trading, and
writes a ``decision.hold`` audit row with the reason, when it should not trust the model:

* ``nan_input`` — a feature is NaN or infinite (bad data);
* ``out_of_range`` — a feature lies outside its training range widened by
  ``range_tolerance`` × that range;
* ``model_expired`` — the bar is more than ``max_model_age_days`` after the end of the
  model's training data;
* ``model_error`` — the ensemble raised or gave no probability, and no single member
  (the fallback chain ``ModelBundle.members``: gradient boosting, forest, linear) could
  answer either. When a member answers, the decision uses it and writes a
  ``decision.fallback`` audit row instead.

With a model server (``--model-url``, ``ModelBundle.remote``) the server's probability comes
first and the local compiled model of the same version is the first fallback
(``ultrathink.serving.client``: timeout, breaker, counts, and audit rows at transitions).

A hold changes nothing: the position stays as it is and no order is sent.

**A denied order is not retried on every bar.** After pre-trade risk denies one of a
symbol's orders (trading halted by the kill switch, the symbol disabled, degraded mode,
no buying power, ...), an order that would *increase* that symbol's exposure waits
``denied_retry_bars`` of its bars, then twice as many after each further denial (at most
``_MAX_RETRY_DOUBLINGS`` doublings), until one of its orders fills. A signal that stays on
for every bar otherwise retried every bar: a halted ML paper session under overload placed
1,083,348 orders, all denied, each written to the store and the audit chain
(docs/stress.md). Exits are never held back: getting flat is retried on every signal.
Waits count the symbol's bars, so a replay decides the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import Field, ValidationError, model_validator

from ultrathink.core.events import Bar, Fill, OrderDenied
from ultrathink.core.timing import TimingPoint
from ultrathink.decision.ml_kernel import NOT_FINITE, OUT_OF_RANGE, gather_checked
from ultrathink.decision.strategy import Strategy
from ultrathink.errors import StrategyError
from ultrathink.features.spec import WARMUP_BARS
from ultrathink.features.streaming import StreamingFeatures

_NS_PER_DAY = 86_400_000_000_000
_VOL_DECAY = 0.94  # RiskMetrics-style EWMA of squared log returns for volatility targeting
#: a symbol's wait after denials stops doubling at denied_retry_bars * 2**this
_MAX_RETRY_DOUBLINGS = 6


class RemoteScorer(Protocol):
    """A model server asked before the local model (``serving.client.RemoteModel``)."""

    def predict(self, x: np.ndarray, key: str) -> float | None:
        """The server's probability for row ``x`` of symbol ``key``; None: use the local one."""
        ...

    def bind_audit(self, audit: Callable[[str], None]) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass
class ModelBundle:
    """Everything the strategy needs from a trained model, decoupled from the registry.

    Attributes
    ----------
    version : str
        Registry version of the model.
    predict_row : callable
        Probability of class 1 for one float64 feature row (the compiled ensemble).
    feature_index : np.ndarray
        Indices of the model's features within ``StreamingFeatures``' output row.
    feature_names : list of str
        Names of the model's features, in model column order.
    low, high : np.ndarray
        Per-feature minimum and maximum seen in training.
    train_start_ns, train_end_ns : int
        Period of the training data.
    periods_per_year : float
        Bar rate of the training data, for annualising volatility.
    remote : RemoteScorer or None
        A model server serving this version, asked first; ``predict_row`` is its fallback.
    """

    version: str
    predict_row: Callable[[np.ndarray], float]
    feature_index: np.ndarray
    feature_names: list[str]
    low: np.ndarray
    high: np.ndarray
    train_start_ns: int
    train_end_ns: int
    periods_per_year: float
    extra: dict[str, Any] = field(default_factory=dict)
    #: the fallback chain after the ensemble: (name, single-member predictor), in order
    members: tuple[tuple[str, Callable[[np.ndarray], float]], ...] = ()
    remote: RemoteScorer | None = None


class _SymbolState:
    __slots__ = ("denials", "features", "last_close", "n", "retry_at", "state", "update", "var")

    def __init__(self) -> None:
        self.features = StreamingFeatures()
        self.update = self.features.update  # a timing point (``features``)
        self.state = 0  # -1 short, 0 flat, 1 long
        self.var = math.nan
        self.last_close = math.nan
        self.n = 0  # the symbol's bars seen
        self.denials = 0  # denials since its last fill
        self.retry_at = 0  # no order that adds exposure before its bar n reaches this


class MLStrategy(Strategy):
    """Trades the ensemble's probabilities; see the module docstring."""

    name = "ml"
    warmup_bars = WARMUP_BARS

    class Params(Strategy.Params):
        model: str | None = None  # registry version; default: production, else latest
        entry_threshold: float = Field(default=0.55, gt=0, lt=1)
        exit_threshold: float = Field(default=0.50, gt=0, lt=1)
        allow_short: bool = False
        short_entry_threshold: float = Field(default=0.45, gt=0, lt=1)
        short_exit_threshold: float = Field(default=0.50, gt=0, lt=1)
        target_vol_annual: float = Field(default=0.15, gt=0, le=5)
        max_leverage: float = Field(default=1.0, gt=0, le=10)
        rebalance_band: float = Field(default=0.25, ge=0, le=10)
        range_tolerance: float = Field(default=0.5, ge=0)
        max_model_age_days: float | None = Field(default=365.0, gt=0)
        #: bars of a symbol before an order adding exposure follows a denied one (doubling
        #: with each further denial until a fill); 0: retry on every signal
        denied_retry_bars: int = Field(default=64, ge=0, le=1_000_000)

        @model_validator(mode="after")
        def _hysteresis(self) -> MLStrategy.Params:
            if self.exit_threshold > self.entry_threshold:
                raise ValueError(
                    f"exit_threshold must be <= entry_threshold, was {self.exit_threshold} > "
                    f"{self.entry_threshold}"
                )
            if self.short_exit_threshold < self.short_entry_threshold:
                raise ValueError(
                    "short_exit_threshold must be >= short_entry_threshold, was "
                    f"{self.short_exit_threshold} < {self.short_entry_threshold}"
                )
            return self

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.bundle: ModelBundle | None = None
        self.hold_counts: dict[str, int] = {}
        self.fallback_counts: dict[str, int] = {}
        self.n_predictions = 0
        self.n_in_sample_bars = 0
        self.n_retries_held = 0  # orders adding exposure held back after a denial
        self.n_bars = 0

    def attach_model(self, bundle: ModelBundle) -> MLStrategy:
        """Give the strategy its model (done by the service that builds the run)."""
        self.bundle = bundle
        return self

    def on_start(self) -> None:
        if self.bundle is None:
            raise StrategyError(
                "strategy 'ml' has no model: train one with `ultrathink train` "
                "(or pass --model VERSION)"
            )
        self._adopt_tuned_threshold(self.bundle.extra or {})
        if self.bundle.remote is not None:
            self.bundle.remote.bind_audit(self._remote_note)
        self._symbols: dict[str, _SymbolState] = {}
        self._x = np.empty(len(self.bundle.feature_index))
        self._index = np.ascontiguousarray(self.bundle.feature_index, dtype=np.int64)
        width = self.bundle.high - self.bundle.low
        tolerance = self.params.range_tolerance
        self._lo = np.ascontiguousarray(self.bundle.low - tolerance * width, dtype=np.float64)
        self._hi = np.ascontiguousarray(self.bundle.high + tolerance * width, dtype=np.float64)
        age = self.params.max_model_age_days
        self._expiry_ns = (
            self.bundle.train_end_ns + int(age * _NS_PER_DAY) if age is not None else 2**62
        )

    def _adopt_tuned_threshold(self, extra: dict[str, Any]) -> None:
        # a version from `optimize model` may carry the entry threshold its study chose; it
        # is the default, and an entry_threshold given explicitly wins
        tuned = (extra.get("decision") or {}).get("entry_threshold")
        if tuned is None or "entry_threshold" in self.params.model_fields_set:
            return
        try:
            self.params = self.Params(**{**self.params.model_dump(), "entry_threshold": tuned})
        except ValidationError as exc:
            raise StrategyError(
                f"model {self.bundle.version if self.bundle else '?'}: its tuned entry "
                f"threshold {tuned!r} does not fit these parameters ({exc.errors()[0]['msg']}); "
                "pass entry_threshold explicitly"
            ) from None

    def on_bar(self, bar: Bar) -> None:
        st, row = self._observe(bar)
        if not st.features.ready:
            return
        bundle = self.bundle
        assert bundle is not None
        if bundle.train_start_ns <= bar.ts_ns <= bundle.train_end_ns:
            self.n_in_sample_bars += 1
        x = self._x
        checked = gather_checked(row, self._index, self._lo, self._hi, x)
        reason = self._distrust(x, bar.ts_ns, checked)
        if reason:
            self._hold(bar, reason)
            return
        p = self._predict(bar, x)
        if p is None:
            return
        self.n_predictions += 1
        self._act(bar, st, p)

    def on_bar_held(self, bar: Bar) -> None:
        # the decision breaker holds: features and volatility still see every bar
        self._observe(bar)

    def _observe(self, bar: Bar) -> tuple[_SymbolState, np.ndarray]:
        st = self._symbols.get(bar.symbol)
        if st is None:
            st = self._symbols[bar.symbol] = _SymbolState()
        self._update_vol(st, bar.close)
        row = st.update(bar.ts_ns, bar.open, bar.high, bar.low, bar.close, bar.volume)
        st.n += 1
        self.n_bars += 1
        return st, row

    def _predict(self, bar: Bar, x: np.ndarray) -> float | None:
        # the fallback chain: [model server ->] ensemble -> each healthy single member -> hold
        bundle = self.bundle
        assert bundle is not None
        if bundle.remote is not None:
            p = bundle.remote.predict(x, bar.symbol)
            if p is not None:
                return p
        try:
            p = bundle.predict_row(x)
            if 0.0 <= p <= 1.0:
                return p
            raise ValueError(f"probability {p} outside [0, 1]")
        except Exception as exc:
            failure = f"ensemble failed: {exc!r}"
        for name, member in bundle.members:
            try:
                p = member(x)
            except Exception:
                continue
            if 0.0 <= p <= 1.0:
                self.fallback_counts[name] = self.fallback_counts.get(name, 0) + 1
                self.log_decision("decision.fallback", f"{bar.symbol} {failure}; used {name}")
                return p
        self._hold(bar, f"model_error: {failure}; no healthy member")
        self.failed_decision = failure
        return None

    def _remote_note(self, detail: str) -> None:
        # the model server lost, its breaker opened, or the server back (not every fallback)
        self.log_decision("decision.fallback", detail)

    def on_stop(self) -> None:
        if self.bundle is not None and self.bundle.remote is not None:
            self.bundle.remote.close()

    def _distrust(self, x: np.ndarray, ts_ns: int, checked: int) -> str:
        # why not to trust this bar's inputs, from ``gather_checked``'s verdict (non-finite
        # first, then the model's age, then the range); the names only on a failing bar
        if checked == NOT_FINITE:
            bad = [n for n, v in zip(self._names(), x, strict=True) if not math.isfinite(v)]
            return f"nan_input: {', '.join(bad)}"
        if ts_ns > self._expiry_ns:
            days = self.params.max_model_age_days
            return f"model_expired: bar is more than {days} days after the training data"
        if checked == OUT_OF_RANGE:
            bounds = zip(self._names(), x, self._lo, self._hi, strict=True)
            names = [n for n, v, lo, hi in bounds if v < lo or v > hi]
            return f"out_of_range: {', '.join(names)}"
        return ""

    def _names(self) -> list[str]:
        assert self.bundle is not None
        return self.bundle.feature_names

    def _hold(self, bar: Bar, reason: str) -> None:
        code = reason.split(":", 1)[0]
        self.hold_counts[code] = self.hold_counts.get(code, 0) + 1
        self.log_decision("decision.hold", f"{bar.symbol} {reason}")

    def _next_state(self, state: int, p: float) -> int:
        prm = self.params
        short_ok = prm.allow_short
        leave_long = state == 1 and p < prm.exit_threshold
        if leave_long or (state == -1 and p > prm.short_exit_threshold):
            state = 0
        if state == 0:
            if p >= prm.entry_threshold:
                return 1
            if short_ok and p <= prm.short_entry_threshold:
                return -1
        return state

    def _act(self, bar: Bar, st: _SymbolState, p: float) -> None:
        new_state = self._next_state(st.state, p)
        target = new_state * self._size(bar, st)
        current = self.position(bar.symbol) + self.ctx.pending_qty(bar.symbol)
        changed = new_state != st.state
        drift = abs(target - current) > self.params.rebalance_band * abs(current)
        if not (changed or (new_state != 0 and current != 0 and drift)):
            st.state = new_state
            return
        if st.n < st.retry_at and abs(target) > abs(current):
            self.n_retries_held += 1  # denied before: more exposure waits (see the docstring)
            return
        st.state = new_state
        self.target_position(bar.symbol, target, tag=f"p={p:.3f}")

    def _size(self, bar: Bar, st: _SymbolState) -> float:
        full = self.order_size(bar.symbol, bar.close)
        assert self.bundle is not None
        vol = math.sqrt(st.var * self.bundle.periods_per_year) if st.var > 0 else math.nan
        scale = self.params.max_leverage
        if vol == vol and vol > 0:
            scale = min(scale, self.params.target_vol_annual / vol)
        return float(math.floor(full * scale))

    def on_order_denied(self, denied: OrderDenied) -> None:
        # keep the state machine on the position actually held: a denied entry is retried
        # when the model next signals it, not on every bar
        st = self._symbols.get(denied.symbol)
        if st is not None:
            held = self.position(denied.symbol) + self.ctx.pending_qty(denied.symbol)
            st.state = (held > 0) - (held < 0)
            wait = self.params.denied_retry_bars << min(st.denials, _MAX_RETRY_DOUBLINGS)
            st.retry_at = st.n + wait
            st.denials += 1

    def on_fill(self, fill: Fill) -> None:
        # a fill ends a run of denials: the next one waits denied_retry_bars again
        st = self._symbols.get(fill.symbol)
        if st is not None:
            st.denials = st.retry_at = 0

    @staticmethod
    def _update_vol(st: _SymbolState, close: float) -> None:
        last = st.last_close
        st.last_close = close
        if last == last and last > 0 and close > 0:
            r2 = math.log(close / last) ** 2
            st.var = r2 if st.var != st.var else _VOL_DECAY * st.var + (1 - _VOL_DECAY) * r2

    def timing_points(self) -> list[TimingPoint]:
        """The model's prediction (``model``: the local one and the server's), for the profiler."""
        if self.bundle is None:
            return []
        points = [TimingPoint("model", self.bundle, "predict_row")]
        if self.bundle.remote is not None:
            points.append(TimingPoint("model", self.bundle.remote, "predict"))
        return points

    def symbol_timing_points(self, symbol: str) -> list[TimingPoint]:
        """The streaming features of ``symbol`` (``features``), for the profiler."""
        st = getattr(self, "_symbols", {}).get(symbol)
        return [TimingPoint("features", st, "update")] if st is not None else []

    def stats(self) -> dict[str, Any]:
        """Decision statistics for the run summary."""
        bundle = self.bundle
        out = {
            "model_version": bundle.version if bundle else None,
            "n_predictions": self.n_predictions,
            "holds": dict(self.hold_counts),
            "fallbacks": dict(self.fallback_counts),
            "in_sample_bars": self.n_in_sample_bars,
            "in_sample": self.n_in_sample_bars > 0,
            "retries_held": self.n_retries_held,
        }
        if bundle is not None and bundle.remote is not None:
            out["remote"] = bundle.remote.stats()
        return out
