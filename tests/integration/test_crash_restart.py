"""A paper session killed with ``kill -9`` at 20+ random instants restarts without losing or
duplicating an order.

One session over seeded synthetic bars is started, killed at a random instant (during
start-up, reconciliation, trading or the final flush — wherever the moment falls), resumed
with ``paper --resume``, killed again, ... 22 times, then resumed to completion. After every
kill the invariants that hold at any instant are checked on the two durable records (the
store and the venue journal); at the end the fully reconciled state is checked:

* every order the venue has is in the store exactly once, in the venue's state;
* every store order the venue never received ended DENIED, or REJECTED as lost;
* every fill is in both records exactly once, and no decision was sent twice;
* positions and cash follow from the venue's fills.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ultrathink.persistence import Store

DATA = "synthetic:n_bars=6000,seed=5"
N_KILLS = 22
ARGS = ["--data", DATA, "--speed", "15000", "--json"]
# fixed-size orders on a bar count, whatever the position: a decision re-made after a
# restart that was not recognised as already sent would reach the venue twice
STRATEGY = """
from ultrathink.decision.strategy import Strategy


class EveryFifthBar(Strategy):
    name = "every_fifth_bar"

    def on_start(self):
        self.n = 0

    def on_bar(self, bar):
        self.n += 1
        if self.n % 5 == 0:
            side = self.buy if (self.n // 5) % 2 else self.sell
            side(bar.symbol, 10, tag=f"n={self.n}")
"""
TERMINAL = {"FILLED", "CANCELLED", "REJECTED", "EXPIRED", "DENIED"}


def _start(db: Path, *extra: str, output: bool = False) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("ultrathink")
    pipe = subprocess.PIPE if output else subprocess.DEVNULL
    strategy = db.parent / "every_fifth.py"
    strategy.write_text(STRATEGY)
    return subprocess.Popen(
        [str(exe), "paper", *ARGS, "--strategy", str(strategy), "--db", str(db), *extra],
        stdout=pipe,
        stderr=pipe,
        env={**os.environ, "COLUMNS": "200"},
    )


def _kill_after(proc: subprocess.Popen[bytes], delay_s: float) -> bool:
    """SIGKILL ``proc`` after ``delay_s`` unless it finished first; True if it was killed."""
    try:
        proc.wait(timeout=delay_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True
    return False


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _venue(db: Path) -> tuple[dict[str, tuple[object, ...]], list[tuple[object, ...]]]:
    path = db.parent / f"{db.stem}.venue-run1.sqlite"
    if not path.exists():
        return {}, []
    orders = _rows(path, "SELECT * FROM venue_orders")
    names = [r[1] for r in _rows(path, "PRAGMA table_info(venue_orders)")]
    key = names.index("client_order_id")
    fills = _rows(path, "SELECT fill_id, client_order_id, quantity, price, fee, side "
                        "FROM venue_fills")  # fmt: skip
    return {str(r[key]): tuple(zip(names, r, strict=True)) for r in orders}, fills


def _check_any_instant(db: Path) -> None:
    # what must hold even right after a kill, before any reconciliation
    venue_orders, venue_fills = _venue(db)
    fill_ids = [f[0] for f in venue_fills]
    assert len(fill_ids) == len(set(fill_ids)), "a venue fill was recorded twice"
    assert {f[1] for f in venue_fills} <= set(venue_orders), "a venue fill without its order"
    if not db.exists() or not _rows(db, "SELECT 1 FROM runs"):
        return
    store_fills = {r[0] for r in _rows(db, "SELECT fill_id FROM fills")}
    assert store_fills <= set(fill_ids), "the store has a fill the venue never executed"
    intents = Counter(
        (o["ts_ns"], o["symbol"], o["side"], o["quantity"], o["tag"])
        for o in (dict(v) for v in venue_orders.values())
    )
    dup = [k for k, n in intents.items() if n > 1]
    assert not dup, f"the same decision reached the venue twice: {dup[:3]}"


def _check_reconciled(db: Path) -> None:
    venue_orders, venue_fills = _venue(db)
    sql = "SELECT client_order_id, status, filled_qty, reason FROM orders WHERE run_id = 1"
    store = {r[0]: r[1:] for r in _rows(db, sql)}
    for coid, order in venue_orders.items():
        o = dict(order)
        assert coid in store, f"venue order {coid} missing from the store"
        assert store[coid][0] == o["status"], (coid, store[coid], o["status"])
        assert store[coid][1] == pytest.approx(o["filled_qty"])
    for coid, (status, _filled, reason) in store.items():
        assert status in TERMINAL or coid in venue_orders, f"{coid} left {status}"
        if coid not in venue_orders:
            assert status == "DENIED" or (status == "REJECTED" and "not resubmitted" in reason)
    store_fills = sorted(_rows(db, "SELECT fill_id, client_order_id, quantity, price, fee, side "
                                   "FROM fills WHERE run_id = 1"))  # fmt: skip
    assert store_fills == sorted(venue_fills), "store and venue fills differ"
    (summary,) = _rows(db, "SELECT summary_json FROM runs WHERE run_id = 1")[0]
    info = json.loads(str(summary))
    signed = Counter[str]()
    cash = 100_000.0
    for _fid, _coid, qty, price, fee, side in venue_fills:
        sign = 1 if side == "BUY" else -1
        signed["SYN"] += sign * float(qty)  # type: ignore[arg-type]
        cash -= sign * float(qty) * float(price) + float(fee)  # type: ignore[arg-type]
    held = {s: q for s, q in signed.items() if abs(q) > 1e-9}
    assert info["final_positions"] == pytest.approx(held)
    with Store(db) as store:
        _ts, _equity, stored_cash = store.load_equity(1)
    assert stored_cash[-1] == pytest.approx(cash, rel=1e-9)


@pytest.mark.slow
def test_kill_minus_nine_at_22_random_instants_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    rng = random.Random(20261124)
    db = tmp_path / "s.db"
    kills = 0
    proc = _start(db)
    # the first kill only once the run exists; later ones anywhere, start-up included
    killed = _kill_after(proc, rng.uniform(1.5, 2.5))
    while killed:
        kills += 1
        _check_any_instant(db)
        if kills >= N_KILLS:
            break
        proc = _start(db, "--resume", "1")
        killed = _kill_after(proc, rng.uniform(0.2, 2.0))
    assert kills >= 20, f"only {kills} kills landed: the session finished too soon"
    if killed:  # the last one was killed: finish the session, as fast as it goes
        final = _start(db, "--resume", "1", "--speed", "max", output=True)
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, err.decode()[-2000:]
        assert json.loads(out)["n_bars"] == 6000
    (status,) = _rows(db, "SELECT status FROM runs WHERE run_id = 1")[0]
    assert status == "completed"
    _check_reconciled(db)
    recoveries = _rows(db, "SELECT detail FROM audit_log WHERE kind = 'recovery.reconciled'")
    assert len(recoveries) >= 1
    details = [json.loads(str(d)) for (d,) in recoveries]
    assert all(not d["mismatches"] for d in details)
    print("recoveries:", [(d["imported_orders"], d["imported_fills"], d["lost_orders"],
                           d["updated_orders"]) for d in details])  # fmt: skip
    verify = subprocess.run(
        [str(Path(sys.executable).with_name("ultrathink")), "audit", "verify", "--db", str(db)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_session_halted_before_the_crash_comes_back_halted(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("ultrathink"))
    db = tmp_path / "s.db"
    proc = _start(db)
    session = tmp_path / "control.json"
    deadline = time.monotonic() + 20
    while not session.exists():  # it appears once the control endpoint listens
        assert proc.poll() is None and time.monotonic() < deadline, "no control endpoint"
        time.sleep(0.05)
    halt = subprocess.run(
        [exe, "ctl", "halt", "--session", str(session), "--operator", "ops", "--reason", "test"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert halt.returncode == 0, halt.stderr
    assert _kill_after(proc, 0.5), "the session ended before the kill"

    final = _start(db, "--resume", "1", "--speed", "max", output=True)
    out, err = final.communicate(timeout=120)

    assert final.returncode == 0, err.decode()[-2000:]
    result = json.loads(out)
    assert result["trading_state"] == "HALTED"
    assert "restarted after a crash while HALTED" in result["trading_state_reason"]
    assert set(result["denial_reasons"]) <= {"TRADING_HALTED"}
    assert result["denial_reasons"], "the strategy kept asking; nothing passed"
