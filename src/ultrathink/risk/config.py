"""Risk limits. ``None`` switches a check off."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RiskConfig(BaseModel):
    """Pre-trade limits applied to every order before it reaches the broker.

    Attributes
    ----------
    max_position_qty : float or None
        Largest absolute position per symbol, in units, after the order and pending orders.
    max_position_notional : float or None
        Largest absolute position value per symbol at the reference price.
    max_order_notional : float or None
        Largest single-order value at the reference price.
    max_gross_exposure_pct : float or None
        Largest Σ|position value| after the order, as % of mark-to-market equity.
    price_band_pct : float or None
        Limit/stop prices must lie within this % of the last price.
    max_open_orders : int or None
        Largest number of working orders across symbols (a whole-number float such as 50.0,
        as ``ctl set-limit`` and the audit trail carry it, is that count; 2.5 is refused).
    check_buying_power : bool
        Buys that add exposure must be covered by cash (order value + estimated fees).
    max_daily_loss_pct : float or None
        Once equity is this % below the day's opening equity, only reducing orders pass
        until the next day.
    max_drawdown_pct : float or None
        Once equity is this % below its peak, trading state becomes REDUCING until an
        operator resumes.
    fee_estimate_bps : float
        Cost allowance used by the buying-power check.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    max_position_qty: float | None = Field(default=None, gt=0)
    max_position_notional: float | None = Field(default=None, gt=0)
    max_order_notional: float | None = Field(default=None, gt=0)
    max_gross_exposure_pct: float | None = Field(default=200.0, gt=0, le=10_000)
    price_band_pct: float | None = Field(default=10.0, gt=0, le=100)
    max_open_orders: int | None = Field(default=100, gt=0)
    check_buying_power: bool = True
    max_daily_loss_pct: float | None = Field(default=None, gt=0, le=100)
    max_drawdown_pct: float | None = Field(default=None, gt=0, le=100)
    fee_estimate_bps: float = Field(default=0.0, ge=0)

    @field_validator("max_open_orders", mode="before")
    @classmethod
    def _whole_number_of_orders(cls, value: Any) -> Any:
        # runtime limits travel as JSON numbers (ctl, audit trail): 50.0 is the count 50
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


#: Limits used by ``ultrathink run`` and ``ultrathink paper``.
PRODUCTION_LIMITS = RiskConfig(max_daily_loss_pct=5.0, max_drawdown_pct=30.0, fee_estimate_bps=10.0)
