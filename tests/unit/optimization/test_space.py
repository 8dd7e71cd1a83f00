"""Search spaces: parsing, validation against the strategy, Optuna distributions, grids."""

from __future__ import annotations

import pytest

from ultrathink.errors import ConfigError
from ultrathink.optimization.space import SearchSpace, parse_dimension


def test_each_kind_parses_to_its_canonical_spec_and_distribution() -> None:
    space = SearchSpace.parse(
        ["fast=int:5:50", "slow=int:20:200:5", "stop=float:0.5:5:log", "mode=cat:a,b"]
    )
    assert space.canonical() == {
        "fast": "int:5:50",
        "slow": "int:20:200:5",
        "stop": "float:0.5:5.0:log",
        "mode": "cat:a,b",
    }
    slow = space.dimensions[1].distribution()
    assert (slow.low, slow.high, slow.step) == (20, 200, 5)
    assert space.dimensions[2].distribution().log is True
    assert space.dimensions[3].distribution().choices == ("a", "b")


def test_the_command_line_overrides_the_toml_table() -> None:
    space = SearchSpace.parse(["fast=int:5:10"], {"fast": "int:1:100", "slow": "int:20:40"})
    assert space.canonical() == {"fast": "int:5:10", "slow": "int:20:40"}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("fast", "NAME=KIND:SPEC"),
        ("fast=", "NAME=KIND:SPEC"),
        ("fast=num:1:2", "unknown kind"),
        ("fast=int:50:5", "above high"),
        ("fast=int:5:5", "low equals high"),
        ("fast=int:a:5", "not an integer"),
        ("x=float:0:1:log", "log scale needs low > 0"),
        ("x=float:0:1:-0.1", "step must be positive"),
        ("x=int:0:10:20", "larger than the range"),
        ("x=float:0:inf", "finite"),
        ("mode=cat:a", "at least two distinct"),
        ("mode=cat:a,a", "at least two distinct"),
        ("mode=cat:a,b,a", "twice"),
        ("x=int:1", "LOW:HIGH"),
    ],
)
def test_a_bad_dimension_is_refused_with_the_reason(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_dimension(item)


def test_an_empty_space_is_refused() -> None:
    with pytest.raises(ConfigError, match="search space is empty"):
        SearchSpace.parse([])


def test_names_must_be_parameters_of_the_strategy_and_not_fixed() -> None:
    space = SearchSpace.parse(["fast=int:5:50"])
    space.check_against({"fast", "slow"}, {}, "strategy 'sma_cross'")
    with pytest.raises(ConfigError, match=r"has no parameter .fast..*slow"):
        space.check_against({"slow"}, {}, "strategy 'x'")
    with pytest.raises(ConfigError, match="both searched"):
        space.check_against({"fast"}, {"fast": "3"}, "strategy 'x'")


def test_grids_enumerate_every_value_and_need_a_step_for_floats() -> None:
    assert SearchSpace.parse(["a=int:1:9:4", "m=cat:x,y"]).grid() == {
        "a": [1, 5, 9],
        "m": ["x", "y"],
    }
    assert SearchSpace.parse(["f=float:0:0.3:0.1"]).grid() == {"f": [0.0, 0.1, 0.2, 0.3]}
    with pytest.raises(ConfigError, match="finite grid"):
        SearchSpace.parse(["f=float:0:1"]).grid()
