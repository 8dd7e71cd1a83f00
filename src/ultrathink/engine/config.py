"""Run configuration: capital, sizing, costs and limits of one engine run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.feed.config import FeedConfig, FeedReader
from ultrathink.hardening.breaker import BreakerConfig
from ultrathink.hardening.crash import CrashConfig
from ultrathink.hardening.degraded import DegradedConfig
from ultrathink.hardening.rate_limit import RateLimitConfig
from ultrathink.risk.config import RiskConfig

#: Every config model: frozen, unknown keys refused, and no type coercion (``true`` is not
#: 1.0, ``"5"`` is not 5; an int is still a valid float) and no inf/nan.
_STRICT = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class SizingConfig(BaseModel):
    """How many units ``Strategy.order_size`` returns.

    ``all_in`` invests ``fraction`` of equity, split equally across the data's symbols;
    ``fixed`` trades ``quantity`` units. Quantities are rounded down to ``lot_size``. A buy
    that ends long is cut to what the cash covers at the signal close, less
    ``cash_buffer_pct`` of cash kept back for gaps to the fill (``decision/sizing.py``).
    """

    model_config = _STRICT

    mode: Literal["all_in", "fixed"] = "all_in"
    quantity: float | None = Field(default=None, gt=0)
    fraction: float = Field(default=1.0, gt=0, le=10)
    lot_size: float = Field(default=1.0, gt=0)
    cash_buffer_pct: float = Field(default=0.0, ge=0, lt=100)

    @model_validator(mode="after")
    def _quantity_for_fixed(self) -> SizingConfig:
        if self.mode == "fixed" and self.quantity is None:
            raise ValueError("sizing mode 'fixed' needs quantity > 0 (e.g. --quantity 100)")
        return self


class KillSwitchConfig(BaseModel):
    """When the kill switch fires by itself.

    Attributes
    ----------
    on_limit_breach : bool
        Fire on a breach of ``max_daily_loss_pct`` or ``max_drawdown_pct`` (mark-to-market).
    flatten : bool
        Close every position with reduce-only market orders when it fires.
    crash : CrashConfig or None
        Fire when a symbol falls ``pct`` % within ``n_bars`` bars.
    """

    model_config = _STRICT

    on_limit_breach: bool = False
    flatten: bool = True
    crash: CrashConfig | None = None


#: The issue's starting defaults of each breaker (failures that trip, recovery timeout).
_BREAKERS: dict[str, dict[str, Any]] = {
    "decision": {"name": "decision", "failure_threshold": 3, "recovery_timeout_s": 30.0},
    "execution": {"name": "execution", "failure_threshold": 2, "recovery_timeout_s": 120.0},
    "market_data": {"name": "market_data", "failure_threshold": 1, "recovery_timeout_s": 60.0},
    "risk": {"name": "risk", "failure_threshold": 1, "recovery_timeout_s": 60.0},
}


class HardeningConfig(BaseModel):
    """Circuit breakers, fallbacks and degraded mode around the kernel's components.

    Off in ``backtest`` (a strategy bug should stop a research run), on in ``paper`` and
    ``run``. Breaker timers run on the run's clock: bar time in replays, wall time for the
    market-data staleness of a paced paper session.

    Attributes
    ----------
    decision : BreakerConfig
        Around the strategy/model per bar; fallback: hold (no new orders).
    execution : BreakerConfig
        Around broker calls; fallback: the order is denied BROKER_UNAVAILABLE.
    market_data : BreakerConfig
        Trips on bad bars (and, paced, on no bar for ``stale_bar_multiple`` bar intervals);
        fallback: the bad bar is dropped, prices stay at the last good bar and trading is
        REDUCING until the breaker closes again.
    risk : BreakerConfig
        Around the pre-trade check; opening it fires the kill switch (HALTED).
    stale_bar_multiple : float
        N in "no update for N x the bar interval" (weekends and holidays: keep it >= 5 for
        daily bars).
    min_stale_s : float
        Floor of that wall-clock delay in a paced session (a fast replay would otherwise
        call a feed stale over scheduling jitter).
    degraded : DegradedConfig or None
        Degraded mode thresholds; None switches it off. CPU is only watched when paced.
    degraded_sample_bars : int
        Bars between two degraded-mode samples in an unpaced run (paced: every idle tick).
    """

    model_config = _STRICT

    enabled: bool = False
    decision: BreakerConfig = BreakerConfig(**_BREAKERS["decision"])
    execution: BreakerConfig = BreakerConfig(**_BREAKERS["execution"])
    market_data: BreakerConfig = BreakerConfig(**_BREAKERS["market_data"])
    risk: BreakerConfig = BreakerConfig(**_BREAKERS["risk"])
    stale_bar_multiple: float = Field(default=5.0, gt=1)
    min_stale_s: float = Field(default=0.5, gt=0)
    degraded: DegradedConfig | None = DegradedConfig()
    degraded_sample_bars: int = Field(default=4096, ge=1)

    @model_validator(mode="after")
    def _decision_breaker_counts_failures_only(self) -> HardeningConfig:
        if self.decision.slow_call_s is not None:
            raise ValueError(
                f"hardening.decision.slow_call_s must be unset, was {self.decision.slow_call_s}: "
                "the decision breaker counts failures only (a restart replays it exactly); "
                "slow decisions are degraded mode's: set hardening.degraded.latency_enter_ms"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _complete_breakers(cls, data: Any) -> Any:
        # a partial [hardening.<breaker>] table keeps the other defaults (and its name)
        if isinstance(data, dict):
            data = dict(data)
            for key, defaults in _BREAKERS.items():
                if isinstance(data.get(key), dict):
                    data[key] = {**defaults, **data[key]}
        return data


class ControlConfig(BaseModel):
    """The operator control endpoint of a paper session (HTTP on 127.0.0.1 with a token)."""

    model_config = _STRICT

    enabled: bool = False
    port: int = Field(default=0, ge=0, le=65535, description="0: any free port")
    session_file: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="where url + token are written (mode 0600); default next to db",
    )

    @field_validator("session_file")
    @classmethod
    def _printable_path(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError(
                f"session_file must be a path without control characters, was {value!r}"
            )
        return value


class LiveFeedConfig(BaseModel):
    """A paper session's live feed (``paper --feed``, ``engine/feed_bars.py``, docs/feed.md)."""

    model_config = _STRICT

    group_wait_s: float = Field(
        default=0.05, ge=0, le=60,
        description="longest wait for the other symbols' bars of a timestamp before it is "
        "traded without them",
    )  # fmt: skip
    stale_s: float = Field(
        default=10.0, gt=0, le=86_400,
        description="wall seconds without a bar before the feed watchdog reduces trading",
    )  # fmt: skip
    max_bar_age_s: float | None = Field(
        default=None, gt=0, le=86_400,
        description="drop (count as stale) a bar older than this (wall clock minus its ts) "
        "when the kernel takes it; None: never (a feed stamping bars with their open time "
        "sends each one a bar period old)",
    )  # fmt: skip
    reader: FeedReader = Field(
        default="inline",
        description="read the feed on the kernel's thread (inline), or in a child process "
        "that hands the kernel batches of bars through a pipe (process: reading and decoding "
        "on another core)",
    )
    client: FeedConfig = Field(
        default=FeedConfig(),
        description="the feed client: queue size, stall and failback thresholds, reconnects",
    )


class EngineConfig(BaseModel):
    """Everything one run needs besides data and strategy."""

    model_config = _STRICT

    starting_cash: float = Field(default=100_000.0, gt=0)
    sizing: SizingConfig = SizingConfig()
    broker: PaperBrokerConfig = PaperBrokerConfig()
    risk: RiskConfig = RiskConfig()
    kill_switch: KillSwitchConfig = KillSwitchConfig()
    rate_limits: RateLimitConfig | None = Field(
        default=None, description="order rate limits; None = unlimited (backtest default)"
    )
    hardening: HardeningConfig = HardeningConfig()
    control: ControlConfig = ControlConfig()
    feed: LiveFeedConfig = LiveFeedConfig()
    chunk_size: int = Field(default=65_536, ge=1, le=10_000_000)
    measure_latency: bool = Field(
        default=False, description="record every on_bar duration (decision latency)"
    )
    speed: float | None = Field(
        default=None, gt=0, description="paper pacing: x real time; None = as fast as possible"
    )
    profile_sample_every: int | None = Field(
        default=None,
        ge=1,
        le=2**20,
        description="profile the kernel: time 1 bar in N stage by stage (N a power of two); "
        "None = off; needs the profiler of `ultrathink profile`",
    )

    @model_validator(mode="after")
    def _power_of_two(self) -> EngineConfig:
        n = self.profile_sample_every
        if n is not None and n & (n - 1):
            raise ValueError(f"profile_sample_every must be a power of two (e.g. 4096), was {n}")
        return self
