"""The k6-style threshold grammar: parsing, round trips, verdicts, merging."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.errors import ConfigError
from ultrathink.stress.thresholds import (
    OPS,
    Threshold,
    evaluate,
    format_number,
    merge,
    parse_threshold,
    parse_thresholds,
)

METRICS = st.from_regex(r"[a-z_][a-z0-9_]{0,30}", fullmatch=True)
VALUES = st.floats(allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p99_decision_us < 1000", Threshold("p99_decision_us", "<", 1000.0)),
        ("success_rate >= 0.999", Threshold("success_rate", ">=", 0.999)),
        ("lost_orders == 0", Threshold("lost_orders", "==", 0.0)),
        ("recovery_s<5", Threshold("recovery_s", "<", 5.0)),
        ("  x != -2.5e3  ", Threshold("x", "!=", -2500.0)),
        ("loss_pct > .5", Threshold("loss_pct", ">", 0.5)),
        ("kills <= +25", Threshold("kills", "<=", 25.0)),
    ],
)
def test_valid_thresholds_parse(text: str, expected: Threshold) -> None:
    assert parse_threshold(text) == expected


@settings(max_examples=300, deadline=None)
@given(METRICS, st.sampled_from(sorted(OPS)), VALUES, st.sampled_from(["", " ", "  "]))
def test_any_valid_threshold_round_trips(metric: str, op: str, value: float, pad: str) -> None:
    threshold = Threshold(metric, op, value)

    assert parse_threshold(threshold.text) == threshold
    assert parse_threshold(f"{pad}{metric}{pad}{op}{pad}{threshold.text.split()[-1]}{pad}") == (
        threshold
    )


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=80), st.text(alphabet="a_<>=!0.9e+- ", max_size=30)))
def test_garbage_gives_a_threshold_or_a_config_error_never_anything_else(text: str) -> None:
    try:
        parsed = parse_threshold(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        assert repr(text)[:20] in str(exc) or len(text) > 200
    else:
        assert parse_threshold(parsed.text) == parsed


@pytest.mark.parametrize("value", [None, 5, 2.5, ["a < 1"], {"a": 1}, b"a < 1", True])
def test_a_threshold_that_is_not_a_string_is_a_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match="must be a string"):
        parse_threshold(value)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("p99 <", "is not METRIC OP NUMBER"),
        ("p99 => 5", "is not METRIC OP NUMBER"),
        ("P99 < 5", "is not METRIC OP NUMBER"),
        ("p99 < 5 ms", "is not METRIC OP NUMBER"),
        ("p99 < nan", "is not METRIC OP NUMBER"),
        ("p99 < 1e400", "must be finite"),
        ("__import__('os') == 0", "is not METRIC OP NUMBER"),
        ("x" * 300 + " < 1", "one short line"),
    ],
)
def test_bad_expressions_name_the_rule(text: str, rule: str) -> None:
    with pytest.raises(ConfigError, match=rule):
        parse_threshold(text)


def test_an_unknown_metric_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown metric 'lost'; known: kills, lost_orders"):
        parse_threshold("lost == 0", {"lost_orders", "kills"})


def test_parse_thresholds_names_where_the_bad_one_is() -> None:
    with pytest.raises(ConfigError, match=r"^scenario x: threshold 'a <' is not"):
        parse_thresholds(["a < 1", "a <"], None, "scenario x")


@pytest.mark.parametrize(
    ("op", "measured", "holds"),
    [
        ("<", 4.0, True),
        ("<", 5.0, False),
        ("<=", 5.0, True),
        (">", 5.0, False),
        (">=", 5.0, True),
        ("==", 5.0, True),
        ("!=", 5.0, False),
        ("==", math.nan, False),
    ],
)
def test_verdicts_compare_the_measured_value(op: str, measured: float, holds: bool) -> None:
    assert Threshold("m", op, 5.0).holds(measured) is holds


def test_a_breached_threshold_names_itself_and_the_measured_value() -> None:
    [held, breached, missing] = evaluate(
        [Threshold("kills", ">=", 25), Threshold("lost_orders", "==", 0), Threshold("p99", "<", 1)],
        {"kills": 26.0, "lost_orders": 3.0},
        {"p99": "skipped: no tmpfs"},
    )

    assert held.ok and held.status == "ok"
    assert (
        not breached.ok and breached.line() == "threshold breached: lost_orders == 0 (measured 3)"
    )
    assert missing.ok and missing.status == "not measured"
    assert missing.line() == "threshold not measured: p99 < 1 (skipped: no tmpfs)"


def test_an_override_replaces_the_thresholds_of_its_metric_and_adds_the_others() -> None:
    defaults = [Threshold("a", ">", 1), Threshold("a", "<", 9), Threshold("b", "==", 0)]

    merged = merge(defaults, [Threshold("a", "<", 5), Threshold("c", "!=", 1)])

    assert merged == [Threshold("b", "==", 0), Threshold("a", "<", 5), Threshold("c", "!=", 1)]


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (1000.0, "1000"), (0.999, "0.999"), (-2.5, "-2.5"), (1e20, "1e+20")],
)
def test_numbers_are_shown_as_written(value: float, text: str) -> None:
    assert format_number(value) == text
