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


def test_cash_and_exposure_per_point_are_those_after_the_last_fill_at_or_before_it() -> None:
    # only ts and equity are kept per point; cash and exposure are derived from the fills
    from ultrathink.core.events import Fill, Side

    batches: list[dict[str, Any]] = []
    recorder = Recorder(batches.append, 1_000.0)
    recorder.flush([1, 2], [1_000.0, 1_000.0])
    recorder.fill(Fill(3, "c1", "f1", "SPY", Side.BUY, 1.0, 100.0, 0.0), 900.0, True)
    recorder.flush([3, 4], [1_000.0, 1_001.0])  # the fill at 3 counts at point 3
    recorder.fill(Fill(5, "c2", "f2", "SPY", Side.SELL, 1.0, 102.0, 0.0), 1_002.0, False)
    recorder.flush([6], [1_002.0])
    ts, equity, cash, exposed = recorder.equity_curve()
    assert ts.tolist() == [1, 2, 3, 4, 6]
    assert equity.tolist() == [1_000.0, 1_000.0, 1_000.0, 1_001.0, 1_002.0]
    assert cash.tolist() == [1_000.0, 1_000.0, 900.0, 900.0, 1_002.0]
    assert exposed.tolist() == [False, False, True, True, False]
    sent_cash = np.concatenate([b["equity"][2] for b in batches if b["equity"] is not None])
    assert sent_cash.tolist() == cash.tolist(), "the store gets the same cash per point"
