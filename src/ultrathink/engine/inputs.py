"""Session inputs: what a session did that the bars alone do not determine, written ahead.

The kernel is deterministic: the same data, strategy and configuration give the same orders,
fills and records. A paper session also reacts to things that are not in the data — operator
commands, degraded-mode transitions (latency, CPU, memory) and a stale feed on the wall
clock. Each of those is an *input*: before it takes effect it is appended, with its position
in the run, to the session's input log (one JSON line, flushed to the OS before it applies;
a ``kill -9`` cannot lose an input that took effect), then applied.

A restart replays the bars from the start with the recorded inputs applied at the same
positions, so it rebuilds exactly the state the session had (``engine/recovery.py``). While
replaying, the live sources are muted: the recorded inputs stand in for them.

Positions: ``(n, phase)``, where ``n`` is the number of bars the kernel had processed and
``phase`` is ``"tick"`` (at a new timestamp, after the clock moved) or ``"idle"`` (while a
paced session waits for the next timestamp). The replay visits the same points in the same
order, so the log is consumed first in, first out.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ultrathink.errors import PersistenceError
from ultrathink.persistence.linelog import LineLog, open_append

IDLE, TICK, BAR = "idle", "tick", "bar"
Applier = Callable[[dict[str, Any], int], Any]


class RunPosition:
    """Where the kernel is: its bar count at the last new timestamp, and whether it is
    between timestamps (``idle``), at one (``tick``) or processing its bars (``bar``)."""

    __slots__ = ("n", "phase")

    def __init__(self) -> None:
        self.n = 0
        self.phase = IDLE


class SessionInput(NamedTuple):
    """One recorded input: where it applied, when (run clock and wall clock), what."""

    n: int
    phase: str
    ts_ns: int
    wall_ns: int
    kind: str
    data: dict[str, Any]


def read_inputs(path: Path) -> list[SessionInput]:
    """Load an input log; a missing file is an empty log, a torn last line is ignored.

    Raises
    ------
    PersistenceError
        If a complete line is not a valid input record (the log was damaged).
    """
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise PersistenceError(f"cannot read the session input log {path}: {exc}") from None
    lines = text.split(b"\n")
    out = []
    for i, line in enumerate(lines[:-1], start=1):  # the last piece has no newline: torn
        try:
            row = json.loads(line)
            out.append(SessionInput(**row))
        except (ValueError, TypeError) as exc:
            raise PersistenceError(
                f"session input log {path}, line {i}, is damaged ({str(exc)[:120]}); "
                "the session cannot be replayed exactly"
            ) from None
    return out


class SessionInputs:
    """The input log of one session: record-then-apply live, apply-from-log while replaying.

    Parameters
    ----------
    path : Path or None
        The log file (appended to); None keeps nothing (backtests have no inputs to replay).
    position : RunPosition
        The kernel's bar count, shared with the kernel.
    clock_ns, wall_ns : callable
        The run clock and the wall clock.
    recorded : list of SessionInput
        Inputs of an earlier life of the session, to replay.
    replaying : bool
        True when a restart replays the session first (live sources stay muted until
        ``finish_replay``), even with nothing recorded.
    """

    def __init__(
        self,
        path: Path | None,
        position: RunPosition,
        clock_ns: Callable[[], int],
        wall_ns: Callable[[], int],
        recorded: list[SessionInput] | None = None,
        *,
        replaying: bool = False,
    ) -> None:
        self._path = path
        self._position = position
        self._clock_ns = clock_ns
        self._wall_ns = wall_ns
        self._appliers: dict[str, Applier] = {}
        self._queue: deque[SessionInput] = deque(recorded or ())
        #: True while a restart replays the session's history (live sources are muted)
        self.replaying = replaying
        self.n_replayed = 0
        self.n_recorded = 0
        self._file: LineLog | None = None

    @property
    def phase(self) -> str:
        """``idle``, ``tick`` or ``bar`` (see ``RunPosition``)."""
        return self._position.phase

    def on(self, kind: str, applier: Applier) -> None:
        """Register how inputs of ``kind`` apply: ``applier(data, wall_ns) -> result``."""
        self._appliers[kind] = applier

    def submit(self, kind: str, data: dict[str, Any]) -> Any:
        """A live source's input: write it to the log, then apply it; return the result."""
        wall = self._wall_ns()
        if self._path is not None:
            if self.phase == BAR:
                raise PersistenceError(
                    f"a {kind} input arrived while the kernel processed a timestamp's bars: it "
                    "could not be replayed at the same point; queue it "
                    "(SessionControl.execute) so it applies between two bars"
                )
            item = SessionInput(self._position.n, self.phase, self._clock_ns(), wall, kind, data)
            self._append(item)
        return self._appliers[kind](data, wall)

    def enter_tick(self) -> None:
        """The kernel is at a new timestamp (the clock moved): apply what was recorded here."""
        self._position.phase = TICK
        if self.replaying:
            self._apply_due()

    def leave_tick(self) -> None:
        """The tick's work is done: the kernel processes the timestamp's bars now."""
        self._position.phase = BAR

    def replay_idle(self) -> None:
        """Replaying: the point where a paced session waited for the next timestamp."""
        self._apply_due()

    def finish_replay(self) -> None:
        """Apply what is left (inputs of the wait the session died in), then go live.

        Raises
        ------
        PersistenceError
            If an input belongs to a point the replay never reached (the log does not match
            the data or the run).
        """
        self._position.phase = IDLE
        self._apply_due()
        if self._queue:
            head = self._queue[0]
            raise PersistenceError(
                f"session input log has a {head.kind} input at bar {head.n} ({head.phase}) "
                f"that the replay never reached (it stopped at bar {self._position.n}); the "
                "log does not belong to this data"
            )
        self.replaying = False

    @property
    def pending(self) -> int:
        """Recorded inputs not replayed yet."""
        return len(self._queue)

    def close(self) -> None:
        """Close the log file (inputs already written stay)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _apply_due(self) -> None:
        queue, n, phase = self._queue, self._position.n, self.phase
        while queue and queue[0].n == n and queue[0].phase == phase:
            item = queue.popleft()
            self._appliers[item.kind](item.data, item.wall_ns)
            self.n_replayed += 1

    def _append(self, item: SessionInput) -> None:
        line = json.dumps(item._asdict(), separators=(",", ":"), sort_keys=True) + "\n"
        try:
            if self._file is None:
                assert self._path is not None
                self._file = open_append(self._path)  # a torn last line is cut off first
            self._file.append(line.encode())  # unbuffered: a kill -9 cannot lose it
        except OSError as exc:
            raise PersistenceError(
                f"cannot write the session input log {self._path}: {exc}; the input was not applied"
            ) from None
        self.n_recorded += 1
