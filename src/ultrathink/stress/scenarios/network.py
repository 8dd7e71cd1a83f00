"""Network faults on each hop, through the seeded TCP fault proxy (``stress/proxy.py``).

Each fault entry is one case on one hop:

* ``hop = "feed"`` (feed -> engine): two ``FeedPublisher``s in this process publish the same
  bars (a seeded random walk, stamped with their intended wall-clock time, ``rate`` timestamps
  a second for ``duration_s``); the session (``ultrathink paper --feed PRIMARY,BACKUP``,
  ``sma_cross``) reads the primary **through the proxy** (line mode: whole NDJSON lines are
  delayed, dropped, repeated, or the connection reset) and the backup directly. After the
  faulted phase the proxy is calmed for ``tail_s`` (so a hole the primary made just before the
  end can still be filled), then the scenario waits until the feed journal has stopped
  growing and stops the session. Every bar sent is then accounted for from the feed journal
  (``feed.ndjson``) and the result's ``feed`` counters: decided exactly once (in the journal
  once, timestamps strictly increasing per symbol), or dropped with a reason (late, shed,
  waiting at the stop); anything else is a lost bar. Every source switch must be an audit row.
* ``hop = "model"`` (engine -> model server): a real ``ultrathink serve`` of a model trained
  once into the scenario's directory; an ML paper session replays ``n_bars`` daily bars at
  ``--speed max`` with ``--model-url`` pointing at the proxy (chunk mode, both directions:
  latency, stalls, resets). The ML strategy falls back to its local model of the same version,
  so its orders must be exactly those of the same session without a server (compared by
  ``invariants.state_digest``), and every prediction must be answered or a counted fallback.
* ``hop = "control"`` (operator -> the session's control API): a paced paper session and a
  seeded sequence of operator commands sent through the proxy (chunk mode, both directions),
  retried by the client with the same command id; every command must be in the audit trail
  once at most, and exactly once when the client saw it applied (``stress/control_hop.py``).

Every case also checks the store invariants (``check_run``) and the process (``check_process``).
The proxy's draws are seeded (``seed * 1000 + case index``): the same seed gives the same faults
per line (feed) or per chunk (model).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from ultrathink.core.events import Bar
from ultrathink.engine.feed_bars import read_feed_journal
from ultrathink.engine.sessions import FEED_JOURNAL_NAME, session_dir
from ultrathink.feed import FeedPublisher
from ultrathink.persistence import Store
from ultrathink.stress.base import STRICT, RunContext, Scenario
from ultrathink.stress.chaos import DETERMINISTIC, ultrathink_command
from ultrathink.stress.control_hop import control_case
from ultrathink.stress.invariants import (
    check_process,
    check_run,
    read_rows,
    state_digest,
    venue_diff,
)
from ultrathink.stress.outcome import Case, Invariant, Outcome
from ultrathink.stress.proxy import FAULT_KINDS, FaultProxy, Faults

_READY_S = 180.0  # a start-up on a busy machine is slow, never wrong
_RATE = Field(default=0.0, ge=0.0, le=1.0)
_NS = 1_000_000_000


class NetworkCase(BaseModel):
    """One case: the hop and the proxy's fault rates (per line on the feed, per chunk else)."""

    model_config = STRICT

    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    hop: Literal["feed", "model", "control"]
    latency: float = _RATE
    latency_ms: float = Field(default=20.0, ge=0, le=10_000)
    jitter_ms: float = Field(default=10.0, ge=0, le=10_000)
    stall: float = _RATE
    stall_s: float = Field(default=0.5, ge=0, le=60)
    reset: float = _RATE
    drop: float = _RATE
    duplicate: float = _RATE

    @model_validator(mode="after")
    def _no_drop_on_control(self) -> NetworkCase:
        if self.hop == "control" and self.drop:
            raise ValueError(
                "drop is for the feed's lines; on the control hop a lost message is a reset "
                f"(reset = ...), was drop = {self.drop}"
            )
        return self


class NetworkParams(BaseModel):
    """The feed's bars, the model session, and how long to wait."""

    model_config = STRICT

    symbols: int = Field(default=4, ge=1, le=100)
    rate: float = Field(default=25.0, gt=0, le=2000, description="feed timestamps per second")
    tail_s: float = Field(default=1.0, ge=0, le=60)
    drain_s: float = Field(default=30.0, gt=0, le=600)
    n_bars: int = Field(default=500, ge=50, le=100_000)
    model_timeout_ms: float = Field(default=20.0, gt=0, le=10_000)
    #: the model session's pace (daily bars per wall second): the model_server breaker's
    #: 2 s probe must get its chances, or a fault rate only measures an open breaker
    bars_per_s: float = Field(default=40.0, gt=0, le=100_000)
    #: appended to the feed sessions' config: the engine holds REDUCING for the market-data
    #: breaker's recovery_timeout_s (60 s by default) after each failover, longer than a case
    session_toml: str = "[hardening.market_data]\nrecovery_timeout_s = 1.0\n"
    #: control hop: the commands sent, the session's pace, the client's timeout and attempts
    control_commands: int = Field(default=40, ge=1, le=10_000)
    control_bars_per_s: float = Field(default=20.0, gt=0, le=10_000)
    control_timeout_s: float = Field(default=1.0, gt=0, le=60)
    control_attempts: int = Field(default=5, ge=1, le=20)
    train: tuple[str, ...] = (
        "--members", "gbm", "--param", "gbm_n_estimators=20", "--folds", "2",
    )  # fmt: skip


class NetworkScenario(Scenario):
    """See the module docstring."""

    kind = "network"
    uses_duration = True
    metrics: ClassVar[Mapping[str, str]] = {
        "bars_sent": "feed bars the publishers sent (each to both feeds)",
        "bars_decided": "feed bars the sessions decided",
        "lost_bars": "bars sent but neither decided nor dropped with a reason",
        "duplicated_bars": "bars decided twice, or out of order, per (symbol, ts)",
        "invented_bars": "bars decided that no publisher sent",
        "late_bars": "bars dropped as older than the session's clock (counted, a reason)",
        "filled_bars": "bars the feed client took from the backup to fill a primary's hole",
        "failovers": "feed switches to the backup (and back), over every feed case",
        "unaudited_failovers": "feed switches without their feed.failover/failback audit row",
        "model_requests": "predictions asked of the model server, every model case",
        "model_fallbacks": "predictions served by the local model instead (counted)",
        "uncounted_fallbacks": "predictions neither answered nor counted as a fallback",
        "order_mismatches": "model cases whose orders and fills differ from the local run's",
        "lost_orders": "orders or fills at the venue missing from the store, every case",
        "duplicated_orders": "orders sent twice or fills stored twice, every case",
        "control_commands": "operator commands sent through the proxy, every control case",
        "applied_commands": "commands the client saw applied (first answer or a repeat's)",
        "refused_commands": "commands the session refused (409, e.g. resume when not halted)",
        "unconfirmed_commands": "commands the client gave up on (may or may not be applied)",
        "command_retries": "attempts the client sent again (same id) after a failed one",
        "command_repeats": "answers the session gave to a repeated id (not applied again)",
        "duplicated_commands": "commands with more than one audit row (applied twice)",
        "lost_commands": "commands the client saw applied or refused without an audit row",
        "injected_faults": "faults the proxy injected, every kind, every case",
        "failed_sessions": "sessions that did not end cleanly",
        "idle_feed_cases": "feed cases without a fill in the second half of their bars",
    }
    params_model = NetworkParams
    fault_model = NetworkCase

    def run(self, ctx: RunContext) -> Outcome:
        cfg = ctx.config
        params: NetworkParams = cfg.params
        outcome = Outcome()
        totals: dict[str, float] = dict.fromkeys(self.metrics, 0)
        model = _ModelServer(ctx, params) if any(c.hop == "model" for c in cfg.faults) else None
        try:
            for i, case in enumerate(cfg.faults):
                seed = cfg.seed * 1000 + i
                ctx.log(f"network: {case.name} ({case.hop})")
                result = Case(case.name)
                if case.hop == "feed":
                    figures = _feed_case(ctx, params, case, seed, cfg.duration_s or 10.0, result)
                elif case.hop == "control":
                    figures = control_case(ctx, params, case, seed, cfg.duration_s or 10.0,
                                           result)  # fmt: skip
                else:
                    assert model is not None
                    figures = model.case(case, seed, result)
                for key, value in figures.items():
                    if key in totals and isinstance(value, int | float):
                        totals[key] += value
                result.figures.update(figures)
                outcome.cases.append(result)
        finally:
            if model is not None:
                model.close()
        hops = {c.hop for c in cfg.faults}
        outcome.metrics.update(totals)
        if "feed" not in hops:
            outcome.skip(
                tuple(k for k in self.metrics if "bar" in k or "failover" in k), "no feed case"
            )
        if "model" not in hops:
            outcome.skip(("model_requests", "model_fallbacks", "uncounted_fallbacks",
                          "order_mismatches"), "no model case")  # fmt: skip
        if "control" not in hops:
            outcome.skip(tuple(k for k in self.metrics if "command" in k), "no control case")
        return outcome


def _faults(case: NetworkCase, lines: bool, direction: Literal["down", "both"]) -> Faults:
    return Faults(
        latency=case.latency, latency_ms=case.latency_ms,
        jitter_ms=min(case.jitter_ms, case.latency_ms), stall=case.stall, stall_s=case.stall_s,
        reset=case.reset, drop=case.drop, duplicate=case.duplicate, lines=lines,
        direction=direction,
    )  # fmt: skip


def _start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip


def _proxy_figures(proxy: FaultProxy) -> dict[str, Any]:
    stats = proxy.stats()
    out: dict[str, Any] = {f"proxy_{k}": stats.faults[k] for k in FAULT_KINDS}
    out.update(injected_faults=stats.injected, proxy_units=stats.units,
               proxy_connections=stats.connections)  # fmt: skip
    return out


# -- feed -> engine ------------------------------------------------------------------------------


def _feed_case(
    ctx: RunContext, p: NetworkParams, case: NetworkCase, seed: int, duration_s: float,
    result: Case,
) -> dict[str, Any]:  # fmt: skip
    work = ctx.work_dir / case.name
    work.mkdir(parents=True)
    db = work / "stress.db"
    (work / "session.toml").write_text(DETERMINISTIC + p.session_toml)
    names = [f"N{i:02d}" for i in range(p.symbols)]
    sent: list[Bar] = []
    with (
        FeedPublisher(heartbeat_s=0.2, max_buffer_bytes=1 << 28) as primary,
        FeedPublisher(heartbeat_s=0.2, max_buffer_bytes=1 << 28) as backup,
        FaultProxy(primary.port, _faults(case, True, "down"), seed) as proxy,
    ):
        session = _start([
            *ultrathink_command(), "paper", "--feed",
            f"tcp://127.0.0.1:{proxy.port},{backup.url}", "--symbols", ",".join(names),
            "--strategy", "sma_cross", "--param", "fast=3", "--param", "slow=8",
            "--db", str(db), "--config", str(work / "session.toml"), "--json", "--no-control",
        ])  # fmt: skip
        try:
            if not (primary.wait_for_clients(1, _READY_S) and backup.wait_for_clients(1, _READY_S)):
                raise RuntimeError("the session did not connect to both feeds")
            rnd = random.Random(seed)
            prices = dict.fromkeys(names, 100.0)
            period = 1.0 / p.rate
            t0 = time.monotonic()
            wall0 = time.time_ns()
            n_ts = int((duration_s + p.tail_s) * p.rate)
            for k in range(n_ts):
                if k == int(duration_s * p.rate):
                    proxy.calm()  # the tail: the primary's last holes can still be filled
                due = t0 + k * period
                time.sleep(max(0.0, due - time.monotonic()))
                ts = wall0 + int(k * period * _NS)
                group = []
                for name in names:
                    o = prices[name]
                    c = o * (1.0 + rnd.gauss(0.0, 0.002))
                    prices[name] = c
                    group.append(Bar(ts, name, o, max(o, c) * 1.0001, min(o, c) * 0.9999, c, 1e3))
                primary.publish_bars(group, first_seq=k * len(names))
                backup.publish_bars(group, first_seq=k * len(names))
                sent += group
            _wait_journal(session_dir(db, 1) / FEED_JOURNAL_NAME, len(sent), p.drain_s, session)
            session.send_signal(signal.SIGINT)
            out, err = session.communicate(timeout=_READY_S)
        finally:
            if session.poll() is None:
                session.kill()
                session.communicate()
        figures = _proxy_figures(proxy)
    (work / "session.err").write_text(err)
    result.invariants.append(check_process(session.returncode, err, what="session"))
    res = json.loads(out) if out.strip() else {}
    feed = res.get("feed") or {}
    if not feed:
        result.invariants.append(Invariant("measured", False, f"no result: {err[-300:]}"))
        return {**figures, "failed_sessions": 1}
    result.invariants += check_run(db)
    figures.update(_account(db, sent, res, feed, result))
    figures.update(_orders(db, res))
    figures["failed_sessions"] = 0 if session.returncode == 0 else 1
    half = sent[len(sent) // 2].ts_ns
    late_fills = read_rows(db, "SELECT COUNT(*) FROM fills WHERE run_id = 1 AND ts_ns >= ?",
                           (half,))[0][0]  # fmt: skip
    figures["fills_second_half"] = late_fills
    figures["idle_feed_cases"] = 0 if late_fills else 1
    result.invariants.append(Invariant(
        "keeps_trading", late_fills > 0,
        f"{late_fills} fills in the second half of the bars (state at the end: "
        f"{res.get('trading_state')})",
    ))  # fmt: skip
    return figures


def _wait_journal(path: Path, n: int, drain_s: float, session: subprocess.Popen[str]) -> None:
    # until every bar is journaled, or the journal stopped growing for 2 s, or drain_s
    deadline = time.monotonic() + drain_s
    last, still = -1, 0
    while time.monotonic() < deadline and session.poll() is None:
        size = path.read_bytes().count(b"\n") if path.exists() else 0
        if size >= n:
            return
        still = still + 1 if size == last else 0
        if still >= 20:
            return
        last = size
        time.sleep(0.1)


def _account(
    db: Path, sent: list[Bar], res: dict[str, Any], feed: dict[str, Any], result: Case
) -> dict[str, Any]:
    journal = read_feed_journal(session_dir(db, 1) / FEED_JOURNAL_NAME)
    keys = [(b.symbol, b.ts_ns) for b in journal]
    sent_keys = {(b.symbol, b.ts_ns) for b in sent}
    last: dict[str, int] = {}
    disorder = 0
    for sym, ts in keys:
        disorder += ts <= last.get(sym, -1)
        last[sym] = max(ts, last.get(sym, -1))
    duplicated = len(keys) - len(set(keys)) + disorder
    invented = len(set(keys) - sent_keys)
    missing = len(sent_keys - set(keys))
    shed = sum((feed.get("shed") or {}).values())
    waiting = feed.get("unreleased", 0) + feed.get("queued", 0) + feed.get("held", 0)
    late, stale = feed.get("late", 0), feed.get("stale", 0)
    lost = missing - late - stale - shed - waiting
    decided = int(res.get("n_bars") or 0)
    result.invariants.append(Invariant(
        "bars_accounted", lost == 0 and duplicated == 0 and invented == 0 and decided == len(keys),
        f"{len(sent):,} sent = {len(set(keys)):,} decided once + {late} late + {stale} stale + "
        f"{shed} shed + {waiting} waiting at the stop" + (f" + {lost} LOST" if lost else "")
        + (f"; {duplicated} duplicated or out of order" if duplicated else "")
        + (f"; {invented} invented" if invented else "")
        + ("" if decided == len(keys) else f"; {decided} decided but {len(keys)} journaled"),
    ))  # fmt: skip
    switches = feed.get("failovers", 0) + feed.get("failbacks", 0)
    with Store(db, readonly=True) as store:
        rows = store.audit_details(1, ("feed.failover", "feed.failback"))
    gaps = sum("may have a gap" in detail for _, detail in rows)
    result.invariants.append(Invariant(
        "switches_audited", len(rows) == switches,
        f"{feed.get('failovers', 0)} failovers + {feed.get('failbacks', 0)} failbacks, "
        f"{len(rows)} audit rows ({gaps} not gapless)",
    ))  # fmt: skip
    return {
        "bars_sent": len(sent), "bars_decided": decided, "lost_bars": abs(lost),
        "duplicated_bars": duplicated, "invented_bars": invented, "late_bars": late,
        "filled_bars": feed.get("filled", 0), "failovers": switches,
        "unaudited_failovers": abs(switches - len(rows)), "feed_duplicates": feed.get("duplicates"),
        "malformed": sum((feed.get("malformed") or {}).values()), "source": feed.get("source"),
        "reconnects": feed.get("reconnects"), "not_gapless": gaps,
    }  # fmt: skip


def _orders(db: Path, res: dict[str, Any]) -> dict[str, Any]:
    diff = venue_diff(db, 1)
    return {
        "orders": sum((res.get("orders") or {}).values()),
        "trading_state": res.get("trading_state"),
        "lost_orders": len(diff.lost_orders) + len(diff.lost_fills),
        "duplicated_orders": len(diff.duplicated_orders) + len(diff.duplicated_fills),
    }


# -- engine -> model server ----------------------------------------------------------------------


class _ModelServer:
    """The model (trained once), a real ``ultrathink serve`` of it, and the local reference."""

    def __init__(self, ctx: RunContext, p: NetworkParams) -> None:
        self.ctx, self.p = ctx, p
        self.data = f"synthetic:n_bars={p.n_bars},seed={ctx.config.seed},freq=1D"
        self.registry = ctx.work_dir / "models"
        self.env = {"ULTRATHINK_HOME": str(ctx.work_dir / "home")}
        self.server: subprocess.Popen[bytes] | None = None
        self.reference: str | None = None
        self.error = "not ready"
        self.port = 0
        # trained and started beside the feed cases: both take seconds, mostly waiting
        self._setup = threading.Thread(target=self._start, daemon=True)
        self._setup.start()

    def _start(self) -> None:
        ctx, p = self.ctx, self.p
        ctx.log("network: training the model the server serves")
        done = subprocess.run(
            [*ultrathink_command(), "train", "--data", self.data, *p.train,
             "--registry", str(self.registry), "--promote", "--json"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            self.error = f"training failed: {done.stderr.strip()[-300:]}"
            return
        self.log = ctx.work_dir / "serve.log"
        with self.log.open("w") as log:  # the server logs to stdout: a file never fills up
            self.server = subprocess.Popen(
                [*ultrathink_command(), "serve", "--port", "0", "--registry", str(self.registry)],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
            )  # fmt: skip
        self.port = self._wait_ready()
        self.error = "" if self.port else f"the model server did not start (see {self.log})"

    def _wait_ready(self) -> int:
        # its "listening on" line gives the port, its "ready in" line the readiness
        assert self.server is not None
        deadline = time.monotonic() + _READY_S
        while time.monotonic() < deadline and self.server.poll() is None:
            text = self.log.read_text()
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
            if match and re.search(r"^ready in ", text, re.MULTILINE):
                return int(match.group(1))
            time.sleep(0.05)
        return 0

    def _paper(
        self, db: Path, *extra: str, speed: str = "max"
    ) -> tuple[int | None, str, dict[str, Any]]:
        db.parent.mkdir(parents=True, exist_ok=True)
        (db.parent / "session.toml").write_text(DETERMINISTIC)
        proc = _start([
            *ultrathink_command(), "paper", "--strategy", "ml", "--registry", str(self.registry),
            "--data", self.data, "--speed", speed, "--db", str(db), "--json",
            "--config", str(db.parent / "session.toml"), "--no-control", *extra,
        ], self.env)  # fmt: skip
        try:
            out, err = proc.communicate(timeout=_READY_S * 2)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        (db.parent / "session.err").write_text(err)
        return proc.returncode, err, (json.loads(out) if out.strip() else {})

    def case(self, case: NetworkCase, seed: int, result: Case) -> dict[str, Any]:
        self._setup.join()
        if self.error:
            result.invariants.append(Invariant("no_crash", False, self.error))
            return {"failed_sessions": 1}
        if self.reference is None:  # the same session on the local model alone
            ref_db = self.ctx.work_dir / "model-reference" / "stress.db"
            code, err, _ = self._paper(ref_db)
            self.reference = state_digest(ref_db) if code == 0 else f"failed: {err[-200:]}"
        db = self.ctx.work_dir / case.name / "stress.db"
        with FaultProxy(self.port, _faults(case, False, "both"), seed) as proxy:
            code, err, res = self._paper(
                db, "--model-url", f"http://{proxy.url}",
                "--model-timeout-ms", f"{self.p.model_timeout_ms:g}",
                speed=f"{86_400 * self.p.bars_per_s:g}",
            )  # fmt: skip
            figures = _proxy_figures(proxy)
        result.invariants.append(check_process(code, err, what="session"))
        stats = res.get("strategy_stats") or {}
        remote = stats.get("remote") or {}
        if not remote:
            result.invariants.append(Invariant("measured", False, f"no result: {err[-300:]}"))
            return {**figures, "failed_sessions": 1}
        result.invariants += check_run(db)
        n = int(stats.get("n_predictions") or 0)
        req, ans, fb = remote["requests"], remote["answered"], remote["fallbacks"]
        uncounted = abs(req - ans - fb) + abs(n - req)
        result.invariants.append(Invariant(
            "fallbacks_counted", uncounted == 0,
            f"{n:,} predictions = {ans:,} answered + {fb:,} fallbacks "
            f"({', '.join(f'{k} {v}' for k, v in sorted(remote.get('by_reason', {}).items()))})",
        ))  # fmt: skip
        same = state_digest(db) == self.reference
        result.invariants.append(Invariant(
            "orders_as_local", same,
            "orders, fills, positions and equity equal the local-model session's" if same
            else f"differs from the local-model session ({self.reference})",
        ))  # fmt: skip
        figures.update(_orders(db, res))
        figures.update(
            model_requests=req, model_fallbacks=fb, uncounted_fallbacks=uncounted,
            order_mismatches=0 if same else 1, failed_sessions=0 if code == 0 else 1,
            breaker_opened=(remote.get("breaker") or {}).get("opened"),
        )  # fmt: skip
        return figures

    def close(self) -> None:
        self._setup.join()
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()


SCENARIO = NetworkScenario
