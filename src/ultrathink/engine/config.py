"""Run configuration: capital, sizing, costs and limits of one engine run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ultrathink.execution.costs import PaperBrokerConfig
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


class EngineConfig(BaseModel):
    """Everything one run needs besides data and strategy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    starting_cash: float = Field(default=100_000.0, gt=0)
    sizing: SizingConfig = SizingConfig()
    broker: PaperBrokerConfig = PaperBrokerConfig()
    risk: RiskConfig = RiskConfig()
    chunk_size: int = Field(default=65_536, ge=1, le=10_000_000)
    measure_latency: bool = Field(
        default=False, description="record every on_bar duration (decision latency)"
    )
    speed: float | None = Field(
        default=None, gt=0, description="paper pacing: x real time; None = as fast as possible"
    )
