"""The stress load generator (``stress/loadgen.py``): its schedule, its report, bad input."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest

from ultrathink.feed import FeedClient
from ultrathink.stress.loadgen import Phase, parse_phases, symbols


def test_phases_parse_and_bad_ones_say_how_to_write_them() -> None:
    assert parse_phases("2000:5,20000:1.5") == [Phase(2000.0, 5.0), Phase(20000.0, 1.5)]
    for bad in ("fast:5", "2000", "0:5", "2000:-1", "2e7:1"):
        with pytest.raises(ValueError, match=r"RATE:SECONDS|rate in"):
            parse_phases(bad)


def test_symbols_sort_as_the_session_sorts_them() -> None:
    names = symbols(12)
    assert names == sorted(names) and names[0] == "S000" and len(set(names)) == 12


def test_it_offers_every_bar_stamped_with_its_intended_time_and_reports_it() -> None:
    gen = subprocess.Popen(
        [sys.executable, "-m", "ultrathink.stress.loadgen", "--symbols", "3",
         "--phases", "600:0.5,1200:0.5", "--seed", "4"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert gen.stdout is not None
    try:
        url = json.loads(gen.stdout.readline())["ready"]
        with FeedClient(url, symbols=symbols(3)) as client:
            report = json.loads(gen.stdout.readline())  # the phases are over
            bars = []
            while len(bars) < report["sent"]:
                bar = client.get(timeout=60.0)
                assert bar is not None, f"{len(bars)} of {report['sent']} bars came"
                bars.append(bar)
    finally:
        _, err = gen.communicate(timeout=60)
    assert gen.returncode == 0, err
    assert report["offered"] == report["sent"] == 300 + 600 == len(bars)
    assert [p["offered"] for p in report["phases"]] == [300, 600]
    stamps = sorted({b.ts_ns for b in bars})
    assert len(stamps) == 300  # one timestamp per group of 3 symbols
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # 200 timestamps/s, then 400/s: the intended times are 5 ms, then 2.5 ms apart
    assert gaps[0] == pytest.approx(5e6, abs=2) and gaps[-1] == pytest.approx(2.5e6, abs=2)
    assert report["behind"] >= 0 and report["max_lag_us"] >= 0
    for phase in report["phases"]:  # every write's lag, in an HdrHistogram of µs
        lag = phase["lag_us"]
        # 3 significant digits: a percentile may read up to 0.1 % above the largest value
        assert 1 <= lag["p50"] <= lag["p99"] <= lag["p999"] <= phase["max_lag_us"] * 1.001 + 1
    assert report["lag_p99_us"] == max(p["lag_us"]["p99"] for p in report["phases"])


def test_it_asks_for_precise_sleeps_on_linux() -> None:
    # the 1 µs timer slack that lets it sleep between timestamps 200 µs apart, not spin
    if not sys.platform.startswith("linux"):
        pytest.skip("prctl is Linux's")
    code = (
        "from pathlib import Path; from ultrathink.stress.loadgen import precise_sleeps; "
        "print(precise_sleeps(), Path('/proc/self/timerslack_ns').read_text().strip())"
    )  # in a process of its own: the slack stays with the process that asked
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "1000"], done.stderr


def test_bad_arguments_are_one_error_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ultrathink.stress.loadgen", "--phases", "x:1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: phase 'x:1': write RATE:SECONDS, e.g. 20000:20"
    ]
