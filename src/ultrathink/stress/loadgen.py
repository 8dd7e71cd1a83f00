"""The stress load generator: an open-model feed publisher in a process of its own.

``python -m ultrathink.stress.loadgen --symbols 8 --phases 20000:20,200000:5 --seed 1``
serves the feed protocol on loopback (``FeedPublisher``), waits for one client, then offers
bars at a **fixed arrival rate** per phase (bars/s over all symbols), whatever the client
does: timestamp ``k`` of a phase is due at ``phase_start + k / group_rate`` and is stamped
with that **intended** wall-clock time as its ``ts``, so the session measures its latency
from the intended time and a stall cannot hide behind a slow sender (coordinated omission).

The generator reports, as JSON lines on stdout:

* ``{"ready": URL}`` once it listens;
* at the end, what it offered and sent, per phase and per second, and how far behind
  schedule it ever was (``lag``): a send more than ``behind_us`` after its intended time
  counts as ``behind``. A generator that could not keep up says so, so its limit is never
  taken for the session's.

**Pacing.** The generator sleeps until ``_SPIN_NS`` before a timestamp is due, then spins
to it. It first sets its timer slack to 1 µs (``prctl(PR_SET_TIMERSLACK)``, Linux; the
standard library has no call for it, so ``ctypes``): with the default 50 µs slack a short
sleep overshoots by up to that, which is why it used to sleep only when more than 300 µs
early and spin the rest. At 20,000 bars/s over 4 symbols a timestamp is due every 200 µs, so
it never slept and took ~80 % of a core of this 2-core machine from the session it loads
(docs/stress.md gives the before and after).

It then keeps the connection open (heartbeats) until its stdin closes, so the session can
take every bar before the scenario stops it. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field

from hdrh.histogram import HdrHistogram

from ultrathink.core.events import Bar
from ultrathink.core.latency import tail_percentiles
from ultrathink.feed import FeedPublisher

__all__ = ["Phase", "main", "parse_phases", "symbols"]

_NS = 1_000_000_000
#: most timestamps published in one write when the generator catches up
_MAX_BATCH = 512
#: a wait shorter than this is spun, a longer one slept until this much is left (ns)
_SPIN_NS = 20_000
#: ``prctl`` option and the timer slack the generator asks for (ns)
_PR_SET_TIMERSLACK = 29
_SLACK_NS = 1_000
#: lags above this (µs) are recorded as this
_MAX_LAG_US = 60_000_000


def precise_sleeps() -> bool:
    """Ask the kernel for 1 µs timer slack on this process's sleeps (Linux); False elsewhere
    or when refused (the sleeps then overshoot by up to the default 50 µs, nothing else)."""
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_TIMERSLACK, _SLACK_NS, 0, 0, 0) == 0)
    return False


@dataclass(frozen=True)
class Phase:
    """``rate`` bars/s (over all symbols) for ``seconds``."""

    rate: float
    seconds: float


@dataclass
class PhaseReport:
    rate: float
    seconds: float
    offered: int = 0
    sent: int = 0
    behind: int = 0
    max_lag_us: float = 0.0
    #: p50, p99 and p99.9 of each write's lag behind its oldest timestamp's intended time
    lag_us: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    per_second: list[int] = field(default_factory=list)


def parse_phases(text: str) -> list[Phase]:
    """``RATE:SECONDS[,RATE:SECONDS...]``; a clear ``ValueError`` otherwise."""
    out = []
    for part in text.split(","):
        rate, sep, seconds = part.partition(":")
        try:
            phase = Phase(float(rate), float(seconds))
        except ValueError:
            raise ValueError(f"phase {part!r}: write RATE:SECONDS, e.g. 20000:20") from None
        if not sep or not (0 < phase.rate <= 10_000_000 and 0 < phase.seconds <= 86_400):
            raise ValueError(f"phase {part!r}: rate in (0, 1e7] bars/s, seconds in (0, 86400]")
        out.append(phase)
    return out


def symbols(n: int) -> list[str]:
    """The generator's symbol names: ``S000`` ... (sorted as the session sorts them)."""
    return [f"S{i:03d}" for i in range(n)]


class _Walk:
    """Each symbol's seeded random walk; one bar per symbol per timestamp."""

    def __init__(self, names: list[str], seed: int) -> None:
        self.names = names
        self.rnd = random.Random(seed)
        self.prices = dict.fromkeys(names, 100.0)

    def bars(self, ts: int) -> list[Bar]:
        out = []
        gauss, prices = self.rnd.gauss, self.prices
        for name in self.names:
            o = prices[name]
            c = o * (1.0 + gauss(0.0, 0.001))
            prices[name] = c
            out.append(Bar(ts, name, o, max(o, c) * 1.0001, min(o, c) * 0.9999, c, 1000.0))
        return out


def run_phase(
    pub: FeedPublisher, walk: _Walk, phase: Phase, wall0: int, mono0: int, behind_us: float
) -> PhaseReport:
    """Offer ``phase`` on schedule; return what was sent and how late."""
    n_sym = len(walk.names)
    group_rate = phase.rate / n_sym
    period_ns = _NS / group_rate
    n_groups = max(1, int(phase.seconds * group_rate))
    report = PhaseReport(phase.rate, phase.seconds, offered=n_groups * n_sym)
    start = time.monotonic_ns()
    k = 0
    behind_ns = behind_us * 1000
    seconds = [0] * (int(phase.seconds) + 2)
    lags = HdrHistogram(1, _MAX_LAG_US, 3)
    while k < n_groups:
        now = time.monotonic_ns()
        due = min(n_groups, int((now - start) / period_ns) + 1, k + _MAX_BATCH)
        if due <= k:  # early: sleep most of the way, then spin to the intended time
            wait = start + k * period_ns - now
            if wait > _SPIN_NS:
                time.sleep((wait - _SPIN_NS) / _NS)
            continue
        batch: list[Bar] = []
        for j in range(k, due):
            intended = start + int(j * period_ns)
            batch += walk.bars(wall0 + (intended - mono0))
        pub.publish_bars(batch)
        sent_at = time.monotonic_ns()
        lag = sent_at - (start + int(k * period_ns))  # the oldest of the batch
        report.max_lag_us = max(report.max_lag_us, lag / 1000)
        lags.record_value(min(max(lag // 1000, 1), _MAX_LAG_US))
        for j in range(k, due):
            if sent_at - (start + j * period_ns) > behind_ns:
                report.behind += n_sym
        second = min(int((sent_at - start) / _NS), len(seconds) - 1)
        seconds[second] += len(batch)
        report.sent += len(batch)
        k = due
    report.elapsed_s = (time.monotonic_ns() - start) / _NS
    report.per_second = [n for n in seconds if n] or [0]
    report.max_lag_us = round(report.max_lag_us, 1)
    report.lag_us = tail_percentiles(lags)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ultrathink.stress.loadgen")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--symbols", type=int, default=4)
    p.add_argument("--phases", required=True, help="RATE:SECONDS[,RATE:SECONDS...] (bars/s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--behind-us", type=float, default=1000.0)
    p.add_argument("--wait-client-s", type=float, default=120.0)
    args = p.parse_args(argv)
    try:
        phases = parse_phases(args.phases)
        if not 1 <= args.symbols <= 1000:
            raise ValueError(f"--symbols must be 1..1000, was {args.symbols}")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    walk = _Walk(symbols(args.symbols), args.seed)
    slack = precise_sleeps()
    # generous per-client buffer: a session that falls behind reads later, never loses bars
    with FeedPublisher(port=args.port, heartbeat_s=0.5, max_buffer_bytes=1 << 30) as pub:
        print(json.dumps({"ready": pub.url}), flush=True)
        if not pub.wait_for_clients(1, args.wait_client_s):
            print(f"error: no client within {args.wait_client_s:g} s", file=sys.stderr)
            return 1
        wall0, mono0 = time.time_ns(), time.monotonic_ns()
        reports = [run_phase(pub, walk, phase, wall0, mono0, args.behind_us) for phase in phases]
        out = {
            "symbols": args.symbols,
            "phases": [asdict(r) for r in reports],
            "offered": sum(r.offered for r in reports),
            "sent": sum(r.sent for r in reports),
            "behind": sum(r.behind for r in reports),
            "max_lag_us": max(r.max_lag_us for r in reports),
            "lag_p99_us": max(r.lag_us["p99"] for r in reports),
            "precise_sleeps": slack,
            "publisher": asdict(pub.stats()),
        }
        print(json.dumps(out), flush=True)
        sys.stdin.read()  # the scenario closes stdin once the session has every bar
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
