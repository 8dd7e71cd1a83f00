"""The sweep's grammar: grids, constraints, windows, points and their ids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ultrathink.errors import ConfigError
from ultrathink.sweep.spec import (
    SweepSpec,
    Window,
    grid_points,
    parse_grid,
    parse_where,
    parse_windows,
    point_id,
)


def test_ranges_are_inclusive_and_integral_when_written_so() -> None:
    grid = parse_grid(["fast=5:50:5", "slow=20:30:10", "x=0.1:0.3:0.1", "mode=a,b", "k=true"])
    assert grid["fast"] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert all(type(v) is int for v in grid["fast"])
    assert grid["slow"] == [20, 30]
    assert grid["x"] == [0.1, 0.2, 0.3]  # exact decimal steps: no 0.30000000000000004
    assert grid["mode"] == ["a", "b"]
    assert grid["k"] == [True]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("fast", "expected NAME=LO:HI:STEP"),
        ("fast=", "expected NAME=LO:HI:STEP"),
        ("1x=1:2:1", "expected NAME=LO:HI:STEP"),
        ("fast=5:1:1", "needs LO <= HI and STEP > 0"),
        ("fast=1:5:0", "needs LO <= HI and STEP > 0"),
        ("fast=1:5", "a range is LO:HI:STEP"),
        ("fast=a:b:c", "must be numbers"),
        ("fast=1,1", "values repeat"),
        ("fast=1,,2", "empty value"),
        ("fast=nan,1", "not a finite number"),
    ],
)
def test_a_bad_grid_says_what_is_wrong(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_grid([item])


def test_a_grid_needs_a_parameter_and_each_once() -> None:
    with pytest.raises(ConfigError, match="at least one --grid"):
        parse_grid([])
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["a=1", "a=2"])


def test_where_evaluates_comparisons_arithmetic_and_logic() -> None:
    where = parse_where(
        "fast < slow and not (slow - fast) % 2 == 1 or fast * 10 >= 500", ["fast", "slow"]
    )
    assert where({"fast": 5, "slow": 7})
    assert not where({"fast": 5, "slow": 8})
    assert not where({"fast": 9, "slow": 8})
    assert where({"fast": 50, "slow": 8})
    chained = parse_where("1 <= fast < slow <= 10", ["fast", "slow"])
    assert chained({"fast": 1, "slow": 10})
    assert not chained({"fast": 0, "slow": 10})
    assert parse_where(None, [])({"any": 1})


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("fast < nope", "'nope' is not a --grid name"),
        ("__import__('os')", "Call is not allowed"),
        ("fast.real > 1", "Attribute is not allowed"),
        ("fast < 'x'", "only numbers"),
        ("fast ** 2 > 3", "operator not allowed"),
        ("fast in [1, 2]", "comparison not allowed"),
        ("fast <", "not an expression"),
        ("[x for x in fast]", "is not allowed"),
    ],
)
def test_where_refuses_anything_outside_its_grammar(expr: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_where(expr, ["fast", "slow"])


def test_where_that_divides_by_zero_is_a_clear_error() -> None:
    where = parse_where("slow / fast > 2", ["fast", "slow"])
    with pytest.raises(ConfigError, match="fails on"):
        where({"fast": 0, "slow": 3})


def test_rolling_windows_tile_the_data_by_step() -> None:
    windows = parse_windows("rolling:3y:1y", "2000-01-03", "2005-06-30")
    assert [w.label for w in windows] == [
        "2000-01-03:2003-01-02",
        "2001-01-03:2004-01-02",
        "2002-01-03:2005-01-02",
    ]
    assert parse_windows("all", "2000-01-03", "2005-06-30") == [Window()]
    assert Window().label == "all"
    explicit = parse_windows("2001-01-01:2001-12-31, 2003-01-01:2004-06-30", "x", "y")
    assert [w.label for w in explicit] == ["2001-01-01:2001-12-31", "2003-01-01:2004-06-30"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rolling:3y", "expected rolling:LEN:STEP"),
        ("rolling:3x:1y", "not a span"),
        ("rolling:0y:1y", "not a span"),
        ("rolling:10y:1y", "shorter than one window"),
        ("2001-01-01", "expected START:END"),
        ("2002-01-01:2001-01-01", "END is before START"),
        ("2001-13-45:2002-01-01", "2001-13-45"),
    ],
)
def test_bad_windows_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_windows(text, "2000-01-03", "2005-06-30")


def test_points_follow_the_constraint_and_refuse_empty_or_too_many() -> None:
    grid = parse_grid(["fast=5:50:5", "slow=20:200:5"])
    where = parse_where("fast < slow", list(grid))
    points = grid_points(grid, where, random=None, seed=0, max_points=10_000)
    assert len(points) == 342  # the benchmark grid
    assert all(p["fast"] < p["slow"] for p in points)
    with pytest.raises(ConfigError, match="empty after --where"):
        grid_points(grid, parse_where("fast > 1000", list(grid)), random=None, seed=0,
                    max_points=10_000)  # fmt: skip
    with pytest.raises(ConfigError, match="more than --max-points"):
        grid_points(parse_grid(["a=1:1000:1", "b=1:1000:1"]), lambda p: True, random=None,
                    seed=0, max_points=1000)  # fmt: skip


def test_random_points_are_a_seeded_subset() -> None:
    grid = parse_grid(["fast=5:50:1", "slow=20:200:5"])
    where = parse_where("fast < slow", list(grid))
    every = grid_points(grid, where, random=None, seed=0, max_points=100_000)
    a = grid_points(grid, where, random=25, seed=7, max_points=100_000)
    b = grid_points(grid, where, random=25, seed=7, max_points=100_000)
    c = grid_points(grid, where, random=25, seed=8, max_points=100_000)
    assert a == b != c
    assert len(a) == 25 and all(p in every for p in a)
    assert len({tuple(p.values()) for p in a}) == 25
    with pytest.raises(ConfigError, match="at least 1"):
        grid_points(grid, where, random=0, seed=0, max_points=10)


@given(
    params=st.dictionaries(st.sampled_from(["fast", "slow", "k"]), st.integers(1, 500), min_size=1),
)
def test_a_point_id_depends_on_everything_and_not_on_dict_order(params: dict[str, int]) -> None:
    base = point_id("sma_cross", params, "h" * 64, Window(), "c")
    assert base == point_id("sma_cross", dict(reversed(params.items())), "h" * 64, Window(), "c")
    assert base != point_id("buy_and_hold", params, "h" * 64, Window(), "c")
    assert base != point_id("sma_cross", params, "g" * 64, Window(), "c")
    assert base != point_id("sma_cross", params, "h" * 64, Window("2001-01-01", None), "c")
    assert base != point_id("sma_cross", params, "h" * 64, Window(), "d")
    changed = {k: v + 1 for k, v in params.items()}
    assert base != point_id("sma_cross", changed, "h" * 64, Window(), "c")


def test_a_spec_survives_its_json_round_trip() -> None:
    spec = SweepSpec("sma_cross", parse_grid(["fast=5:10:5"]), where="fast < 9",
                     data=("sp500", "nasdaq"), windows="rolling:3y:1y")  # fmt: skip
    assert SweepSpec.from_json(spec.to_json()) == spec
