"""``ultrathink data feed``: a dataset replayed as a live feed, read by ``paper --feed``.

Real processes and sockets, no mocks. Readiness is observed, never slept for: the publisher's
ready line, the session's feed journal, the publisher's exit. Deadlines are generous (a busy
machine is slow, never wrong) and only stop a broken test.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from ultrathink.data import load_data
from ultrathink.engine.sessions import FEED_JOURNAL_NAME, session_dir
from ultrathink.feed import FeedClient

EXE = str(Path(sys.executable).with_name("ultrathink"))
DEADLINE_S = 120.0
SPEC = "synthetic:n_bars=150,seed=11,symbols=AAA+BBB"


class Proc:
    """A CLI subprocess whose stdout lines arrive on a queue (a reader thread)."""

    def __init__(self, *argv: str) -> None:
        self.popen = subprocess.Popen(
            [EXE, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,  # a signal sent to it reaches it alone
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        assert self.popen.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.popen.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def json_line(self) -> dict[str, Any]:
        line = self.lines.get(timeout=DEADLINE_S)
        assert line is not None, f"exited without the line: {self.finish()[1]}"
        return dict(json.loads(line))

    def json_document(self) -> dict[str, Any]:
        """Everything the process printed until it exited, as one JSON document."""
        parts = []
        while (line := self.lines.get(timeout=DEADLINE_S)) is not None:
            parts.append(line)
        return dict(json.loads("".join(parts)))

    def finish(self) -> tuple[int, str]:
        """Wait for the exit; the code and stderr."""
        assert self.popen.stderr is not None
        code = self.popen.wait(timeout=DEADLINE_S)
        self._reader.join(DEADLINE_S)
        return code, self.popen.stderr.read()

    def interrupt(self) -> None:
        os.killpg(self.popen.pid, signal.SIGINT)

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=DEADLINE_S)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def procs() -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def start(*argv: str) -> Proc:
        proc = Proc(*argv)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE_S:g} s"
        time.sleep(0.05)


def journal_lines(db: Path) -> int:
    path = session_dir(db, 1) / FEED_JOURNAL_NAME
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_a_paper_session_trades_every_bar_the_replay_sent(
    tmp_path: Path, procs: Callable[..., Proc]
) -> None:
    feed = procs("data", "feed", "--data", SPEC, "--port", "0", "--speed", "max", "--json")
    ready = feed.json_line()
    assert ready["n_bars"] == 300 and ready["symbols"] == ["AAA", "BBB"]
    db = tmp_path / "u.db"
    session = procs("paper", "--feed", ready["ready"], "--symbols", "AAA,BBB", "--db", str(db),
                    "--json", "--no-control")  # fmt: skip

    summary = feed.json_line()  # once every bar was sent and the session's buffer drained
    code, err = feed.finish()
    assert code == 0, err
    sent = summary["n_bars"]
    assert sent == 300 and summary["n_timestamps"] == 150 and summary["drained"]
    assert not summary["interrupted"] and summary["publisher"]["disconnects"] == {}
    # a feed session runs until it is stopped: stop it once it has journaled every bar
    wait_until(lambda: journal_lines(db) == sent, "bar of the replay journaled by the session")
    session.interrupt()
    result = session.json_document()
    code, err = session.finish()
    assert code == 0, err

    stats = result["feed"]
    assert result["n_bars"] == stats["delivered"] == stats["journaled"] == sent
    assert stats["received"] == sent + stats["heartbeats"]
    assert stats["late"] == stats["unaccounted"] == stats["unreleased"] == 0
    assert stats["shed"] == {} and stats["malformed"] == {} and stats["duplicates"] == 0


def test_the_bars_arrive_in_order_with_their_own_timestamps(procs: Callable[..., Proc]) -> None:
    feed = procs("data", "feed", "--data", SPEC, "--port", "0", "--rate", "100000",
                 "--from-bar", "10", "--limit", "40", "--json")  # fmt: skip
    ready = feed.json_line()
    expected = list(load_data(SPEC).iter_bars())[10:50]
    assert ready["n_bars"] == len(expected) == 40

    with FeedClient(ready["ready"], symbols=["AAA", "BBB"]) as client:
        got = [client.get(timeout=DEADLINE_S) for _ in expected]
        summary = feed.json_line()
        stats = client.stats()
    assert got == expected
    assert summary["n_bars"] == 40 and summary["n_timestamps"] == 20
    assert stats.seq_gaps == 0 and stats.malformed_total == 0
    assert feed.finish()[0] == 0


def test_ctrl_c_stops_it_with_the_summary(procs: Callable[..., Proc]) -> None:
    feed = procs("data", "feed", "--data", SPEC, "--port", "0", "--rate", "5", "--json")
    ready = feed.json_line()
    with FeedClient(ready["ready"]) as client:
        assert client.get(timeout=DEADLINE_S) is not None  # the replay has started
        feed.interrupt()
        summary = feed.json_line()
    code, err = feed.finish()

    assert code == 0, err
    assert summary["interrupted"] and 1 <= summary["n_bars"] < 300
    assert "Traceback" not in err


def test_no_client_in_time_is_a_one_line_error(procs: Callable[..., Proc]) -> None:
    feed = procs("data", "feed", "--data", SPEC, "--port", "0", "--wait-client-s", "0.2")
    code, err = feed.finish()

    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: no client connected to tcp://")
    assert "Traceback" not in err


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "10.1.2.3"], "is not a loopback address"),
        (["--host", "0.0.0.0"], "is not a loopback address"),
        (["--data", "synthetic:n_bars=10,bogus=1"], "unknown key 'bogus'"),
        (["--data", "no-such-file.csv"], "not found"),
        (["--port", "BUSY"], "Address already in use"),
        (["--speed", "fast"], "--speed must be a positive number or 'max'"),
        (["--rate", "0"], "--rate must be a positive number"),
        (["--from-bar", "5000", "--data", SPEC], "--from-bar 5000 is past the end"),
        (["--limit", "0"], "--limit must be >= 1"),
    ],
)
def test_bad_input_gets_a_one_line_error(
    tmp_path: Path, busy_port: int, args: list[str], message: str
) -> None:
    argv = [str(busy_port) if a == "BUSY" else a for a in args]
    done = subprocess.run(
        [EXE, "data", "feed", "--wait-client-s", "0", *argv],
        capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip

    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert done.stdout == ""


def test_help_names_the_options(cli: Callable[..., Any]) -> None:
    out = cli("data", "feed", "--help").out
    for option in ("--data", "--port", "--host", "--speed", "--rate", "--from-bar", "--limit",
                   "--wait-client-s", "--json"):  # fmt: skip
        assert option in out
    assert "feed" in cli("data", "--help").out
