"""The live watch's bookkeeping (``web/live.py``): alerts, frames, cursors, bounds."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from ultrathink.web.live import LiveWatch, command_payload, diff_alerts


def snap(seq: int, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "seq": seq, "wall_ns": 1_000 + seq, "clock_ns": 10_000 + seq, "equity": 100.0 + seq,
        "trading_state": "ACTIVE", "state_reason": "", "replaying": False, "finished": False,
        "hardening": {"breakers": {"risk": "CLOSED", "data": "CLOSED"}, "degraded": False,
                      "feed_stale": False},
        "strategy": {"fallbacks": {}}, "decision_latency_us": {"p50": 3.0, "p99": 9.0},
        "bars_per_s": 50.0, "decisions_per_s": 40.0, "prices": {"SPY": 400.0 + seq},
        "recent_fills": [],
    }  # fmt: skip
    base.update(kw)
    return base


def watch(**kw: Any) -> LiveWatch:
    return LiveWatch("run-1", "run 1", "http://127.0.0.1:1", "t", None, {"run_id": 1}, **kw)


def test_no_alert_when_nothing_an_operator_cares_about_changed() -> None:
    assert diff_alerts(snap(1), snap(2, equity=50.0, bars_per_s=9.0)) == []
    assert diff_alerts(None, snap(1)) == [], "a session that starts ACTIVE says nothing"


def test_alerts_name_state_changes_breakers_degraded_feed_fallbacks_and_the_end() -> None:
    prev = snap(1, replaying=True)
    new = snap(
        2, trading_state="HALTED", state_reason="kill switch: operator alice",
        hardening={"breakers": {"risk": "CLOSED", "data": "OPEN"}, "degraded": True,
                   "feed_stale": True},
        strategy={"fallbacks": {"forest": 3}}, finished=True,
    )  # fmt: skip

    kinds = dict(diff_alerts(prev, new))

    assert kinds["kill_switch"] == "trading state ACTIVE → HALTED: kill switch: operator alice"
    assert kinds["breaker"] == "breaker data: CLOSED → OPEN"
    assert kinds["degraded"] == "degraded mode entered"
    assert kinds["feed"] == "the feed is stale"
    assert kinds["fallback"] == "model fallback to forest: 3 more (3 in all)"
    assert kinds["replay"] == "replay done: the session is live"
    assert kinds["finished"] == "the session finished"
    back = dict(diff_alerts(new, snap(3, trading_state="REDUCING", state_reason="operator")))
    assert back["state"] == "trading state HALTED → REDUCING: operator"
    assert back["degraded"] == "degraded mode left" and back["feed"] == "the feed is fresh again"


def test_a_page_gets_everything_first_then_only_what_is_new() -> None:
    w = watch()
    w.apply(snap(1), {"cpu_pct": 12.0, "rss_mb": 80.0})
    w.apply(snap(1))  # the same snapshot again: nothing kept twice
    w.apply(snap(2, recent_fills=[[5, "SPY", "BUY", 1.0, 401.0]]))

    first, cursor = w.frame(None)
    assert first["full"] and first["series"]["equity"] == [101.0, 102.0]
    assert first["series"]["cpu_pct"][0] == 12.0 and math.isnan(first["series"]["cpu_pct"][1])
    assert first["prices"] == {"SPY": [401.0, 402.0]}
    assert first["fills"] == [[5, "SPY", "BUY", 1.0, 401.0]]

    w.apply(snap(3, recent_fills=[[5, "SPY", "BUY", 1.0, 401.0], [6, "SPY", "SELL", 1.0, 403.0]],
                 prices={"SPY": 403.0, "QQQ": 300.0}))  # fmt: skip
    second, cursor = w.frame(cursor)
    assert not second["full"] and second["series"]["equity"] == [103.0]
    assert second["fills"] == [[6, "SPY", "SELL", 1.0, 403.0]], "a fill is sent once"
    assert second["prices"]["QQQ"] == [300.0] and second["prices"]["SPY"] == [403.0]
    third, _ = w.frame(cursor)
    assert third["series"]["equity"] == [] and third["fills"] == []
    assert orjson.loads(orjson.dumps(first))["series"]["cpu_pct"][1] is None, "NaN is a gap"


def test_series_stay_bounded_and_a_thinned_history_sends_a_full_frame() -> None:
    w = watch(max_points=100)
    _, cursor = w.frame(None)
    for seq in range(1, 1_001):
        w.apply(snap(seq))
    assert len(w.series["equity"]) <= 101
    assert w.series["equity"][-1] == 1_100.0, "the newest point is kept"
    assert w.series["equity"] == sorted(w.series["equity"]), "in time order"
    frame, _ = w.frame(cursor)
    assert frame["full"], "the page's cursor points into a thinned history"


def test_a_first_frame_of_a_long_history_is_downsampled_but_keeps_the_last_point() -> None:
    w = watch(max_points=1_000_000)
    for seq in range(1, 10_001):
        w.apply(snap(seq))
    frame, _ = w.frame(None)
    assert len(frame["series"]["equity"]) <= 2_001
    assert frame["series"]["equity"][-1] == 10_100.0 and frame["series"]["equity"][0] == 101.0


def test_alerts_are_kept_in_order_and_sent_once() -> None:
    w = watch()
    w.apply(snap(1))
    _, cursor = w.frame(None)
    w.apply(snap(2, trading_state="REDUCING", state_reason="operator bob"))
    frame, cursor = w.frame(cursor)
    assert [a["kind"] for a in frame["alerts"]] == ["state"]
    assert w.frame(cursor)[0]["alerts"] == []


def test_a_command_needs_an_operator_and_an_object() -> None:
    assert command_payload({"action": "halt", "operator": " alice "})["operator"] == "alice"
    assert command_payload({"action": "halt"}, "ops")["operator"] == "ops"
    with pytest.raises(ValueError, match="JSON object"):
        command_payload(["halt"], "ops")


def test_stage_latencies_become_one_p50_and_one_p99_series_per_stage() -> None:
    w = watch()
    w.apply(snap(1))  # not profiled yet: no stage column
    w.apply(snap(2, stages={"model": {"p50": 3.0, "p90": 5.0, "p99": 9.0, "n": 12}}))
    w.apply(snap(3, stages={"model": {"p50": 4.0, "p99": 8.0, "n": 13},
                            "risk": {"p50": 0.5, "p99": 1.5, "n": 13},
                            "error": {"message": "not a stage"}}))  # fmt: skip

    first, cursor = w.frame(None)
    stages = first["stages"]
    assert set(stages) == {"model p50", "model p99", "risk p50", "risk p99"}
    assert stages["model p50"][1:] == [3.0, 4.0] and math.isnan(stages["model p50"][0])
    assert stages["risk p99"][2] == 1.5 and all(math.isnan(v) for v in stages["risk p99"][:2])
    w.apply(snap(4))  # a snapshot without stages: a gap, not a repeated value
    second, _ = w.frame(cursor)
    assert math.isnan(second["stages"]["model p99"][0]) and len(second["stages"]["risk p50"]) == 1


def test_stage_columns_are_thinned_with_the_series() -> None:
    w = watch(max_points=8)
    for seq in range(1, 10):
        w.apply(snap(seq, stages={"bar": {"p50": float(seq), "p99": 2.0 * seq, "n": seq}}))

    frame, _ = w.frame(None)
    assert len(frame["stages"]["bar p50"]) == len(frame["series"]["wall_ns"]) < 9
    assert frame["stages"]["bar p50"][-1] == 9.0
