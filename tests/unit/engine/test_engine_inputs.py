"""Session inputs (``engine/inputs.py``): written ahead, then applied; replayed in place.

Inputs are what a paper session does that the bars do not determine (operator commands,
degraded mode, the feed watchdog). Live, each one is appended to the log and flushed before
it applies; a restart reads the log back and applies each input at the same position
``(n, phase)`` of the replayed run, first in, first out.

The tests drive the inputs as the kernel does at each new timestamp: the bar count ``n``
moves first (and the phase goes back to ``idle``), then comes the wait for the timestamp
(``idle``, paced sessions), then its ``tick``, then its bars (``bar``: no input may arrive
then); so at one ``n`` the idle inputs come before the tick ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ultrathink.engine.inputs import (
    IDLE,
    TICK,
    RunPosition,
    SessionInput,
    SessionInputs,
    read_inputs,
)
from ultrathink.errors import PersistenceError

T0 = 1_600_000_000_000_000_000
WALL = 1_700_000_000_000_000_000


class Clocks:
    """The run clock and the wall clock of a test session (both only move when told)."""

    def __init__(self) -> None:
        self.run_ns = T0
        self.wall_ns = WALL

    def run(self) -> int:
        return self.run_ns

    def wall(self) -> int:
        self.wall_ns += 1_000
        return self.wall_ns


def session(
    path: Path | None, recorded: list[SessionInput] | None = None, *, replaying: bool = False
) -> tuple[SessionInputs, RunPosition, Clocks, list[tuple[str, int, str, dict[str, Any]]]]:
    """Inputs with appliers for ``op`` and ``feed``; applied ones go to the returned list."""
    position, clocks = RunPosition(), Clocks()
    inputs = SessionInputs(path, position, clocks.run, clocks.wall, recorded, replaying=replaying)
    applied: list[tuple[str, int, str, dict[str, Any]]] = []

    def applier(kind: str) -> Any:
        def apply(data: dict[str, Any], wall_ns: int) -> str:
            applied.append((kind, position.n, inputs.phase, data))
            return f"{kind} applied"

        return apply

    inputs.on("op", applier("op"))
    inputs.on("feed", applier("feed"))
    return inputs, position, clocks, applied


def test_an_input_is_written_and_flushed_before_it_applies(tmp_path: Path) -> None:
    path = tmp_path / "s" / "inputs.jsonl"  # the directory is created on first write
    position, clocks = RunPosition(), Clocks()
    inputs = SessionInputs(path, position, clocks.run, clocks.wall)
    seen_on_disk: list[list[str]] = []

    def apply(data: dict[str, Any], wall_ns: int) -> dict[str, Any]:
        # what another process (or a restart after kill -9) would read at this moment
        seen_on_disk.append(path.read_text(encoding="utf-8").splitlines())
        return {"ok": True, "wall_ns": wall_ns}

    inputs.on("op", apply)
    position.n, position.phase = 7, IDLE
    inputs.enter_tick()
    result = inputs.submit("op", {"action": "halt", "who": "alice"})
    inputs.leave_tick()

    (lines,) = seen_on_disk
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert row == {
        "n": 7, "phase": TICK, "ts_ns": T0, "wall_ns": clocks.wall_ns, "kind": "op",
        "data": {"action": "halt", "who": "alice"},
    }  # fmt: skip
    assert result == {"ok": True, "wall_ns": clocks.wall_ns}, "the applier's result"
    assert inputs.n_recorded == 1
    inputs.close()


def test_inputs_are_appended_one_line_each_with_their_phase(tmp_path: Path) -> None:
    path = tmp_path / "inputs.jsonl"
    inputs, position, clocks, applied = session(path)

    inputs.submit("feed", {"stale": True})  # while waiting for the first bar: idle
    position.n, position.phase = 3, IDLE  # three bars later, waiting for the next timestamp
    inputs.submit("feed", {"stale": False})
    clocks.run_ns = T0 + 60  # its tick: the clock moved
    inputs.enter_tick()
    inputs.submit("op", {"a": 1})
    inputs.leave_tick()
    inputs.close()
    position.n, position.phase = 4, IDLE
    inputs.submit("op", {"a": 2})  # a closed log is reopened for appending
    inputs.close()

    rows = read_inputs(path)
    assert [(r.n, r.phase, r.kind, r.data) for r in rows] == [
        (0, IDLE, "feed", {"stale": True}),
        (3, IDLE, "feed", {"stale": False}),
        (3, TICK, "op", {"a": 1}),
        (4, IDLE, "op", {"a": 2}),
    ]
    assert [r.ts_ns for r in rows] == [T0, T0, T0 + 60, T0 + 60]
    assert [(k, n, p, d) for k, n, p, d in applied] == [
        (r.kind, r.n, r.phase, r.data) for r in rows
    ]


def test_without_a_log_inputs_apply_and_nothing_is_written(tmp_path: Path) -> None:
    inputs, _, _, applied = session(None)

    assert inputs.submit("op", {"a": 1}) == "op applied"

    assert applied == [("op", 0, IDLE, {"a": 1})] and inputs.n_recorded == 0
    assert list(tmp_path.iterdir()) == []


def test_an_input_that_cannot_be_written_is_not_applied(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    inputs, _, _, applied = session(blocker / "inputs.jsonl")

    with pytest.raises(PersistenceError, match="the input was not applied"):
        inputs.submit("op", {"a": 1})

    assert applied == [] and inputs.n_recorded == 0


# -- read_inputs -----------------------------------------------------------------------------
def _line(n: int, kind: str = "op", phase: str = TICK) -> str:
    row = SessionInput(n, phase, T0 + n, WALL + n, kind, {"i": n})._asdict()
    return json.dumps(row) + "\n"


def test_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert read_inputs(tmp_path / "nothing.jsonl") == []


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "inputs.jsonl"
    torn = _line(2)[:25]  # the write the process died in: no newline yet
    path.write_text(_line(0) + _line(1) + torn, encoding="utf-8")

    rows = read_inputs(path)

    assert [r.n for r in rows] == [0, 1]
    assert rows[0] == SessionInput(0, TICK, T0, WALL, "op", {"i": 0})


@pytest.mark.parametrize(
    "damage",
    ['{"n": 1, "phase": "tick"\n', "not json\n", '{"n": 1, "unknown": 2}\n', "\n"],
)
def test_a_damaged_complete_line_refuses_the_log(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "inputs.jsonl"
    path.write_text(_line(0) + damage + _line(2), encoding="utf-8")

    with pytest.raises(PersistenceError, match=r"line 2, is damaged"):
        read_inputs(path)


# -- replay ----------------------------------------------------------------------------------
def recorded(*points: tuple[int, str, str]) -> list[SessionInput]:
    return [
        SessionInput(n, phase, T0 + n, WALL + i, kind, {"i": i})
        for i, (n, phase, kind) in enumerate(points)
    ]


def drive(inputs: SessionInputs, position: RunPosition, start: int, stop: int) -> None:
    """What the kernel does at new timestamps ``start..stop-1`` of a replay (one bar each):
    the bar count moves, the point where a paced session waited, then the tick."""
    for n in range(start, stop):
        position.n, position.phase = n, IDLE
        inputs.replay_idle()
        inputs.enter_tick()
        inputs.leave_tick()


def go_live(inputs: SessionInputs, position: RunPosition, n: int) -> None:
    """The first timestamp after the history: the bar count moves, then the replay ends."""
    position.n, position.phase = n, IDLE
    inputs.finish_replay()


def test_replay_applies_each_input_at_its_position_first_in_first_out() -> None:
    log = recorded(
        (0, TICK, "feed"), (2, IDLE, "op"), (2, TICK, "op"), (2, TICK, "feed"), (5, IDLE, "op")
    )
    inputs, position, _, applied = session(None, log, replaying=True)

    drive(inputs, position, 0, 4)
    assert [(k, n, p, d["i"]) for k, n, p, d in applied] == [
        ("feed", 0, TICK, 0), ("op", 2, IDLE, 1), ("op", 2, TICK, 2), ("feed", 2, TICK, 3),
    ], "nothing before its position, in the order recorded"  # fmt: skip
    assert inputs.pending == 1 and inputs.replaying
    drive(inputs, position, 4, 6)
    assert [d["i"] for *_, d in applied] == [0, 1, 2, 3, 4] and inputs.pending == 0
    assert inputs.n_replayed == 5


def test_replay_never_writes_the_inputs_it_applies_again(tmp_path: Path) -> None:
    path = tmp_path / "inputs.jsonl"
    inputs, position, _, _ = session(path, recorded((1, TICK, "op")), replaying=True)

    drive(inputs, position, 0, 3)
    go_live(inputs, position, 3)

    assert not path.exists() and inputs.n_recorded == 0


def test_finish_replay_applies_the_inputs_of_the_last_wait_then_goes_live() -> None:
    # the session died while it waited for its 5th timestamp (4 bars processed)
    log = recorded((3, TICK, "op"), (4, IDLE, "feed"), (4, IDLE, "op"))
    inputs, position, _, applied = session(None, log, replaying=True)
    drive(inputs, position, 0, 4)
    assert [(k, n, p) for k, n, p, _ in applied] == [("op", 3, TICK)]

    go_live(inputs, position, 4)

    assert [(k, n, p) for k, n, p, _ in applied] == [
        ("op", 3, TICK), ("feed", 4, IDLE), ("op", 4, IDLE),
    ]  # fmt: skip
    assert not inputs.replaying and inputs.phase == IDLE


def test_finish_replay_refuses_an_input_the_replay_never_reached() -> None:
    log = recorded((1, TICK, "op"), (9, TICK, "feed"))
    inputs, position, _, applied = session(None, log, replaying=True)
    drive(inputs, position, 0, 4)

    with pytest.raises(PersistenceError, match=r"feed input at bar 9 \(tick\).*stopped at bar 4"):
        go_live(inputs, position, 4)

    assert [k for k, *_ in applied] == ["op"] and inputs.replaying


def test_an_input_out_of_order_blocks_the_ones_after_it() -> None:
    # a log whose positions go backwards does not belong to this run: FIFO never skips
    log = recorded((2, TICK, "op"), (1, TICK, "op"))
    inputs, position, _, applied = session(None, log, replaying=True)
    drive(inputs, position, 0, 4)

    with pytest.raises(PersistenceError, match="never reached"):
        go_live(inputs, position, 4)
    assert [d["i"] for *_, d in applied] == [0]


def test_a_recorded_life_replays_into_the_same_applications(tmp_path: Path) -> None:
    path = tmp_path / "inputs.jsonl"
    live, position, _, first_life = session(path)
    for n in range(5):  # the live session, as the kernel drives it
        position.n, position.phase = n, IDLE
        if n == 2:
            live.submit("feed", {"stale": True})  # while it waited for this timestamp
        live.enter_tick()
        if n in (1, 3):
            live.submit("op", {"bar": n})
        live.leave_tick()
    position.n, position.phase = 5, IDLE
    live.submit("op", {"bar": "after the last tick"})  # then it was killed
    live.close()

    restarted, position2, _, second_life = session(None, read_inputs(path), replaying=True)
    drive(restarted, position2, 0, 5)
    go_live(restarted, position2, 5)

    assert second_life == first_life and restarted.n_replayed == 4


def test_an_input_while_the_kernel_processes_bars_is_refused_unwritten(tmp_path: Path) -> None:
    path = tmp_path / "inputs.jsonl"
    inputs, position, _clocks, applied = session(path)
    position.n, position.phase = 2, IDLE
    inputs.enter_tick()
    inputs.leave_tick()  # the timestamp's bars run now: a replay could not place an input here

    with pytest.raises(PersistenceError, match="while the kernel processed a timestamp's bars"):
        inputs.submit("op", {"x": 1})

    assert applied == [] and not path.exists()
