"""RiskConfig: frozen, keyword-only, rejects unknown keys and out-of-range limits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ultrathink.risk.config import PRODUCTION_LIMITS, RiskConfig


def test_defaults() -> None:
    config = RiskConfig()

    assert config.max_position_qty is None
    assert config.max_position_notional is None
    assert config.max_order_notional is None
    assert config.max_gross_exposure_pct == 200.0
    assert config.price_band_pct == 10.0
    assert config.max_open_orders == 100
    assert config.check_buying_power is True
    assert config.max_daily_loss_pct is None
    assert config.max_drawdown_pct is None
    assert config.fee_estimate_bps == 0.0


def test_production_limits() -> None:
    assert PRODUCTION_LIMITS.max_daily_loss_pct == 5.0
    assert PRODUCTION_LIMITS.max_drawdown_pct == 30.0
    assert PRODUCTION_LIMITS.fee_estimate_bps == 10.0


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="max_drawdown"):
        RiskConfig(max_drawdown=10.0)


def test_config_is_frozen() -> None:
    config = RiskConfig()

    with pytest.raises(ValidationError):
        config.max_drawdown_pct = 10.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_position_qty", 0.0),
        ("max_position_notional", -1.0),
        ("max_order_notional", 0.0),
        ("max_gross_exposure_pct", 0.0),
        ("max_gross_exposure_pct", 10_001.0),
        ("price_band_pct", 0.0),
        ("price_band_pct", 101.0),
        ("max_open_orders", 0),
        ("max_daily_loss_pct", 0.0),
        ("max_daily_loss_pct", 150.0),
        ("max_drawdown_pct", 150.0),
        ("fee_estimate_bps", -1.0),
    ],
)
def test_out_of_range_values_are_rejected_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        RiskConfig(**{field: value})


@pytest.mark.parametrize(
    "field",
    [
        "max_position_qty",
        "max_position_notional",
        "max_order_notional",
        "max_gross_exposure_pct",
        "price_band_pct",
        "max_open_orders",
        "max_daily_loss_pct",
        "max_drawdown_pct",
    ],
)
def test_optional_limits_can_be_switched_off_with_none(field: str) -> None:
    assert getattr(RiskConfig(**{field: None}), field) is None


@pytest.mark.parametrize("value", [50, 50.0])
def test_max_open_orders_takes_a_whole_number_as_json_carries_it(value: float) -> None:
    config = RiskConfig(max_open_orders=value)  # ctl set-limit and the audit trail send 50.0

    assert config.max_open_orders == 50
    assert type(config.max_open_orders) is int


@pytest.mark.parametrize("value", [2.5, "50", True])
def test_max_open_orders_refuses_anything_but_a_whole_number(value: object) -> None:
    with pytest.raises(ValidationError, match="max_open_orders"):
        RiskConfig(max_open_orders=value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_drawdown_pct", "10"),  # text is not a number
        ("check_buying_power", 1),  # nor is 1 a bool
        ("price_band_pct", float("nan")),
        ("max_position_notional", float("inf")),
        ("fee_estimate_bps", float("nan")),
    ],
)
def test_values_are_checked_strictly(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        RiskConfig(**{field: value})
