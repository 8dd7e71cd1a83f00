"""Run a sweep: plan its points, run them in batches on a backend, stream results to the store.

Backends are existing engines, no home-made scheduler:

- ``local`` (default): ``concurrent.futures.ProcessPoolExecutor`` on this machine. Workers
  are forked after the datasets are loaded, so they share them copy-on-write; each worker
  dies with the driver (``PR_SET_PDEATHSIG``), so a ``kill -9`` of the driver leaves no
  orphans.
- ``ray``: a Ray cluster (``--ray ADDRESS``, ``auto`` for the one ``ray start`` left on this
  machine, or ``local`` to start one in-process). Each dataset's columns are put into Ray's
  object store once; tasks receive the reference and read the arrays zero-copy. A task is a
  batch of points, retried by Ray when its worker dies (``max_retries``); the driver collects
  batches with ``ray.wait`` as they finish.

Every point runs exactly what ``ultrathink backtest`` runs (``services.make_strategy``,
``services.slice_data``, ``services.run_strategy`` with the backtest's configuration), so its
metrics are bit-identical to a standalone backtest with the same parameters and window,
whatever the backend or the number of workers.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ultrathink.errors import ConfigError, UltrathinkError
from ultrathink.sweep.spec import (
    DEFAULT_MAX_POINTS,
    Point,
    SweepSpec,
    Window,
    config_hash,
    grid_points,
    parse_where,
    parse_windows,
    point_id,
)
from ultrathink.sweep.store import SweepStore

#: aim for batches of about this many seconds of work on the local pool (a forked worker's
#: round trip is well under a millisecond)
TARGET_BATCH_S = 0.5
#: and on Ray, whose per-task round trip is larger: the batch is sized so that it stays
#: under 5 % of the work (measured in tests/benchmarks/test_bench_sweep_ray.py, see
#: docs/scale-out.md)
RAY_TARGET_BATCH_S = 1.0


@dataclass
class Plan:
    spec: SweepSpec
    config: Any
    datasets: dict[str, Any]  # data spec -> MarketData
    points: list[Point]


@dataclass
class Outcome:
    sweep_id: int
    n_points: int
    ran: int
    skipped: int
    failed: int
    elapsed_s: float
    backend: str
    status: str
    points_per_s: float
    best: list[dict[str, Any]] = field(default_factory=list)


def plan(spec: SweepSpec, max_points: int = DEFAULT_MAX_POINTS) -> Plan:
    """Check ``spec`` and enumerate its points (a clear error for anything wrong)."""
    from ultrathink import services
    from ultrathink.decision.loader import resolve_strategy

    cls = resolve_strategy(spec.strategy)
    fields = cls.Params.model_fields
    unknown = sorted(set(spec.grid) - set(fields)) + sorted(set(spec.fixed) - set(fields))
    if unknown:
        raise ConfigError(
            f"strategy {cls.name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"its parameters: {', '.join(fields) or 'none'}"
        )
    if max_points < 1:
        raise ConfigError(f"--max-points must be at least 1, was {max_points}")
    where = parse_where(spec.where, list(spec.grid))
    params = grid_points(
        spec.grid, where, random=spec.random, seed=spec.seed, max_points=max_points
    )
    config = services.engine_config(
        realistic=False, config_path=spec.config_path, overrides=spec.overrides
    )
    chash = config_hash(config)
    datasets: dict[str, Any] = {}
    points: list[Point] = []
    for name in spec.data:
        data = services.load(name)
        datasets[name] = data
        first, last = (_day(data.start_ns), _day(data.end_ns))
        windows = parse_windows(spec.windows, first, last)
        dhash = data.sha256()
        for window in windows:
            for p in params:
                pid = point_id(spec.strategy, {**spec.fixed, **p}, dhash, window, chash)
                points.append(Point(pid, name, window, p))
    if len(points) > max_points:
        raise ConfigError(
            f"the sweep has {len(points):,} points, more than --max-points {max_points:,}; "
            "narrow the grid, the data or the windows, or raise --max-points"
        )
    return Plan(spec, config, datasets, points)


def _day(ns: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).date().isoformat()


# --- one point, anywhere ----------------------------------------------------------------------
def run_point(
    strategy: str, fixed: dict[str, str], params: dict[str, Any], data: Any, window: Window,
    config: Any, db_path: str | None,
) -> dict[str, Any]:  # fmt: skip
    """Run one point as ``ultrathink backtest`` would; a failure is returned, not raised."""
    from ultrathink import services

    t0 = time.perf_counter()
    try:
        strat = services.make_strategy(strategy, {**fixed, **params})
        sliced = services.slice_data(data, window.start, window.end)
        result = services.run_strategy(
            strat, sliced, config, db_path=None if db_path is None else Path(db_path)
        )
    except (UltrathinkError, ValueError) as exc:
        return {"metrics": None, "error": _one_line(exc), "run_id": None,
                "elapsed_s": time.perf_counter() - t0}  # fmt: skip
    return {"metrics": result.metrics.to_dict(), "error": None, "run_id": result.run_id,
            "elapsed_s": time.perf_counter() - t0}  # fmt: skip


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500]


@dataclass(frozen=True)
class Batch:
    """What a worker gets: the sweep's constants and a list of points (by enumeration seq)."""

    strategy: str
    fixed: dict[str, str]
    config: Any
    db_path: str | None
    points: list[tuple[int, Point]]


def run_batch(batch: Batch, datasets: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for seq, p in batch.points:
        r = run_point(batch.strategy, batch.fixed, p.params, datasets[p.data], p.window,
                      batch.config, batch.db_path)  # fmt: skip
        out.append({"point_id": p.point_id, "seq": seq, "data": p.data,
                    "window": p.window.label, "params": p.params, **r})  # fmt: skip
    return out


# --- local process pool -----------------------------------------------------------------------
_WORKER_DATA: dict[str, Any] = {}


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):  # Linux only; elsewhere the pool's own shutdown
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle


def _local_batch(batch: Batch) -> list[dict[str, Any]]:
    return run_batch(batch, _WORKER_DATA)


def _local(plan_: Plan, batches: list[Batch], workers: int) -> Iterator[list[dict[str, Any]]]:
    import multiprocessing

    _WORKER_DATA.clear()
    _WORKER_DATA.update(plan_.datasets)  # inherited by the forked workers, never pickled
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("fork"),
        initializer=_die_with_parent,
    )  # fmt: skip
    pending: set[Future[list[dict[str, Any]]]] = set()
    queue = list(reversed(batches))
    try:
        while queue or pending:
            while queue and len(pending) < workers * 2:  # bounded: results stream back
                pending.add(pool.submit(_local_batch, queue.pop()))
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


# --- Ray --------------------------------------------------------------------------------------
def _columns(data: Any) -> dict[str, Any]:
    return {"ts_ns": data.ts_ns, "symbol_idx": data.symbol_idx, "symbols": data.symbols,
            "open": data.open, "high": data.high, "low": data.low, "close": data.close,
            "volume": data.volume, "name": data.name}  # fmt: skip


def _ray_batch(batch: Batch, *columns: dict[str, Any]) -> list[dict[str, Any]]:
    # Ray resolves each top-level ObjectRef argument: the numpy columns are zero-copy,
    # read-only views of the object store
    from ultrathink.data.frame import MarketData

    specs = batch_specs(batch)
    return run_batch(batch, {s: MarketData(**c) for s, c in zip(specs, columns, strict=True)})


def batch_specs(batch: Batch) -> list[str]:
    seen: dict[str, None] = {}
    for _, p in batch.points:
        seen.setdefault(p.data)
    return list(seen)


def ray_init(address: str, workers: int | None) -> Any:
    """Connect to (or, for ``local``, start) a Ray cluster; a clear error when unreachable."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--ray needs Ray: pip install 'ultrathink[ray]' (or pip install ray)"
        ) from None
    if address not in ("local", "auto"):
        _probe(address)  # ray.init retries an unreachable address for many minutes
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    kwargs: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False,
                              "configure_logging": True}  # fmt: skip
    try:
        if address == "local":
            ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address!r}: {_one_line(exc)}"
        ) from None
    return ray


def _probe(address: str, timeout_s: float = 5.0) -> None:
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--ray {address!r}: expected auto, local or HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} (start one with "
            "`ray start --head`, or use --ray local)"
        ) from None


def _ray(ray: Any, plan_: Plan, batches: list[Batch]) -> Iterator[list[dict[str, Any]]]:
    # the driver shuts Ray down (``execute``), however the sweep ends
    refs = {name: ray.put(_columns(data)) for name, data in plan_.datasets.items()}
    remote = ray.remote(num_cpus=1, max_retries=5, retry_exceptions=False)(_ray_batch)
    pending = [remote.remote(b, *(refs[s] for s in batch_specs(b))) for b in batches]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            yield ray.get(ref)


# --- the driver -------------------------------------------------------------------------------
def batches_of(plan_: Plan, todo: list[tuple[int, Point]], workers: int, db_path: str | None,
               per_point_s: float, target_s: float = TARGET_BATCH_S) -> list[Batch]:  # fmt: skip
    """Batches of about ``target_s`` of work, and at least 4 per worker when there are
    enough points (so a slow batch does not leave the other workers idle at the end)."""
    by_time = max(1, int(target_s / max(per_point_s, 1e-6)))
    by_spread = max(1, math.ceil(len(todo) / (workers * 4)))
    size = min(by_time, by_spread)
    s = plan_.spec
    return [
        Batch(s.strategy, s.fixed, plan_.config, db_path, todo[i : i + size])
        for i in range(0, len(todo), size)
    ]


def execute(
    plan_: Plan,
    store: SweepStore,
    *,
    sweep_id: int | None,
    workers: int,
    ray_address: str | None = None,
    keep_runs: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> Outcome:
    """Run the points of ``plan_`` not yet in sweep ``sweep_id`` (a new sweep when None)."""
    backend = f"ray:{ray_address}" if ray_address else f"local:{workers}"
    ray = ray_init(ray_address, workers) if ray_address else None  # fails before anything runs
    if sweep_id is None:
        sweep_id = store.create(plan_.spec, len(plan_.points), backend)
    done_ids = store.done_ids(sweep_id)
    todo = [(i, p) for i, p in enumerate(plan_.points) if p.point_id not in done_ids]
    skipped = len(plan_.points) - len(todo)
    db_path = str(store.path) if keep_runs else None
    t0 = time.perf_counter()
    ran = failed = 0
    status = "interrupted"
    if on_progress:
        on_progress(skipped, len(plan_.points))
    try:
        if todo:
            # one point in the driver sizes the batches (and fails fast on a broken setup)
            seq, first = todo[0]
            head = run_batch(Batch(plan_.spec.strategy, plan_.spec.fixed, plan_.config,
                                   db_path, [(seq, first)]), plan_.datasets)  # fmt: skip
            store.add(sweep_id, head)
            ran += 1
            failed += head[0]["error"] is not None
            if on_progress:
                on_progress(skipped + ran, len(plan_.points))
            # on Ray the cluster's CPUs set the spread of the batches, not this machine's
            spread = int(ray.cluster_resources().get("CPU", workers)) if ray else workers
            target = RAY_TARGET_BATCH_S if ray else TARGET_BATCH_S
            batches = batches_of(plan_, todo[1:], max(1, spread), db_path, head[0]["elapsed_s"],
                                 target)  # fmt: skip
            stream = _ray(ray, plan_, batches) if ray else _local(plan_, batches, workers)
            for results in stream:
                store.add(sweep_id, results)
                ran += len(results)
                failed += sum(r["error"] is not None for r in results)
                if on_progress:
                    on_progress(skipped + ran, len(plan_.points))
        status = "done"
    except KeyboardInterrupt:
        raise
    except BaseException:
        status = "failed"
        raise
    finally:
        if ray is not None:
            ray.shutdown()
        elapsed = time.perf_counter() - t0
        store.finish(sweep_id, status, backend, elapsed)
    return Outcome(sweep_id, len(plan_.points), ran, skipped, failed, elapsed, backend, status,
                   ran / elapsed if elapsed > 0 else 0.0)  # fmt: skip
