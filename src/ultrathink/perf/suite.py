"""Benchmark registry and runner: ``@benchmark`` definitions, warm-up, repeats, summaries.

A benchmark is a function decorated with :func:`benchmark` that takes ``quick`` (small
sizes for smoke runs) and returns what to time: either a callable (everything before the
``return`` is set-up and is not timed) or a :class:`Case`-like object whose ``setup()`` and
``teardown()`` run around each timed ``run()``. What the timed call returns sets the value
of one repeat, in the benchmark's unit:

* ``None`` -- the elapsed wall time (unit ``"s"``);
* a number ``n_ops`` -- ``n_ops / elapsed`` for unit ``"ops/s"`` (elapsed time for ``"s"``);
* a :class:`Measurement` -- an explicit value (e.g. the engine's own ``bars_per_s``, a peak
  RSS in MB) and optionally the per-event latencies in ns it recorded.

Each timed call runs after a full garbage collection and with the cyclic collector paused
(as ``timeit`` does, and as the engine's own loop does), so a collection triggered by one
repeat's garbage does not land in another.

Definitions live in the ``bench_*`` modules of this package; :func:`registry` imports them.
Heavy libraries are imported inside the benchmark functions, never at module level.
"""

from __future__ import annotations

import gc
import importlib
import pkgutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ultrathink.errors import ConfigError

#: unit -> True when a lower value is better
UNITS: dict[str, bool] = {"s": True, "ops/s": False, "us": True, "MB": True, "x": True}
QUICK_MAX_REPEATS = 3
QUICK_MAX_WARMUP = 1
_BENCH_PREFIX = "bench_"


class UnknownBenchmarkError(ConfigError):
    """A benchmark name (or ``--filter``) that matches nothing in the registry."""


@dataclass(frozen=True)
class Measurement:
    """What a timed call may return when the elapsed wall time is not the figure.

    Attributes
    ----------
    value : float or None
        The repeat's value in the benchmark's unit; None derives it from the elapsed time
        (and ``n_ops`` for ``ops/s``).
    n_ops : float or None
        Operations done by the call, for ``ops/s`` benchmarks without an explicit value.
    events_ns : sequence of int or None
        Per-event latencies in nanoseconds recorded by the call (latency benchmarks).
    """

    value: float | None = None
    n_ops: float | None = None
    events_ns: Sequence[int] | np.ndarray | None = None


class Case(Protocol):
    """A benchmark with per-repeat set-up: ``setup`` and ``teardown`` are not timed."""

    def setup(self) -> None: ...

    def run(self) -> object: ...

    def teardown(self) -> None: ...


@dataclass(frozen=True)
class Benchmark:
    """One registered benchmark (see :func:`benchmark`)."""

    name: str
    group: str
    unit: str
    factory: Callable[[bool], Any]
    description: str
    repeats: int
    warmup: int

    @property
    def lower_is_better(self) -> bool:
        """True for times, latencies and memory; False for throughput."""
        return UNITS[self.unit]


_REGISTRY: dict[str, Benchmark] = {}


def benchmark(
    name: str,
    group: str,
    unit: str = "s",
    *,
    repeats: int = 5,
    warmup: int = 1,
    description: str = "",
) -> Callable[[Callable[[bool], Any]], Callable[[bool], Any]]:
    """Register a benchmark factory under ``name``.

    Parameters
    ----------
    name : str
        Unique dotted name, e.g. ``"engine.backtest_sma_cross"``.
    group : str
        Pipeline stage (``data``, ``features``, ``models``, ``risk``, ...).
    unit : {"s", "ops/s", "us", "MB", "x"}
        Unit of one repeat's value; ``ops/s`` is higher-is-better, the others lower.
    repeats, warmup : int
        Default timed repeats and untimed warm-up runs (full mode).
    description : str
        One line saying what is measured; defaults to the factory's docstring.

    Returns
    -------
    callable
        A decorator returning the factory unchanged.
    """
    if unit not in UNITS:
        raise ValueError(f"benchmark {name!r}: unit must be one of {sorted(UNITS)}, was {unit!r}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"benchmark {name!r}: repeats >= 1 and warmup >= 0 required")

    def register(factory: Callable[[bool], Any]) -> Callable[[bool], Any]:
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"benchmark {name!r} is registered twice")
        lines = (factory.__doc__ or "").strip().splitlines()
        text = (description or (lines[0] if lines else "")).replace("``", "")
        _REGISTRY[name] = Benchmark(name, group, unit, factory, text, repeats, warmup)
        return factory

    return register


def registry() -> dict[str, Benchmark]:
    """Every registered benchmark by name, after importing this package's ``bench_*`` modules."""
    package = importlib.import_module(__package__ or "ultrathink.perf")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith(_BENCH_PREFIX):
            importlib.import_module(f"{package.__name__}.{info.name}")
    return dict(sorted(_REGISTRY.items()))


def select(substring: str | None = None) -> list[Benchmark]:
    """Benchmarks whose name contains ``substring`` (all when None).

    Raises
    ------
    UnknownBenchmarkError
        When nothing matches.
    """
    found = [b for name, b in registry().items() if substring is None or substring in name]
    if not found:
        names = ", ".join(registry())
        raise UnknownBenchmarkError(f"no benchmark matches {substring!r}; known: {names}")
    return found


def get(name: str) -> Benchmark:
    """The benchmark called exactly ``name``; raises :class:`UnknownBenchmarkError`."""
    found = registry().get(name)
    if found is None:
        import difflib

        close = difflib.get_close_matches(name, registry(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `ultrathink bench --list`"
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}{hint}")
    return found


@dataclass
class BenchResult:
    """Values of the timed repeats of one benchmark, plus pooled per-event latencies."""

    name: str
    group: str
    unit: str
    lower_is_better: bool
    values: list[float]
    n_warmup: int
    quick: bool
    events_ns: np.ndarray | None = field(default=None, repr=False)

    @property
    def median(self) -> float:
        """Median of the repeats."""
        return float(np.median(self.values))

    @property
    def p99(self) -> float:
        """99th percentile of the repeats (linear interpolation)."""
        return float(np.percentile(self.values, 99))

    def event_summary_us(self) -> dict[str, float] | None:
        """p50/p90/p99/p99.9/max/count of the per-event latencies in µs (HdrHistogram)."""
        if self.events_ns is None or self.events_ns.size == 0:
            return None
        from ultrathink.core.latency import percentiles_us

        return percentiles_us(self.events_ns.tolist())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the per-event samples are summarised, not listed)."""
        return {
            "name": self.name,
            "group": self.group,
            "unit": self.unit,
            "lower_is_better": self.lower_is_better,
            "mode": "quick" if self.quick else "full",
            "n_repeats": len(self.values),
            "n_warmup": self.n_warmup,
            "median": self.median,
            "p99": self.p99,
            "min": min(self.values),
            "max": max(self.values),
            "values": self.values,
            "events_us": self.event_summary_us(),
        }


class _CallableCase:
    # a plain callable: its factory already did the set-up
    def __init__(self, fn: Callable[[], object]) -> None:
        self.run = fn

    def setup(self) -> None:
        pass

    def teardown(self) -> None:
        pass


def _as_case(made: Any, name: str) -> Any:
    if all(callable(getattr(made, m, None)) for m in ("setup", "run", "teardown")):
        return made
    if callable(made):
        return _CallableCase(made)
    raise TypeError(f"benchmark {name!r} must return a callable or a setup/run/teardown object")


def _value(bench: Benchmark, out: object, elapsed_s: float) -> tuple[float, np.ndarray | None]:
    events = None
    if isinstance(out, Measurement):
        if out.events_ns is not None:
            events = np.asarray(out.events_ns, dtype=np.int64)
        if out.value is not None:
            return float(out.value), events
        out = out.n_ops
    if bench.unit == "ops/s":
        if not isinstance(out, int | float) or isinstance(out, bool):
            raise TypeError(f"ops/s benchmark {bench.name!r} must return its number of ops")
        return float(out) / elapsed_s, events
    return elapsed_s, events


def _measure_once(bench: Benchmark, case: Any) -> tuple[float, np.ndarray | None]:
    case.setup()
    # as timeit: the garbage of the set-up or the previous repeat is collected first, and
    # no cyclic collection lands in the timed call (the engine pauses it in its loop too)
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = case.run()
        elapsed_s = time.perf_counter() - t0
    finally:
        if was_enabled:
            gc.enable()
        case.teardown()
    return _value(bench, out, elapsed_s)


def repeat_counts(
    bench: Benchmark, *, quick: bool, repeats: int | None, warmup: int | None
) -> tuple[int, int]:
    """(repeats, warm-up runs): explicit values win, else the benchmark's (capped if quick)."""
    n_rep = bench.repeats if repeats is None else repeats
    n_warm = bench.warmup if warmup is None else warmup
    if quick:
        n_rep = min(n_rep, QUICK_MAX_REPEATS) if repeats is None else n_rep
        n_warm = min(n_warm, QUICK_MAX_WARMUP) if warmup is None else n_warm
    if n_rep < 1 or n_warm < 0:
        raise ConfigError(f"repeats must be >= 1 and warmup >= 0, were {n_rep} and {n_warm}")
    return n_rep, n_warm


def run_benchmark(
    bench: Benchmark, *, quick: bool = False, repeats: int | None = None, warmup: int | None = None
) -> BenchResult:
    """Set up ``bench``, run its warm-ups, then time its repeats.

    Parameters
    ----------
    bench : Benchmark
        The benchmark to run.
    quick : bool
        Small sizes (and at most 3 repeats, 1 warm-up unless given).
    repeats, warmup : int or None
        Override the benchmark's defaults.

    Returns
    -------
    BenchResult
        The repeats' values and the pooled per-event latencies of the timed repeats.
    """
    n_rep, n_warm = repeat_counts(bench, quick=quick, repeats=repeats, warmup=warmup)
    case = _as_case(bench.factory(quick), bench.name)
    values: list[float] = []
    events: list[np.ndarray] = []
    try:
        for i in range(n_warm + n_rep):
            value, ev = _measure_once(bench, case)
            if i >= n_warm:
                values.append(value)
                if ev is not None:
                    events.append(ev)
    finally:
        close = getattr(case, "close", None)
        if callable(close):
            close()
    pooled = np.concatenate(events) if events else None
    return BenchResult(
        bench.name, bench.group, bench.unit, bench.lower_is_better, values, n_warm, quick, pooled
    )
