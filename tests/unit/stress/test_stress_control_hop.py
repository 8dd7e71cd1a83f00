"""The network scenario's control hop: its command sequence and its case validation."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from ultrathink.hardening.overrides import parse_command
from ultrathink.stress.control_hop import command_sequence
from ultrathink.stress.scenarios.network import NetworkCase


def test_the_command_sequence_is_seeded_valid_and_pairs_halt_with_resume() -> None:
    commands = command_sequence(200, seed=5)

    assert commands == command_sequence(200, seed=5)
    assert commands != command_sequence(200, seed=6)
    assert len(commands) == 200
    for command in commands:  # every one is a command the session accepts as such
        parse_command({**command, "operator": "stress", "reason": "r"})
    kinds = Counter(c["action"] for c in commands)
    assert {"set_limit", "disable_symbol", "enable_symbol", "halt", "resume", "flatten"} <= set(
        kinds
    )
    for i, command in enumerate(commands[:-1]):
        if command["action"] == "halt":
            assert commands[i + 1]["action"] == "resume"


def test_a_control_case_takes_resets_not_drops() -> None:
    assert NetworkCase(name="c", hop="control", reset=0.3, duplicate=0.1).hop == "control"
    with pytest.raises(ValidationError, match="on the control hop a lost message is a reset"):
        NetworkCase(name="c", hop="control", drop=0.1)
