"""The TCP fault proxy, through real loopback sockets: each fault does what it says, counted.

A small line server (``_LineServer``) sends numbered lines to whoever connects; an echo
server returns what it gets. What the client receives is compared with what the proxy's
seeded plan (``FaultPlan``, the same draws the proxy makes) says must happen, line by line.
Timing is only ever checked as a lower bound (a delay cannot be shorter than injected).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from ultrathink.stress.proxy import FaultPlan, FaultProxy, Faults

N_LINES = 400
DEADLINE_S = 30.0


class _Server:
    """One listening socket on loopback; ``serve(conn)`` runs per connection in a thread."""

    def __init__(self, mode: str, n_lines: int = N_LINES) -> None:
        self.mode, self.n_lines = mode, n_lines
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                if self.mode == "lines":
                    # in a few writes of several lines each, so lines and chunks differ
                    data = b"".join(b"line %05d\n" % i for i in range(self.n_lines))
                    for k in range(0, len(data), 997):
                        conn.sendall(data[k : k + 997])
                    conn.shutdown(socket.SHUT_WR)
                    conn.recv(1)  # until the client closes
                else:  # echo
                    while chunk := conn.recv(65536):
                        conn.sendall(chunk)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def lines_server() -> Iterator[_Server]:
    server = _Server("lines")
    yield server
    server.close()


@pytest.fixture
def echo_server() -> Iterator[_Server]:
    server = _Server("echo")
    yield server
    server.close()


def read_all(port: int) -> tuple[list[bytes], str]:
    """Every line received until EOF or a reset, and how it ended (``eof``/``reset``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as sock:
        data = b""
        end = "eof"
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            end = "reset"
    return data.splitlines(keepends=True), end


def expected(faults: Faults, seed: int, n: int = N_LINES) -> tuple[list[bytes], str]:
    """What the client must receive of the line server through a proxy with ``faults``."""
    plan = FaultPlan(faults, seed, 0, "down")
    out: list[bytes] = []
    for i in range(n):
        kind, _ = plan.draw()
        line = b"line %05d\n" % i
        if kind == "reset":
            return out, "reset"
        out += {"drop": [], "duplicate": [line, line]}.get(kind or "", [line])
    return out, "eof"


def test_a_proxy_without_faults_forwards_every_line_and_counts_them(
    lines_server: _Server,
) -> None:
    with FaultProxy(lines_server.port, Faults(lines=True), seed=1) as proxy:
        got, end = read_all(proxy.port)
        stats = proxy.stats()
    assert end == "eof" and got == [b"line %05d\n" % i for i in range(N_LINES)]
    assert stats.connections == 1 and stats.units == N_LINES and stats.injected == 0
    assert stats.bytes_in == stats.bytes_out == sum(len(x) for x in got)


@pytest.mark.parametrize("kind", ["drop", "duplicate"])
@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_dropped_and_duplicated_lines_are_exactly_the_planned_ones(
    lines_server: _Server, kind: str, rate: float
) -> None:
    faults = Faults(lines=True, **{kind: rate})  # type: ignore[arg-type]
    with FaultProxy(lines_server.port, faults, seed=7) as proxy:
        got, end = read_all(proxy.port)
        stats = proxy.stats()
    want, want_end = expected(faults, 7)
    assert (got, end) == (want, want_end) == (want, "eof")
    n = stats.faults[kind]
    assert 0.5 * rate * N_LINES < n < 1.5 * rate * N_LINES  # the rate, roughly (seeded)
    assert len(got) == N_LINES + (n if kind == "duplicate" else -n)
    assert stats.injected == n and stats.units == N_LINES


def test_a_reset_delivers_what_came_before_it_then_aborts_with_a_rst(
    lines_server: _Server,
) -> None:
    faults = Faults(lines=True, reset=0.02)
    with FaultProxy(lines_server.port, faults, seed=3) as proxy:
        got, end = read_all(proxy.port)
        stats = proxy.stats()
    want, want_end = expected(faults, 3)
    assert want_end == "reset" and 0 < len(want) < N_LINES, "the seed must reset mid-stream"
    assert end == "reset" and got == want
    assert stats.faults["reset"] == 1


def test_a_reset_of_a_request_reaches_the_client_as_connection_reset(
    echo_server: _Server,
) -> None:
    with FaultProxy(echo_server.port, Faults(reset=1.0, direction="up"), seed=1) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE_S) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            with pytest.raises(ConnectionResetError):
                while sock.recv(100):
                    pass
        assert proxy.stats().faults["reset"] == 1


def test_latency_and_stalls_delay_but_never_reorder(echo_server: _Server) -> None:
    faults = Faults(latency=0.5, latency_ms=40.0, jitter_ms=30.0, stall=0.1, stall_s=0.2,
                    lines=True, direction="both")  # fmt: skip
    with FaultProxy(echo_server.port, faults, seed=5) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE_S) as sock:
            lines = [b"m %03d\n" % i for i in range(60)]
            t0 = time.monotonic()
            got = b""
            for line in lines:  # one at a time: each line is a unit both ways
                sock.sendall(line)
                while not got.endswith(line):
                    got += sock.recv(100)
            elapsed = time.monotonic() - t0
        stats = proxy.stats()
    assert got == b"".join(lines)
    # every delay drawn, both ways, was waited for in full (a lower bound only)
    plans = [FaultPlan(faults, 5, 0, d) for d in ("up", "down")]
    delays = [sum(p.draw()[1] for _ in range(60)) for p in plans]
    assert elapsed >= sum(delays)
    assert stats.faults["latency"] > 0 and stats.faults["stall"] > 0
    assert stats.faults["latency"] + stats.faults["stall"] == sum(
        1 for p in (FaultPlan(faults, 5, 0, d) for d in ("up", "down")) for _ in range(60)
        if p.draw()[0] is not None
    )  # fmt: skip


def test_the_same_seed_gives_the_same_faults_and_another_seed_others(
    lines_server: _Server,
) -> None:
    faults = Faults(lines=True, drop=0.1, duplicate=0.1, latency=0.1, latency_ms=2.0,
                    jitter_ms=1.0)  # fmt: skip
    runs = []
    for seed in (11, 11, 12):
        with FaultProxy(lines_server.port, faults, seed=seed) as proxy:
            got, _ = read_all(proxy.port)
            runs.append((got, proxy.stats().faults))
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]
    # each connection draws from its own stream: a second connection differs from the first
    assert FaultPlan(faults, 11, 0, "down").draw() != FaultPlan(faults, 11, 1, "down").draw() or (
        [FaultPlan(faults, 11, 0, "down").draw() for _ in range(50)]
        != [FaultPlan(faults, 11, 1, "down").draw() for _ in range(50)]
    )


def test_calm_stops_injecting_and_faults_apply_only_to_their_direction(
    echo_server: _Server,
) -> None:
    with FaultProxy(echo_server.port, Faults(lines=True, drop=1.0, direction="down")) as proxy:
        proxy.calm()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE_S) as sock:
            sock.sendall(b"a\n")
            assert sock.recv(10) == b"a\n"  # calm: nothing dropped
            proxy.calm(False)
            sock.sendall(b"b\n")  # up is not faulted; its echo (down) is dropped
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(10)
        stats = proxy.stats()
    assert stats.faults["drop"] == 1 and stats.units == 4  # a, b up; a, b down


def test_connections_beyond_the_bound_are_refused_and_close_ends_everything(
    echo_server: _Server,
) -> None:
    proxy = FaultProxy(echo_server.port, max_connections=2).start()
    socks = [socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE_S)
             for _ in range(3)]  # fmt: skip
    try:
        for s in socks[:2]:
            s.sendall(b"x")
            assert s.recv(1) == b"x"
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            socks[2].sendall(b"x")
            if not socks[2].recv(1):
                raise ConnectionResetError("closed")
        assert proxy.stats().refused == 1
        proxy.close()
        for s in socks[:2]:
            with contextlib.suppress(ConnectionResetError):  # an abort: a RST
                assert s.recv(1) == b""
        assert all(not t.is_alive() for t in proxy._threads)
    finally:
        for s in socks:
            s.close()
        proxy.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drop": 0.5}, "need lines=True"),
        ({"latency": 0.7, "reset": 0.4}, "sum to at most 1"),
        ({"latency": -0.1}, "in [0, 1]"),
        ({"latency_ms": 5.0, "jitter_ms": 6.0}, "jitter_ms"),
        ({"stall_s": 61.0}, "stall_s"),
        ({"direction": "sideways"}, "direction"),
    ],
)
def test_bad_fault_settings_are_refused_with_a_reason(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Faults(**kwargs)  # type: ignore[arg-type]
