"""Paper-broker configuration: fees, slippage, latency and liquidity."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PaperBrokerConfig(BaseModel):
    """How the paper broker fills.

    Attributes
    ----------
    commission_bps : float
        Fee as basis points of fill notional.
    fee_per_order : float
        Fixed fee charged on an order's first fill.
    slippage_bps : float
        Adverse price move applied to market and triggered stop fills.
    slippage_vol_mult : float
        Extra slippage as this multiple of the previous bar's range, (high-low)/close,
        expressed in bps: slippage scaled by volatility, using only past data.
    latency_ms : float
        An order becomes eligible to fill on bars at or after submit time + latency.
    max_volume_pct : float or None
        Cap each fill at this share of the bar's volume (partial fills); None = no cap.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    commission_bps: float = Field(default=0.0, ge=0, le=1000)
    fee_per_order: float = Field(default=0.0, ge=0)
    slippage_bps: float = Field(default=0.0, ge=0, le=1000)
    slippage_vol_mult: float = Field(default=0.0, ge=0, le=10)
    latency_ms: float = Field(default=0.0, ge=0)
    max_volume_pct: float | None = Field(default=None, gt=0, le=100)


#: Costs used by ``ultrathink run`` and ``ultrathink paper``: a retail-like venue.
REALISTIC_COSTS = PaperBrokerConfig(
    commission_bps=1.0,
    fee_per_order=1.0,
    slippage_bps=2.0,
    slippage_vol_mult=0.05,
    latency_ms=50.0,
    max_volume_pct=10.0,
)
