"""The recorder's in-memory equity curve: a live session flushes many small chunks, which are
joined as it goes (bounded per-chunk overhead) without changing the curve or what the store
receives."""

from __future__ import annotations

from typing import Any

import numpy as np

from ultrathink.engine.recorder import _MERGE_CHUNKS, Recorder


def test_many_small_flushes_are_joined_and_the_curve_is_unchanged() -> None:
    batches: list[dict[str, Any]] = []
    recorder = Recorder(batches.append, 1_000.0)
    expected_ts: list[int] = []
    expected_eq: list[float] = []
    ts = 0
    flushes = 10_000
    for i in range(flushes):
        n = i % 4  # some flushes have no point at all
        points = list(range(ts, ts + n))
        equity = [1_000.0 + p * 0.5 for p in points]
        ts += n
        recorder.flush(points, equity)
        expected_ts += points
        expected_eq += equity

    joined = flushes // _MERGE_CHUNKS + _MERGE_CHUNKS
    assert len(recorder.eq_ts) <= joined, "joined as it goes, not one array per flush"
    curve_ts, curve_eq, cash, exposed = recorder.equity_curve()
    assert curve_ts.tolist() == expected_ts and curve_eq.tolist() == expected_eq
    assert cash.tolist() == [1_000.0] * len(expected_ts) and not exposed.any()
    sent = np.concatenate([b["equity"][0] for b in batches if b["equity"] is not None])
    assert sent.tolist() == expected_ts, "the store receives every chunk as it was"
