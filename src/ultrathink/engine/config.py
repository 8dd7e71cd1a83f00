"""Run configuration: capital, sizing, costs and limits of one engine run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.hardening.crash import CrashConfig
from ultrathink.hardening.rate_limit import RateLimitConfig
from ultrathink.risk.config import RiskConfig


class SizingConfig(BaseModel):
    """How many units ``Strategy.order_size`` returns.

    ``all_in`` invests ``fraction`` of equity, split equally across the data's symbols;
    ``fixed`` trades ``quantity`` units. Quantities are rounded down to ``lot_size``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["all_in", "fixed"] = "all_in"
    quantity: float | None = Field(default=None, gt=0)
    fraction: float = Field(default=1.0, gt=0, le=10)
    lot_size: float = Field(default=1.0, gt=0)

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

    model_config = ConfigDict(frozen=True, extra="forbid")

    on_limit_breach: bool = False
    flatten: bool = True
    crash: CrashConfig | None = None


class EngineConfig(BaseModel):
    """Everything one run needs besides data and strategy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    starting_cash: float = Field(default=100_000.0, gt=0)
    sizing: SizingConfig = SizingConfig()
    broker: PaperBrokerConfig = PaperBrokerConfig()
    risk: RiskConfig = RiskConfig()
    kill_switch: KillSwitchConfig = KillSwitchConfig()
    rate_limits: RateLimitConfig | None = Field(
        default=None, description="order rate limits; None = unlimited (backtest default)"
    )
    chunk_size: int = Field(default=65_536, ge=1, le=10_000_000)
    measure_latency: bool = Field(
        default=False, description="record every on_bar duration (decision latency)"
    )
    speed: float | None = Field(
        default=None, gt=0, description="paper pacing: x real time; None = as fast as possible"
    )
