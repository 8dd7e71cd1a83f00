"""Load, spike and endurance: market events at a fixed arrival rate through the live feed.

One case per scenario: the load generator (``stress/loadgen.py``, a process of its own)
offers bars at the rate of the scenario's shape (``constant`` for ``duration_s``, or
``steps``: a spike is baseline, 10x, baseline), stamped with their intended arrival time; an
ML paper session trades them (``paper --feed``). The session measures each timestamp's age
when its decision and orders are done (``engine/feed_bars.py``), so latency is taken from the
intended arrival time and a stall cannot hide (no coordinated omission). The scenario samples
the session's RSS, open descriptors and store size every ``sample_s``.

Measured: offered and achieved rates, the generator's own lag (a generator that could not keep
up is reported, never taken for the session's limit), the latency percentiles, the success
rate (events decided within ``deadline_ms`` over events offered: shed events count as
failures), every event accounted for (processed, shed, late, duplicated or malformed, and
nothing lost between the generator and the session), the recovery time after the last
step above the first one (the first second from which the median per-second p99 of every
``recovery_window_s`` window is back under ``recovery_factor`` x the baseline's median
per-second p99; and, stricter, from which every single second is), and over a long run
the RSS slope after
``warmup_s`` and the drift of the per-minute p99. The store invariants run on the session's
store (orders terminal, nothing lost or duplicated against the venue, money, audit chain).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from pydantic import BaseModel, Field

from ultrathink.engine.sessions import FEED_JOURNAL_NAME, session_dir
from ultrathink.feed.config import FeedReader
from ultrathink.perf.process import cpu_ticks, reference_cpu_us, run_queue_wait_s
from ultrathink.stress.base import STRICT, RunContext, Scenario
from ultrathink.stress.chaos import DETERMINISTIC, ultrathink_command
from ultrathink.stress.figures import series_figure
from ultrathink.stress.invariants import check_process, check_run
from ultrathink.stress.loadgen import symbols as generator_symbols
from ultrathink.stress.measure import LATENCY_POINTS, latency_metric_names
from ultrathink.stress.outcome import Case, Invariant, Outcome
from ultrathink.stress.scenario import ConstantShape, StepsShape

_MIB = 1 << 20


class Sample(NamedTuple):
    """One reading of the session (and the generator) every ``sample_s``."""

    t: float  # seconds since sampling began
    rss_mb: float
    fds: int
    store_mb: float
    cpu_pct: float  # the session's CPU (user + system) over the interval, % of one core
    generator_cpu_pct: float
    #: time the session's threads (the generator's) were runnable but waiting for a CPU
    #: over the interval, % of the interval summed over threads; None without schedstat
    runq_wait_pct: float | None = None
    generator_runq_wait_pct: float | None = None
    #: the CPU of the session's child processes (its store writer) over the interval
    writer_cpu_pct: float | None = None
    #: the machine: CPU µs of ``perf.process.reference_cpu_us``'s fixed loop, read by the
    #: sampler at this sample, and the hypervisor's steal over the interval, % of all CPUs
    reference_us: float | None = None
    steal_pct: float | None = None
    #: the CPU of the session's feed reader process (``[feed] reader = "process"``)
    feed_cpu_pct: float | None = None
    #: the wall clock at the reading (unix seconds): lines samples up with ``per_second``
    unix_s: float | None = None


#: the generator and the session must each be ready within this (a busy machine is slow)
_READY_S = 180.0


class LoadParams(BaseModel):
    """The session and how it is measured."""

    model_config = STRICT

    symbols: int = Field(default=4, ge=1, le=1000)
    #: the ML strategy; its model is trained on sp500's history and the generator's bars are
    #: stamped now, so the model-age guard is widened, and it enters at p > 0.5 so that
    #: orders flow (every order-accounting invariant then has something to check)
    strategy: tuple[str, ...] = (
        "--strategy", "ml", "--param", "entry_threshold=0.5", "--param", "exit_threshold=0.5",
        "--param", "max_model_age_days=36500",
    )  # fmt: skip
    #: ``ultrathink train`` arguments of the model an ``ml`` session trades (trained once into
    #: the scenario's directory and promoted); empty: the session's default registry
    train: tuple[str, ...] = (
        "--data", "sp500", "--members", "gbm", "--param", "gbm_n_estimators=50", "--folds", "2",
    )  # fmt: skip
    deadline_ms: float = Field(default=1.0, gt=0, le=60_000)
    #: the session's deadline shedding (``[feed] max_bar_age_s``): a bar older than this when
    #: the kernel takes it is dropped as ``stale`` and counted (a failure in success_rate);
    #: None: every bar is traded however late
    max_bar_age_ms: float | None = Field(default=None, gt=0, le=3_600_000)
    #: where the session reads its feed (``[feed] reader``): on the kernel's thread, or in a
    #: child process (reading and decoding on the other core)
    feed_reader: FeedReader = "inline"
    sample_s: float = Field(default=1.0, gt=0, le=60)
    warmup_s: float = Field(default=60.0, ge=0)
    drain_s: float = Field(default=60.0, gt=0, le=3600)
    recovery_factor: float = Field(default=1.5, ge=1.0, le=100.0)
    #: seconds whose median per-second p99 ``recovery_s`` compares: one second's p99 is set
    #: by its slowest 1 %, so a single stall of a few ms makes a slow second, and the
    #: baseline has such seconds too (docs/stress.md, "Spike recovery")
    recovery_window_s: int = Field(default=5, ge=1, le=60)
    #: the window whose median per-second p99 is compared first to last (endurance drift)
    drift_window_s: float = Field(default=60.0, gt=0, le=86_400)


class LoadCase(BaseModel):
    """One case: its name (the scenario's shape is its load)."""

    model_config = STRICT

    name: str = Field(default="load", pattern=r"^[a-z0-9_-]{1,40}$")


class LoadScenario(Scenario):
    """See the module docstring."""

    kind = "load"
    uses_duration = True
    metrics: ClassVar[Mapping[str, str]] = {
        "offered_rate": "bars/s offered over the phases (all symbols)",
        "peak_offered_rate": "bars/s offered in the busiest phase",
        "achieved_rate": "bars/s decided, from the second of the first decision to that of "
        "the last (the schedule's span when the session keeps up; longer when it drains)",
        "offered": "bars the generator was asked to send",
        "sent": "bars the generator sent",
        "generator_behind": "bars the generator sent more than 1 ms after their intended time",
        "generator_max_lag_ms": "the generator's largest lag behind its schedule, ms",
        "generator_p99_lag_us": "p99 of the generator's lag behind its schedule (each write, "
        "from its oldest bar's intended time to the end of the send), µs",
        "processed": "bars the session decided",
        "shed": "bars the feed client shed for room (counted, with a reason)",
        "stale": "bars the session shed as older than its max_bar_age_s when taken (counted)",
        "late": "bars dropped as older than the session's clock",
        "unaccounted_events": "bars neither processed nor dropped with a reason (must be 0)",
        "success_rate": "bars decided within deadline_ms of their intended time / offered",
        **latency_metric_names("decision", "intended arrival to decision and orders"),
        "recovery_s": "seconds after the last high step until the median per-second p99 of "
        "every recovery_window_s window is back under recovery_factor x the baseline's",
        "recovery_every_second_s": "the same, until every single second's p99 is (stricter: "
        "a baseline's own slow seconds fail it)",
        "baseline_slow_seconds": "baseline seconds whose p99 is over recovery_factor x the "
        "baseline's median: how often a single second misses even without a spike",
        "machine_slower_after_pct": "how much slower the machine read after the last high step "
        "than during the first step (the reference loop's median), %: a recovery missed while "
        "the same work costs more CPU is the machine's as much as the session's",
        "rss_slope_mb_per_min": "slope of the session's RSS after warmup_s, MiB/min",
        "p99_drift_pct": "change of the median per-second p99 from the first drift window to "
        "the last, %",
        "max_rss_mb": "the session's largest RSS, MiB",
        "max_fds": "the session's most open file descriptors",
        "mean_cpu_pct": "the session's CPU over the run, % of one core (sampled per sample_s)",
        "max_cpu_pct": "the session's busiest sample, % of one core",
        "generator_cpu_pct": "the load generator's CPU over the run, % of one core",
        "runq_wait_pct": "time the session's threads were runnable but waiting for a CPU "
        "(schedstat), % of the run summed over threads: latency the scheduler added",
        "generator_runq_wait_pct": "the same for the load generator",
        "writer_cpu_pct": "the CPU of the session's store writer process over the run, % of "
        "one core",
        "feed_cpu_pct": "the CPU of the session's feed reader process over the run, % of one "
        'core (reader = "process" only)',
        "reference_us": "median CPU µs of a fixed Python loop read each sample beside the "
        "session (perf.process.reference_cpu_us): the machine's speed; higher is slower",
        "reference_us_max": "the slowest such reading",
        "steal_pct": "CPU time the hypervisor gave to others over the run, % of all CPUs",
        "gc_collections": "garbage collections in the session while live (the kernel pauses "
        "the cyclic collector)",
        "gc_pause_max_ms": "the session's longest garbage-collector pause, ms",
        "store_mb": "the store's size at the end, MiB",
        "orders": "orders the session placed",
        "lost_orders": "orders at the venue missing from the store, or the reverse",
    }
    params_model = LoadParams
    fault_model = LoadCase

    def run(self, ctx: RunContext) -> Outcome:
        cfg = ctx.config
        params: LoadParams = cfg.params
        phases = _phases(cfg.shape, cfg.duration_s)
        outcome = Outcome()
        case = Case(cfg.faults[0].name if cfg.faults else "load")
        outcome.cases.append(case)
        strategy = list(params.strategy)
        if "ml" in strategy and params.train:
            registry, code, err = _trained(ctx, params.train)
            if code != 0:
                case.invariants.append(check_process(code, err, what="model training"))
                return outcome
            strategy += ["--registry", str(registry)]
        run = _Run(ctx, params, phases, strategy, cfg.seed)
        run.go()
        _measure(run, params, phases, case, outcome)
        return outcome


def _trained(ctx: RunContext, train: tuple[str, ...]) -> tuple[Path, int, str]:
    # the registry of a model trained with ``train``: once per invocation when the scenarios
    # share a directory (load, spike and endurance of a suite train the same model), else
    # into the scenario's own directory; (registry, exit code, stderr)
    done: Path | None = None  # written once a shared training succeeded
    if ctx.shared_dir is None:
        registry = ctx.work_dir / "models"
    else:
        key = hashlib.sha256("\x1f".join(train).encode()).hexdigest()[:16]
        registry, done = ctx.shared_dir / f"models-{key}", ctx.shared_dir / f"models-{key}.ok"
        if done.is_file():
            ctx.log(f"load: the model the session trades, trained earlier ({registry})")
            return registry, 0, ""
        shutil.rmtree(registry, ignore_errors=True)  # a training that failed earlier
    ctx.log("load: training the model the session trades")
    code, err = _quiet([*ultrathink_command(), "train", *train,
                        "--registry", str(registry), "--promote", "--json"])  # fmt: skip
    if code == 0 and done is not None:
        done.touch()
    return registry, code, err


def _phases(shape: Any, duration_s: float | None) -> list[tuple[float, float]]:
    if isinstance(shape, ConstantShape):
        return [(shape.rate_per_s, duration_s or 20.0)]
    if isinstance(shape, StepsShape):
        return [(s.rate_per_s, s.duration_s) for s in shape.steps]
    raise ValueError("a load scenario's shape is constant or steps")


def _quiet(argv: list[str]) -> tuple[int, str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.returncode, done.stderr


class _Run:
    """The generator, the session and the sampler of one case."""

    def __init__(
        self,
        ctx: RunContext,
        params: LoadParams,
        phases: list[tuple[float, float]],
        strategy: list[str],
        seed: int,
    ) -> None:
        self.ctx, self.params, self.phases, self.strategy, self.seed = (
            ctx, params, phases, strategy, seed,
        )  # fmt: skip
        self.db = ctx.work_dir / "stress.db"
        self.generator: dict[str, Any] = {}
        self.result: dict[str, Any] = {}
        self.session_code: int | None = None
        self.session_err = ""
        self.generator_err = ""
        self.samples: list[Sample] = []

    def go(self) -> None:
        log, params = self.ctx.log, self.params
        spec = ",".join(f"{rate:g}:{secs:g}" for rate, secs in self.phases)
        gen = subprocess.Popen(
            [sys.executable, "-m", "ultrathink.stress.loadgen", "--symbols", str(params.symbols),
             "--phases", spec, "--seed", str(self.seed), "--wait-client-s", str(_READY_S)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        session: subprocess.Popen[str] | None = None
        try:
            assert gen.stdout is not None and gen.stdin is not None
            ready = json.loads(gen.stdout.readline() or "{}")
            if "ready" not in ready:
                raise RuntimeError("the load generator did not start")
            config = self.ctx.work_dir / "session.toml"
            age = params.max_bar_age_ms
            feed = f"\n[feed]\nreader = {params.feed_reader!r}\n"
            if age is not None:
                feed += f"max_bar_age_s = {age / 1000!r}\n"
            config.write_text(DETERMINISTIC + feed)
            names = ",".join(generator_symbols(params.symbols))
            session = subprocess.Popen(
                [*ultrathink_command(), "paper", "--feed", ready["ready"], "--symbols", names,
                 *self.strategy, "--db", str(self.db), "--config", str(config), "--json",
                 "--no-control"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            log(f"load: {spec} bars/s:s over {params.symbols} symbols")
            stop_sampling = threading.Event()
            sampler = threading.Thread(
                target=self._sample, args=(session.pid, gen.pid, stop_sampling)
            )
            sampler.start()
            try:
                line = gen.stdout.readline()  # the generator's report: the phases are over
                self.generator = json.loads(line) if line.strip() else {}
                self._drain(session)
            finally:
                stop_sampling.set()
                sampler.join()
            session.send_signal(signal.SIGINT)
            out, self.session_err = session.communicate(timeout=_READY_S + params.drain_s)
            self.session_code = session.returncode
            (self.ctx.work_dir / "session.err").write_text(self.session_err)
            self.result = json.loads(out) if out.strip() else {}
        finally:
            if session is not None and session.poll() is None:
                session.kill()
                session.communicate()
            try:  # closing its stdin (communicate does) ends the generator
                _, self.generator_err = gen.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                gen.kill()
                gen.communicate()

    def _drain(self, session: subprocess.Popen[str]) -> None:
        # after the last phase: until the journal stops growing (the session has taken what
        # the client did not shed), or drain_s; what is left is counted as unreleased
        journal = session_dir(self.db, 1) / FEED_JOURNAL_NAME
        deadline = time.monotonic() + self.params.drain_s
        last, still = -1, 0
        while time.monotonic() < deadline and session.poll() is None:
            size = journal.stat().st_size if journal.exists() else 0
            still = still + 1 if size == last else 0
            if still >= 10:  # a second without a new bar
                return
            last = size
            time.sleep(0.1)

    def _sample(self, pid: int, generator_pid: int, stop: threading.Event) -> None:
        import psutil

        def cpu_s(p: Any) -> float:
            times = p.cpu_times()
            return float(times.user + times.system)

        def waits() -> tuple[float | None, float | None]:
            return run_queue_wait_s(pid), run_queue_wait_s(generator_pid)

        def share(now: float | None, before: float | None, pct: float) -> float | None:
            return None if now is None or before is None else round((now - before) * pct, 2)

        seen: dict[int, float] = {}  # each child's CPU seconds at the last reading
        feed_pids: set[int] = set()

        def children_cpu_s() -> tuple[float, float]:
            # CPU of the session's children since the last reading (a new one: all of it):
            # the store writer's, and the feed reader process's
            spent = [0.0, 0.0]
            for child in proc.children(recursive=True):
                try:
                    now_s = cpu_s(child)
                    if child.pid not in seen and "ultrathink.feed.process" in child.cmdline():
                        feed_pids.add(child.pid)
                except psutil.Error:
                    continue  # ended meanwhile
                spent[child.pid in feed_pids] += now_s - seen.get(child.pid, 0.0)
                seen[child.pid] = now_s
            return spent[0], spent[1]

        def steal_pct(now: tuple[int, int] | None, before: tuple[int, int] | None) -> float | None:
            if now is None or before is None or now[1] <= before[1]:
                return None
            return round(100.0 * (now[0] - before[0]) / (now[1] - before[1]), 2)

        try:
            proc, gen = psutil.Process(pid), psutil.Process(generator_pid)
            last = (time.monotonic(), cpu_s(proc), cpu_s(gen))
            last_wait = waits()
            children_cpu_s()
        except psutil.Error:
            return
        last_ticks = cpu_ticks()
        t0 = last[0]
        while not stop.wait(self.params.sample_s):
            try:
                rss = proc.memory_info().rss / _MIB
                fds = proc.num_fds()
                now = (time.monotonic(), cpu_s(proc), cpu_s(gen))
                wait = waits()
                writer_s, feed_s = children_cpu_s()
            except psutil.Error:
                return
            store = sum(
                p.stat().st_size for p in self.db.parent.glob(self.db.name + "*") if p.is_file()
            )
            ticks = cpu_ticks()
            pct = 100.0 / max(now[0] - last[0], 1e-9)
            self.samples.append(Sample(
                now[0] - t0, rss, fds, store / _MIB,
                round((now[1] - last[1]) * pct, 1), round((now[2] - last[2]) * pct, 1),
                share(wait[0], last_wait[0], pct), share(wait[1], last_wait[1], pct),
                round(writer_s * pct, 1), round(reference_cpu_us(), 1),
                steal_pct(ticks, last_ticks),
                round(feed_s * pct, 1) if feed_pids else None, round(time.time(), 3),
            ))  # fmt: skip
            last, last_wait, last_ticks = now, wait, ticks


def _measure(
    run: _Run,
    params: LoadParams,
    phases: list[tuple[float, float]],
    case: Case,
    outcome: Outcome,
) -> None:
    case.invariants.append(check_process(run.session_code, run.session_err, what="session"))
    result, gen = run.result, run.generator
    feed = result.get("feed") or {}
    if not feed or not gen:
        case.invariants.append(
            Invariant("measured", False, f"no result: {run.generator_err[-300:]}")
        )
        return
    case.invariants += check_run(run.db)
    m: dict[str, float | None] = {}
    total_s = sum(s for _, s in phases)
    m["offered"] = gen["offered"]
    m["sent"] = gen["sent"]
    m["offered_rate"] = round(gen["offered"] / total_s, 1)
    m["peak_offered_rate"] = max(rate for rate, _ in phases)
    m["generator_behind"] = gen["behind"]
    m["generator_max_lag_ms"] = round(gen["max_lag_us"] / 1000, 3)
    m["generator_p99_lag_us"] = gen["lag_p99_us"]
    processed = int(result.get("n_bars") or 0)
    m["processed"] = processed
    m["shed"] = sum((feed.get("shed") or {}).values())
    m["late"] = feed.get("late", 0)
    m["stale"] = feed.get("stale", 0)
    bars_received = feed["received"] - feed["heartbeats"]
    unaccounted = (
        abs(gen["sent"] - bars_received)  # lost between the generator and the client
        + abs(feed.get("unaccounted", 0))  # the client's own accounting
        + abs(feed["delivered"] - feed["late"] - m["stale"] - feed["released"] - feed["unreleased"])
        + abs(feed["released"] - processed)  # every released bar decided
    )
    m["unaccounted_events"] = unaccounted
    case.invariants.append(
        Invariant(
            "events_accounted", unaccounted == 0,
            f"{gen['sent']:,} sent = {processed:,} decided + {m['shed']:,} shed + "
            f"{m['late']:,} late + {m['stale']:,} stale + {feed['duplicates']:,} duplicates + "
            f"{sum((feed.get('malformed') or {}).values()):,} malformed + "
            f"{feed['unreleased'] + feed['queued']:,} waiting at the stop"
            + ("" if unaccounted == 0 else f"; {unaccounted} unaccounted"),
        )
    )  # fmt: skip
    hist = _histogram(feed.get("age_histogram"))
    for (name, _), q in zip(LATENCY_POINTS, (50.0, 99.0, 99.9, None), strict=True):
        key = f"{name}_decision_us"
        if hist is None:
            m[key] = None
        else:
            m[key] = float(hist.get_max_value() if q is None else hist.get_value_at_percentile(q))
    deadline_us = params.deadline_ms * 1000
    within = 0
    if hist is not None:
        within = sum(
            i.count_at_value_iterated_to
            for i in hist.get_recorded_iterator()
            if i.value_iterated_to <= deadline_us
        )
    m["success_rate"] = round(within / gen["offered"], 6) if gen["offered"] else None
    series = [tuple(row) for row in feed.get("age_series") or []]
    m["achieved_rate"] = _achieved_rate(series)
    m.update(_recovery(series, phases, params.recovery_factor, params.recovery_window_s))
    m["machine_slower_after_pct"] = _machine_slower_after(run.samples, series, phases)
    m.update(_endurance(run.samples, series, params.warmup_s, params.drift_window_s))
    m.update(_cpu_and_gc(run.samples, feed.get("gc")))
    for key, why in (
        ("rss_slope_mb_per_min", "fewer than 3 samples after warmup_s"),
        ("p99_drift_pct", "fewer than two whole drift windows after warmup_s"),
        ("recovery_s", "no step above the first one, or p99 never came back within the run"),
        (
            "machine_slower_after_pct",
            "no step above the first one, or no reading of the machine on one side of it",
        ),
    ):
        if m.get(key) is None:
            outcome.not_measured[key] = why
    orders = result.get("orders") or {}
    m["orders"] = sum(orders.values())
    lost = [i for i in case.invariants if i.name in ("orders_match_venue", "fills_match_venue")]
    m["lost_orders"] = sum(0 if i.ok else 1 for i in lost)
    outcome.metrics.update(m)
    case.figures.update({k: v for k, v in m.items() if v is not None})
    if series:
        t0 = series[0][0]
        times = [r[0] - t0 for r in series]
        outcome.figures.append((
            "latency and throughput per second",
            "p99 of the age at decision (intended arrival to decision and orders) and bars "
            "decided, per wall-clock second",
            series_figure(times, {"p99 µs": [r[3] for r in series],
                                  "bars decided/s": [r[1] for r in series]}, "s"),
        ))  # fmt: skip
    if run.samples:
        times = [s.t for s in run.samples]
        outcome.figures.append((
            "the session's resources", f"sampled every {params.sample_s:g} s",
            series_figure(times, {
                "RSS MiB": [s.rss_mb for s in run.samples],
                "open fds": [s.fds for s in run.samples],
                "store MiB": [s.store_mb for s in run.samples]}, "s"),
        ))  # fmt: skip
        outcome.figures.append((
            "CPU per sample",
            f"% of one core over each {params.sample_s:g} s: the session and the load generator "
            "(on 2 cores, 200 % is the machine)",
            series_figure(times, {
                "session CPU %": [s.cpu_pct for s in run.samples],
                "generator CPU %": [s.generator_cpu_pct for s in run.samples],
                "session waiting for a CPU %": [s.runq_wait_pct for s in run.samples],
                "generator waiting for a CPU %": [
                    s.generator_runq_wait_pct for s in run.samples
                ],
                "store writer CPU %": [s.writer_cpu_pct for s in run.samples],
                "feed reader process CPU %": [s.feed_cpu_pct for s in run.samples]}, "s"),
        ))  # fmt: skip
        outcome.figures.append((
            "the machine per sample",
            "CPU µs of a fixed Python loop (perf.process.reference_cpu_us: higher is a slower "
            "machine for the same work) and the hypervisor's steal, % of all CPUs",
            series_figure(times, {
                "reference loop CPU µs": [s.reference_us for s in run.samples],
                "steal % of all CPUs": [s.steal_pct for s in run.samples]}, "s"),
        ))  # fmt: skip
    gc_series = (feed.get("gc") or {}).get("series") or []
    if gc_series:
        t0 = series[0][0] if series else gc_series[0][0]
        outcome.figures.append((
            "garbage collection per second", "the session's collections and pause time",
            series_figure([r[0] - t0 for r in gc_series], {
                "collections": [r[1] for r in gc_series],
                "pause ms": [r[2] / 1000 for r in gc_series]}, "s"),
        ))  # fmt: skip
    outcome.series["per_second"] = series[-3600:]
    if run.samples:
        outcome.series["samples"] = [s._asdict() for s in run.samples[-3600:]]


def _histogram(encoded: str | None) -> Any:
    if not encoded:
        return None
    from hdrh.histogram import HdrHistogram

    return HdrHistogram.decode(encoded)


def _recovery(
    series: Sequence[tuple[Any, ...]],
    phases: list[tuple[float, float]],
    factor: float,
    window: int,
) -> dict[str, float | None]:
    # steps only: baseline = the median per-second p99 of the first step; the recovery is
    # counted from the end of the last step above it, to the first second from which the
    # median p99 of every window of ``window`` seconds (and, stricter, every second) is back
    # under factor x the baseline
    out: dict[str, float | None] = {
        "recovery_s": None, "recovery_every_second_s": None, "baseline_slow_seconds": None
    }  # fmt: skip
    bounds = _spike_bounds(phases)
    if bounds is None or not series:
        return out
    first_end, high_end = bounds
    t0 = series[0][0]
    baseline = [r[3] for r in series if r[0] - t0 < first_end]
    if not baseline:
        return out
    limit = statistics.median(baseline) * factor
    out["baseline_slow_seconds"] = float(sum(1 for p99 in baseline if p99 > limit))
    after = [r for r in series if r[0] - t0 >= high_end]
    medians = [
        statistics.median(r[3] for r in after[i : i + window])
        for i in range(len(after) - window + 1)
    ]
    p99 = [r[3] for r in after]
    every = _ok_from(p99, limit)
    if every < len(after):
        out["recovery_every_second_s"] = float(after[every][0] - t0 - high_end)
    # from a fast second on, a majority of every window fast: at most window // 2 slow
    # seconds in any window, as the baseline has them
    first = _ok_from(medians, limit)
    while first < len(medians) and p99[first] > limit:
        first += 1
    if first < len(medians):
        out["recovery_s"] = float(after[first][0] - t0 - high_end)
    return out


def _spike_bounds(phases: list[tuple[float, float]]) -> tuple[float, float] | None:
    # (the end of the first step, the end of the last step above its rate), in seconds from
    # the start; None for a shape without such a step
    high = [i for i, (rate, _) in enumerate(phases) if rate > phases[0][0]] if phases else []
    if not high:
        return None
    return phases[0][1], sum(s for _, s in phases[: high[-1] + 1])


def _machine_slower_after(
    samples: Sequence[Sample], series: Sequence[tuple[Any, ...]], phases: list[tuple[float, float]]
) -> float | None:
    # the reference loop's median after the last step above the first one, against its
    # median during the first step, in %; None without such a step or readings on both sides
    bounds = _spike_bounds(phases)
    if bounds is None or not series:
        return None
    first_end, high_end = bounds
    t0 = series[0][0]
    before, after = [], []
    for sample in samples:
        if sample.unix_s is None or sample.reference_us is None:
            continue
        t = sample.unix_s - t0
        if 0 <= t < first_end:
            before.append(sample.reference_us)
        elif t >= high_end:
            after.append(sample.reference_us)
    if not before or not after:
        return None
    base = statistics.median(before)
    return round(100.0 * (statistics.median(after) - base) / base, 1) if base > 0 else None


def _achieved_rate(series: Sequence[tuple[Any, ...]]) -> float:
    # bars decided per second, from the per-second rows (second, bars, ...): over the time
    # from the first row's second to the last's. Those two seconds are partial (a 300-s
    # schedule that starts mid-second fills 301 rows), so the span is last - first, not
    # last - first + 1, which had put a session that kept up exactly at 300/301 of the rate
    if not series:
        return 0.0
    span = max(series[-1][0] - series[0][0], 1)
    return round(sum(r[1] for r in series) / span, 1)


def _ok_from(values: list[float], limit: float) -> int:
    # the first index from which every value is <= limit (len(values): none such)
    ok_from = len(values)
    while ok_from > 0 and values[ok_from - 1] <= limit:
        ok_from -= 1
    return ok_from


def _cpu_and_gc(samples: list[Sample], gc: dict[str, Any] | None) -> dict[str, float | None]:
    cpu = [s.cpu_pct for s in samples]
    gen = [s.generator_cpu_pct for s in samples]
    waits = [s.runq_wait_pct for s in samples if s.runq_wait_pct is not None]
    gen_waits = [
        s.generator_runq_wait_pct for s in samples if s.generator_runq_wait_pct is not None
    ]
    writer = [s.writer_cpu_pct for s in samples if s.writer_cpu_pct is not None]
    feed = [s.feed_cpu_pct for s in samples if s.feed_cpu_pct is not None]
    ref = [s.reference_us for s in samples if s.reference_us is not None]
    steal = [s.steal_pct for s in samples if s.steal_pct is not None]
    return {
        "mean_cpu_pct": round(statistics.fmean(cpu), 1) if cpu else None,
        "max_cpu_pct": max(cpu) if cpu else None,
        "generator_cpu_pct": round(statistics.fmean(gen), 1) if gen else None,
        "runq_wait_pct": round(statistics.fmean(waits), 2) if waits else None,
        "generator_runq_wait_pct": round(statistics.fmean(gen_waits), 2) if gen_waits else None,
        "writer_cpu_pct": round(statistics.fmean(writer), 1) if writer else None,
        "feed_cpu_pct": round(statistics.fmean(feed), 1) if feed else None,
        "reference_us": round(statistics.median(ref), 1) if ref else None,
        "reference_us_max": max(ref) if ref else None,
        "steal_pct": round(statistics.fmean(steal), 2) if steal else None,
        "gc_collections": gc["n_collections"] if gc else None,
        "gc_pause_max_ms": round(gc["pause"]["max_us"] / 1000, 3) if gc else None,
    }


def _endurance(
    samples: list[Sample],
    series: Sequence[tuple[Any, ...]],
    warmup_s: float,
    window_s: float,
) -> dict[str, float | None]:
    out: dict[str, float | None] = {
        "max_rss_mb": round(max(s.rss_mb for s in samples), 1) if samples else None,
        "max_fds": max(s.fds for s in samples) if samples else None,
        "store_mb": round(samples[-1].store_mb, 2) if samples else None,
        "rss_slope_mb_per_min": None,
        "p99_drift_pct": None,
    }
    steady = [(s.t, s.rss_mb) for s in samples if s.t >= warmup_s]
    if len(steady) >= 3:
        slope = statistics.linear_regression([t for t, _ in steady], [r for _, r in steady])
        out["rss_slope_mb_per_min"] = round(slope.slope * 60.0, 3)
    if series:
        t0 = series[0][0]
        minutes: dict[int, list[float]] = {}
        for row in series:
            if row[0] - t0 >= warmup_s:
                minutes.setdefault(int((row[0] - t0 - warmup_s) // window_s), []).append(row[3])
        # whole windows only: the run's last seconds make a window of a few rows, whose
        # median is one second's p99 (a 1-row tail window once read as a 39 % drift)
        full = [k for k, rows in minutes.items() if len(rows) >= window_s / 2]
        if len(full) >= 2:
            first, last = minutes[min(full)], minutes[max(full)]
            a, b = statistics.median(first), statistics.median(last)
            out["p99_drift_pct"] = round((b - a) / a * 100.0, 2) if a else None
    return out


SCENARIO = LoadScenario
