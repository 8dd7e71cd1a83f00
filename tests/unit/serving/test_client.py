"""The model server client (``serving.client``) against a REAL tiny HTTP server on loopback.

``FakeServer`` is ``http.server`` in a thread on ``127.0.0.1:0`` speaking HTTP/1.1 with
keep-alive; a test tells it to answer, hang (until released), fail with 500, send a body
that is not JSON, answer out of range or from another version, or drop the kept connection.
So every fallback reason goes over real sockets. Breaker timing runs on a ``TestClock`` that
the test advances; the one wall-clock dependency, the timeout, is made certain by a handler
that blocks until the test releases it — nothing asserts on elapsed time.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ultrathink.core.clock import TestClock
from ultrathink.data import load_data
from ultrathink.decision.ml import MLStrategy, ModelBundle
from ultrathink.engine.config import EngineConfig
from ultrathink.engine.runner import RunSpec, run
from ultrathink.errors import ConfigError
from ultrathink.features.spec import FEATURE_INDEX, WARMUP_BARS
from ultrathink.serving.client import (
    MODEL_SERVER_BREAKER,
    Catalog,
    ModelServerClient,
    RemoteModel,
    decision_timeout_ms,
)

NAMES = ["logret_1", "logret_5", "rsi_14"]
RECOVERY_NS = int(MODEL_SERVER_BREAKER.recovery_timeout_s * 1e9)
SLOW_S = 0.05  # the client's deadline when the server hangs (it never answers in time)
PATIENT_S = 10.0  # the client's deadline when the server answers (never reached)


class FakeServer:
    """A real HTTP/1.1 keep-alive server on 127.0.0.1:0; ``mode`` says how it answers."""

    def __init__(self) -> None:
        self.mode = "answer"  # answer | hang | 500 | bad_json | bad_p | drop
        self.p: float = 0.25
        self.version = "v0001"
        self.models: list[dict[str, Any]] = [{"version": "v0001", "features": NAMES}]
        self.requests: list[tuple[str, str, bytes]] = []
        self.connections = 0
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def setup(self) -> None:
                super().setup()
                fake.connections += 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, b""))
                routing = {"primary": fake.models[0]["version"]}
                self._send(200, json.dumps({"routing": routing, "models": fake.models}).encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fake.requests.append(("POST", self.path, body))
                mode = fake.mode
                if mode == "hang":
                    fake.release.wait(60)
                if mode == "500":
                    self._send(500, b'{"error": "model v0001 failed to score", "status": 500}')
                elif mode == "bad_json":
                    self._send(200, b"<html>not json</html>")
                else:
                    p = 1.5 if mode == "bad_p" else fake.p
                    answer = {"id": "x", "version": fake.version, "probability": p,
                              "cached": False, "decision": {}}  # fmt: skip
                    self._send(200, json.dumps(answer).encode())
                if mode == "drop":  # close the kept connection without saying so (idle close)
                    self.close_connection = True

            def _send(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up on a hung request
                    self.close_connection = True

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def posts(self) -> list[dict[str, Any]]:
        return [json.loads(body) for method, _, body in self.requests if method == "POST"]

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.close()


class Remote:
    """A ``RemoteModel`` on a test clock, with its audit notes collected."""

    def __init__(self, url: str, timeout_s: float = PATIENT_S, version: str = "v0001") -> None:
        self.clock = TestClock(1_000_000_000)
        catalog = Catalog(version, {version: tuple(NAMES)})
        self.model = RemoteModel(
            ModelServerClient(url, timeout_s), version, NAMES, catalog=catalog, clock=self.clock
        )
        self.notes: list[str] = []
        self.model.bind_audit(self.notes.append)

    def predict(self, x: np.ndarray | None = None, key: str = "AAA") -> float | None:
        return self.model.predict(np.full(len(NAMES), 0.01) if x is None else x, key)


@pytest.fixture
def make_remote() -> Iterator[Any]:
    made: list[Remote] = []

    def make(url: str, timeout_s: float = PATIENT_S, version: str = "v0001") -> Remote:
        made.append(Remote(url, timeout_s, version))
        return made[-1]

    yield make
    for remote in made:
        remote.model.close()


# --- the timeout rule -------------------------------------------------------------------------


def test_the_timeout_is_half_the_decision_budget_with_a_floor_unless_given() -> None:
    assert decision_timeout_ms(10.0) == 5.0  # the default budget (latency_enter_ms)
    assert decision_timeout_ms(50.0) == 25.0
    assert decision_timeout_ms(3.0) == 2.0  # the floor
    assert decision_timeout_ms(10.0, 0.5) == 0.5  # --model-timeout-ms wins, even below it
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ConfigError, match="--model-timeout-ms"):
            decision_timeout_ms(10.0, bad)


@pytest.mark.parametrize("url", ["https://127.0.0.1:8100", "127.0.0.1:8100", "http://", "ftp://x"])
def test_only_http_urls_are_accepted(url: str) -> None:
    with pytest.raises(ConfigError, match="--model-url must be an http URL"):
        ModelServerClient(url, 0.005)


# --- answers ----------------------------------------------------------------------------------


def test_an_answer_is_used_exactly_and_the_connection_is_kept(
    server: FakeServer, make_remote: Any
) -> None:
    server.p = 0.1 + 0.2  # 0.30000000000000004: a float that must survive JSON both ways
    remote = make_remote(server.url)
    x = np.array([math.pi / 7, -1e-300, 1 / 3])

    answers = [remote.predict(x, key="SPY") for _ in range(5)]

    assert answers == [0.1 + 0.2] * 5
    sent = server.posts()
    assert sent[0] == {"features": dict(zip(NAMES, x.tolist(), strict=True)), "key": "SPY"}
    assert [json.loads(json.dumps(v)) for v in sent[0]["features"].values()] == x.tolist()
    assert server.connections == 1, "one kept connection for every request"
    stats = remote.model.stats()
    assert stats["requests"] == stats["answered"] == 5 and stats["fallbacks"] == 0
    assert stats["versions_answered"] == {"v0001": 5} and stats["by_reason"] == {}
    assert stats["connections"] == 1 and stats["reconnects"] == 0
    assert remote.notes == [], "nothing to audit while the server answers"


def test_a_connection_the_server_dropped_is_replaced_once(
    server: FakeServer, make_remote: Any
) -> None:
    remote = make_remote(server.url)
    server.mode = "drop"  # answers, then closes the kept connection without a header

    answers = [remote.predict() for _ in range(3)]

    assert answers == [0.25] * 3
    stats = remote.model.stats()
    assert stats["reconnects"] == 2 and stats["connections"] == 3
    assert stats["fallbacks"] == 0 and remote.notes == []


def test_a_catalog_is_read_from_get_v1_models(server: FakeServer) -> None:
    server.models.append({"version": "v0002", "features": ["logret_1"]})
    client = ModelServerClient(server.url, PATIENT_S)
    try:
        catalog = client.catalog()
    finally:
        client.close()
    assert catalog == Catalog("v0001", {"v0001": tuple(NAMES), "v0002": ("logret_1",)})


# --- fallbacks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("500", "http_500"), ("bad_json", "bad_json"), ("bad_p", "bad_answer")],
)
def test_a_useless_answer_is_a_counted_fallback(
    server: FakeServer, make_remote: Any, mode: str, reason: str
) -> None:
    remote = make_remote(server.url)
    server.mode = mode

    assert remote.predict() is None

    stats = remote.model.stats()
    assert stats["by_reason"] == {reason: 1} and stats["fallbacks"] == 1
    assert stats["answered"] == 0 and stats["breaker"]["state"] == "CLOSED"
    assert len(remote.notes) == 1 and f"lost ({reason}" in remote.notes[0]


def test_a_server_that_hangs_times_out_and_its_late_answer_is_never_read(
    server: FakeServer, make_remote: Any
) -> None:
    remote = make_remote(server.url, timeout_s=SLOW_S)
    server.mode = "hang"

    assert remote.predict() is None  # blocked in the handler until released

    server.mode, server.p = "answer", 0.75
    assert remote.predict() == 0.75  # a new connection: the hung one was closed
    stats = remote.model.stats()
    assert stats["by_reason"] == {"timeout": 1} and stats["answered"] == 1
    assert server.connections == 2
    assert len(remote.notes) == 2
    assert "lost (timeout: no answer" in remote.notes[0] and " back: " in remote.notes[1]


def test_a_refused_connection_is_a_fallback_not_an_error(make_remote: Any) -> None:
    dead = FakeServer()
    url = dead.url
    dead.close()  # nothing listens on that port any more

    remote = make_remote(url)

    assert remote.predict() is None
    assert remote.model.stats()["by_reason"] == {"refused": 1}


def test_another_version_counts_only_when_its_features_are_the_local_ones(
    server: FakeServer, make_remote: Any
) -> None:
    server.models.append({"version": "v0002", "features": NAMES})
    server.models.append({"version": "v0003", "features": NAMES[:2]})
    remote = make_remote(server.url)

    server.version = "v0002"  # unknown to the client's start-up catalog: it asks once
    same_features = [remote.predict() for _ in range(2)]
    server.version = "v0003"
    other_features = remote.predict()

    assert same_features == [0.25, 0.25]
    assert other_features is None
    stats = remote.model.stats()
    assert stats["versions_answered"] == {"v0002": 2}
    assert stats["by_reason"] == {"version_mismatch": 1}
    gets = [path for method, path, _ in server.requests if method == "GET"]
    assert gets == ["/v1/models"], "one catalog read learns every version it lists"


# --- the breaker ------------------------------------------------------------------------------


def test_the_breaker_stops_asking_probes_after_recovery_and_closes_on_an_answer(
    server: FakeServer, make_remote: Any
) -> None:
    remote = make_remote(server.url)
    assert remote.predict() == 0.25
    server.mode = "500"

    failing = [remote.predict() for _ in range(3)]  # failure_threshold = 3: it opens
    n_sent = len(server.requests)
    skipped = [remote.predict() for _ in range(50)]

    assert failing == [None] * 3 and skipped == [None] * 50
    assert len(server.requests) == n_sent, "an open breaker sends nothing"
    assert remote.model.stats()["breaker"]["state"] == "OPEN"

    remote.clock.advance_ns(RECOVERY_NS)  # half-open: one probe, which fails: open again
    assert remote.predict() is None
    assert len(server.requests) == n_sent + 1
    assert remote.predict() is None and len(server.requests) == n_sent + 1

    server.mode = "answer"
    remote.clock.advance_ns(RECOVERY_NS)  # the probe is answered: closed
    back = [remote.predict() for _ in range(3)]

    assert back == [0.25] * 3
    stats = remote.model.stats()
    assert stats["requests"] == 1 + 3 + 50 + 2 + 3
    assert stats["answered"] == 4 and stats["fallbacks"] == 55
    assert stats["by_reason"] == {"breaker_open": 51, "http_500": 4}
    assert stats["breaker"] == {"state": "CLOSED", "opened": 1, "probes_failed": 1}
    assert stats["outages"] == 1
    # the audit trail: transitions only, never one row per skipped request
    assert len(remote.notes) == 3
    assert "lost (http_500" in remote.notes[0]
    assert "breaker model_server OPEN" in remote.notes[1]
    assert "back: v0001 answers again after 55 fallback(s)" in remote.notes[2]


# --- in the strategy, through the real engine -------------------------------------------------


class Local:
    """The local compiled model's stand-in: a constant probability, counting its calls."""

    def __init__(self, p: float) -> None:
        self.p = p
        self.calls = 0

    def __call__(self, x: np.ndarray) -> float:
        self.calls += 1
        return self.p


def _run_ml(remote: Remote, local: Local, db: Path) -> tuple[MLStrategy, Any]:
    n = len(NAMES)
    index = np.array([FEATURE_INDEX[name] for name in NAMES])
    bundle = ModelBundle(
        version="v0001", predict_row=local, feature_index=index,
        feature_names=list(NAMES), low=np.full(n, -1e12), high=np.full(n, 1e12),
        train_start_ns=0, train_end_ns=1, periods_per_year=365.0, remote=remote.model,
    )  # fmt: skip
    strategy = MLStrategy(max_model_age_days=None).attach_model(bundle)
    data = load_data("synthetic:n_bars=200,seed=3,freq=1D")
    result = run(RunSpec(strategy, data, EngineConfig(), db_path=db))
    return strategy, result


def _decision_rows(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT kind, detail FROM audit_log WHERE kind LIKE 'decision.%' ORDER BY seq"
        ).fetchall()
    return [(k, d) for k, d in rows]


def test_the_strategy_decides_with_the_servers_probability(
    server: FakeServer, make_remote: Any, tmp_path: Path
) -> None:
    server.p = 0.9  # the server says enter; the local model would never
    remote, local = make_remote(server.url), Local(0.1)

    strategy, result = _run_ml(remote, local, tmp_path / "s.db")

    n = 200 - WARMUP_BARS + 1
    assert strategy.n_predictions == n and local.calls == 0
    assert result.fills, "the server's 0.9 opened a position"
    assert strategy.stats()["remote"]["answered"] == n
    assert _decision_rows(tmp_path / "s.db") == []
    assert {body["key"] for body in server.posts()} == set(result.symbols)


def test_the_strategy_falls_back_to_the_local_model_and_audits_transitions_only(
    server: FakeServer, make_remote: Any, tmp_path: Path
) -> None:
    server.p, server.mode = 0.9, "500"
    remote, local = make_remote(server.url), Local(0.1)

    strategy, result = _run_ml(remote, local, tmp_path / "s.db")

    n = 200 - WARMUP_BARS + 1
    assert strategy.n_predictions == n and local.calls == n
    assert not result.fills, "the local model's 0.1 never enters"
    stats = strategy.stats()["remote"]
    assert stats["fallbacks"] == n and stats["by_reason"] == {"http_500": 3, "breaker_open": n - 3}
    rows = _decision_rows(tmp_path / "s.db")
    assert [k for k, _ in rows] == ["decision.fallback", "decision.fallback"]
    assert "lost (http_500" in rows[0][1] and "OPEN" in rows[1][1]
