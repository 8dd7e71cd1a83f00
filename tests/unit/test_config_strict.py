"""Every config model is strict: no bool for a number, no text for a number or a flag.

The sweep walks the fields of every config model, so a field added later is covered too.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from ultrathink.engine.config import (
    ControlConfig,
    EngineConfig,
    HardeningConfig,
    KillSwitchConfig,
    SizingConfig,
)
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.hardening.breaker import BreakerConfig
from ultrathink.hardening.crash import CrashConfig
from ultrathink.hardening.degraded import DegradedConfig
from ultrathink.hardening.rate_limit import RateLimitConfig, RateWindow
from ultrathink.risk.config import RiskConfig

#: Each config model and the smallest valid arguments it needs.
MODELS: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (EngineConfig, {}),
    (SizingConfig, {}),
    (KillSwitchConfig, {}),
    (HardeningConfig, {}),
    (ControlConfig, {}),
    (PaperBrokerConfig, {}),
    (RiskConfig, {}),
    (BreakerConfig, {"name": "b"}),
    (CrashConfig, {"pct": 10.0}),
    (DegradedConfig, {}),
    (RateLimitConfig, {}),
    (RateWindow, {"limit": 1, "per_s": 1.0}),
]


def _kinds(annotation: Any) -> set[type]:
    args = typing.get_args(annotation) if typing.get_origin(annotation) else (annotation,)
    return {a for a in args if a in (bool, int, float, str)}


def _fields(kind: type) -> list[tuple[type[BaseModel], dict[str, Any], str]]:
    return [
        (model, required, name)
        for model, required in MODELS
        for name, field in model.model_fields.items()
        if kind in _kinds(field.annotation)
    ]


def _id(case: tuple[type[BaseModel], dict[str, Any], str]) -> str:
    return f"{case[0].__name__}.{case[2]}"


NUMBERS = _fields(float) + [c for c in _fields(int) if c not in _fields(float)]


def test_the_sweep_sees_the_fields() -> None:
    assert len(NUMBERS) > 40
    assert len(_fields(bool)) >= 6


@pytest.mark.parametrize("case", NUMBERS, ids=_id)
@pytest.mark.parametrize("bad", [True, False, "5", b"5", [5], {"v": 5}], ids=repr)
def test_a_number_field_refuses_bools_and_text(
    case: tuple[type[BaseModel], dict[str, Any], str], bad: Any
) -> None:
    model, required, name = case

    with pytest.raises(ValidationError) as info:
        model(**{**required, name: bad})

    assert info.value.errors()[0]["loc"][0] == name


@pytest.mark.parametrize("case", _fields(float), ids=_id)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=repr)
def test_a_float_field_refuses_non_finite_numbers(
    case: tuple[type[BaseModel], dict[str, Any], str], bad: float
) -> None:
    model, required, name = case

    with pytest.raises(ValidationError):
        model(**{**required, name: bad})


@pytest.mark.parametrize("case", _fields(bool), ids=_id)
@pytest.mark.parametrize("bad", [1, 0, "true", "yes", 1.0, None], ids=repr)
def test_a_flag_field_refuses_numbers_and_text(
    case: tuple[type[BaseModel], dict[str, Any], str], bad: Any
) -> None:
    model, required, name = case

    with pytest.raises(ValidationError):
        model(**{**required, name: bad})


@pytest.mark.parametrize("case", _fields(str), ids=_id)
@pytest.mark.parametrize("bad", [1, True, b"x"], ids=repr)
def test_a_text_field_refuses_other_types(
    case: tuple[type[BaseModel], dict[str, Any], str], bad: Any
) -> None:
    model, required, name = case

    with pytest.raises(ValidationError):
        model(**{**required, name: bad})


@pytest.mark.parametrize("case", _fields(float), ids=_id)
def test_an_int_is_still_a_float(case: tuple[type[BaseModel], dict[str, Any], str]) -> None:
    model, required, name = case
    if (model, name) == (DegradedConfig, "memory_exit_mb"):
        required = {"memory_enter_mb": 1000}  # an exit level needs its enter level
    built = None
    for whole in (1, 2, 5, 50, 95, 0):  # the first one in the field's range
        try:
            built = model(**{**required, name: whole})
            break
        except ValidationError:
            continue

    assert built is not None
    assert getattr(built, name) == whole
    assert isinstance(getattr(built, name), float)


@pytest.mark.parametrize(("model", "required"), MODELS, ids=[m[0].__name__ for m in MODELS])
def test_a_json_round_trip_validates_again(
    model: type[BaseModel], required: dict[str, Any]
) -> None:
    built = model(**required)

    again = model(**json.loads(json.dumps(built.model_dump(mode="json"))))

    assert again == built


@pytest.mark.parametrize("value", ["a\x00b", "a\nb", "\x1b[31m"], ids=repr)
def test_names_and_paths_refuse_control_characters(value: str) -> None:
    with pytest.raises(ValidationError, match="control characters"):
        BreakerConfig(name=value)
    with pytest.raises(ValidationError, match="control characters"):
        ControlConfig(session_file=value)
