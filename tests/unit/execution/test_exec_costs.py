"""PaperBrokerConfig: frozen, rejects unknown keys and out-of-range costs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ultrathink.execution.costs import REALISTIC_COSTS, PaperBrokerConfig


def test_defaults_are_frictionless() -> None:
    config = PaperBrokerConfig()

    assert config.commission_bps == 0.0
    assert config.fee_per_order == 0.0
    assert config.slippage_bps == 0.0
    assert config.slippage_vol_mult == 0.0
    assert config.latency_ms == 0.0
    assert config.max_volume_pct is None


def test_realistic_costs() -> None:
    assert REALISTIC_COSTS.commission_bps == 1.0
    assert REALISTIC_COSTS.fee_per_order == 1.0
    assert REALISTIC_COSTS.slippage_bps == 2.0
    assert REALISTIC_COSTS.latency_ms == 50.0
    assert REALISTIC_COSTS.max_volume_pct == 10.0


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="commission"):
        PaperBrokerConfig(commission=1.0)


def test_config_is_frozen() -> None:
    config = PaperBrokerConfig()

    with pytest.raises(ValidationError):
        config.slippage_bps = 5.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("commission_bps", -0.1),
        ("commission_bps", 1_001.0),
        ("fee_per_order", -1.0),
        ("slippage_bps", -1.0),
        ("slippage_bps", 1_001.0),
        ("slippage_vol_mult", -0.5),
        ("slippage_vol_mult", 11.0),
        ("latency_ms", -1.0),
        ("max_volume_pct", 0.0),
        ("max_volume_pct", 100.5),
    ],
)
def test_out_of_range_values_are_rejected_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        PaperBrokerConfig(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("commission_bps", "5"),  # text is not a number
        ("fee_per_order", True),  # nor is a bool
        ("slippage_bps", float("nan")),
        ("latency_ms", float("inf")),
        ("max_volume_pct", float("nan")),
    ],
)
def test_values_are_checked_strictly(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        PaperBrokerConfig(**{field: value})


def test_an_integer_is_a_valid_cost() -> None:
    config = PaperBrokerConfig(commission_bps=5, max_volume_pct=10)

    assert (config.commission_bps, config.max_volume_pct) == (5, 10)
