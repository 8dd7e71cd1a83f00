"""Operator commands: strict types, printable names and reasons, bounded one-line errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.hardening.overrides import (
    ACTIONS,
    MUTABLE_LIMITS,
    Flatten,
    Halt,
    OverrideError,
    SetLimit,
    Status,
    SymbolSwitch,
    parse_command,
)


def refused(payload: Any, *fragments: str) -> str:
    with pytest.raises(OverrideError) as info:
        parse_command(payload)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert len(message) < 600, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def set_limit(value: Any) -> dict[str, Any]:
    return {"action": "set_limit", "operator": "a", "limit": "max_drawdown_pct", "value": value}


@pytest.mark.parametrize(
    ("value", "shown"),
    [(True, "true"), (False, "false"), ("5", "'5'"), ("", "''"), ([5], "a JSON array"),
     ({"v": 5}, "a JSON object"), (float("nan"), "nan"), (float("inf"), "inf"),
     (10**400, "an integer of about 401 digits")],
    ids=repr,
)  # fmt: skip
def test_set_limit_value_is_a_number_or_null_never_coerced(value: Any, shown: str) -> None:
    refused(set_limit(value), "value: must be", f"(was {shown})")


@pytest.mark.parametrize(("value", "expected"), [(12, 12.0), (12.5, 12.5), (None, None)])
def test_set_limit_takes_ints_floats_and_null(value: Any, expected: float | None) -> None:
    command = parse_command(set_limit(value))

    assert isinstance(command, SetLimit)
    assert command.value == expected
    assert expected is None or isinstance(command.value, float)


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "halt", "operator": "a", "flatten": 1},
        {"action": "halt", "operator": "a", "flatten": "false"},
        {"action": "halt", "operator": 7},
        {"action": "halt", "operator": "a", "reason": 5},
        {"action": "flatten", "operator": "a", "symbol": 5},
        {"action": "force_breaker", "operator": "a", "breaker": "risk", "state": True},
    ],
    ids=str,
)
def test_other_fields_refuse_other_types(payload: dict[str, Any]) -> None:
    refused(payload, f"invalid {payload['action']} command")


BAD_CHARACTERS = ["\x00", "\x07", "\x1b[2J", "\n", "\r", "\t", "\x7f", "\x85", "\u2028",
                  "\u202e", "\u200b", "\ufeff", "\ud800"]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_CHARACTERS, ids=repr)
@pytest.mark.parametrize(
    ("field", "payload"),
    [
        ("operator", {"action": "halt"}),
        ("reason", {"action": "halt", "operator": "a"}),
        ("reason", {"action": "resume", "operator": "a"}),
        ("symbol", {"action": "flatten", "operator": "a"}),
        ("symbol", {"action": "disable_symbol", "operator": "a"}),
        ("operator", {"action": "status"}),
    ],
    ids=lambda v: v if isinstance(v, str) else v["action"],
)
def test_text_refuses_control_and_invisible_characters(
    field: str, payload: dict[str, Any], bad: str
) -> None:
    message = refused({**payload, field: f"al{bad}ice"}, f"{field}: ")

    assert bad not in message or bad.isprintable()  # echoed escaped, never raw


@pytest.mark.parametrize("text", ["alice", "Zoë", "d'Artagnan", "運用者", "a b", "ops@desk-1"])
def test_printable_unicode_names_and_reasons_pass(text: str) -> None:
    command = parse_command({"action": "halt", "operator": text, "reason": f"why: {text}"})

    assert command == Halt(operator=text, reason=f"why: {text}")


def test_symbols_and_defaults_still_parse() -> None:
    assert parse_command({"action": "flatten", "operator": "a"}) == Flatten(operator="a")
    assert parse_command({"action": "status"}) == Status()
    assert parse_command(
        {"action": "disable_symbol", "operator": "a", "symbol": "BRK.B"}
    ) == SymbolSwitch(action="disable_symbol", operator="a", symbol="BRK.B")


def test_long_bad_values_are_echoed_shortened() -> None:
    message = refused({"action": "halt", "operator": "a", "reason": "x" * 10_000}, "reason")

    assert "..." in message


def test_an_unprintable_unknown_key_is_echoed_escaped() -> None:
    refused({"action": "halt", "operator": "a", "\x1b[31mred": 1}, "'\\x1b[31mred'", "not a field")


@pytest.mark.parametrize("action", [None, 5, True, ["halt"], {"a": 1}, "HALT", "halt\n"])
def test_an_unknown_action_lists_the_actions(action: Any) -> None:
    refused({"action": action, "operator": "a"}, "action must be one of halt")


# a fuzz-like sweep: any JSON-like payload is a command or one bounded OverrideError line
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
FIELDS = st.sampled_from(
    ["action", "operator", "reason", "flatten", "symbol", "limit", "value", "breaker", "state"]
)
PAYLOADS = st.fixed_dictionaries(
    {"action": st.sampled_from(ACTIONS) | JSON},
    optional={
        "operator": st.text(max_size=8) | JSON,
        "limit": st.sampled_from(MUTABLE_LIMITS) | JSON,
        "value": st.floats() | st.integers() | JSON,
    },
).flatmap(lambda base: st.dictionaries(FIELDS | st.text(max_size=4), JSON).map(
    lambda more: {**more, **base}
))  # fmt: skip


@settings(max_examples=400, deadline=None, database=None)
@given(payload=PAYLOADS | JSON)
def test_any_payload_is_a_command_or_one_clear_error(payload: Any) -> None:
    try:
        command = parse_command(payload)
    except OverrideError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message
        assert message.isprintable(), message
        return
    assert command.action in ACTIONS
    assert command.operator.isprintable() and command.reason.isprintable()
    if isinstance(command, SetLimit):
        assert command.value is None or type(command.value) is float


def test_many_problems_make_one_bounded_message() -> None:
    payload = {"action": "halt", "operator": "a", **{f"k{i}": i for i in range(5000)}}

    message = refused(payload, "k0: not a field", "and 4995 more problems")

    assert len(message) < 600
