"""Run scenarios: resolve each one, run its kind, judge its thresholds, keep its files.

``run_scenarios`` runs one scenario (``ultrathink stress run``) or the suite (``suite``: the
shipped scenarios with ``in_suite = true``) and returns one ``ScenarioReport`` per scenario;
``report.py`` writes them. A scenario's stores, journals and child-process output stay in
``<report dir>/work/<scenario>/`` (replaced at its next run) for inspection.

Thresholds: each scenario's own, then those of ``--thresholds FILE.toml`` — a table of
scenario names, each an array of thresholds::

    crash = ["max_halt_lag_bars <= 0"]            # replaces the default on that metric
    broker = ["p99_decision_us < 500"]            # or adds one

An override replaces every default threshold on the same metric and adds the others.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ultrathink.config_files import read_toml
from ultrathink.config_messages import plain
from ultrathink.errors import ConfigError
from ultrathink.stress.base import RunContext
from ultrathink.stress.child import release_mounts
from ultrathink.stress.outcome import Outcome
from ultrathink.stress.scenario import ScenarioConfig, load_scenario, shipped_scenarios
from ultrathink.stress.thresholds import Threshold, Verdict, evaluate, merge, parse_thresholds

__all__ = [
    "RunOptions",
    "ScenarioReport",
    "load_overrides",
    "machine",
    "resolve",
    "run_scenarios",
]


@dataclass(frozen=True)
class RunOptions:
    """How ``ultrathink stress run`` / ``suite`` was asked to run."""

    quick: bool = False
    seed: int | None = None
    duration_s: float | None = None
    thresholds_file: Path | None = None


@dataclass
class ScenarioReport:
    """One scenario's run: its config, what it measured, the verdicts, when and how long."""

    config: ScenarioConfig
    outcome: Outcome
    verdicts: list[Verdict]
    started_utc: str
    elapsed_s: float
    work_dir: Path
    metrics: dict[str, float | None] = field(default_factory=dict)
    #: ``machine()`` when the scenario started (its code is the code that ran), and the
    #: 1-minute load average when it ended
    machine: dict[str, Any] = field(default_factory=dict)
    load_avg_1m_end: float | None = None

    @property
    def ok(self) -> bool:
        """True when no threshold was breached."""
        return all(v.ok for v in self.verdicts)

    @property
    def breached(self) -> list[Verdict]:
        """The thresholds that were breached."""
        return [v for v in self.verdicts if not v.ok]


def resolve(names: Iterable[str], options: RunOptions) -> list[ScenarioConfig]:
    """Load each scenario with the options applied (``ConfigError`` on the first bad one)."""
    return [
        load_scenario(name, quick=options.quick, seed=options.seed, duration_s=options.duration_s)
        for name in names
    ]


def suite_names() -> list[str]:
    """The shipped scenarios the suite runs (``in_suite = true``), in name order."""
    return [n for n in shipped_scenarios() if load_scenario(n).in_suite]


def load_overrides(
    path: Path | None, configs: Iterable[ScenarioConfig]
) -> dict[str, list[Threshold]]:
    """The ``--thresholds`` file's thresholds per scenario, checked against each scenario's
    metrics; scenarios of the file that are not run here must still exist."""
    if path is None:
        return {}
    if not path.is_file():
        raise ConfigError(f"--thresholds file {plain(path)} not found")
    try:
        values = read_toml(path)
    except ConfigError as exc:  # its messages say "config file": this one is not
        raise ConfigError(str(exc).replace("config file", "--thresholds file", 1)) from None
    by_name = {c.name: c for c in configs}
    known = set(shipped_scenarios()) | set(by_name)
    out: dict[str, list[Threshold]] = {}
    for name, texts in values.items():
        where = f"--thresholds file {plain(path)}, scenario {name}"
        if name not in known:
            raise ConfigError(
                f"--thresholds file {plain(path)}: unknown scenario {name!r}; known: "
                f"{', '.join(sorted(known))}"
            )
        if not isinstance(texts, list):
            raise ConfigError(
                f'{where}: must be an array of thresholds, e.g. {name} = ["lost_orders == 0"]'
            )
        config = by_name.get(name) or load_scenario(name)
        out[name] = parse_thresholds(texts, config.metrics, where)
    return out


def run_scenarios(
    configs: list[ScenarioConfig],
    report_dir: Path,
    overrides: dict[str, list[Threshold]],
    log: Callable[[str], None],
) -> list[ScenarioReport]:
    """Run ``configs`` one after the other; their work files go under ``report_dir``."""
    reports = []
    shared = report_dir / "work" / ".shared"  # built once per invocation (a trained model)
    _fresh(shared)
    for config in configs:
        work = report_dir / "work" / config.name
        _fresh(work)
        log(f"{config.name}: {config.description}" + (" (quick)" if config.quick else ""))
        started = datetime.now(UTC).isoformat(timespec="seconds")
        at_start = machine()
        t0 = time.perf_counter()
        outcome = config.implementation().run(RunContext(config, work, log, shared))
        elapsed = time.perf_counter() - t0
        metrics = {
            **outcome.metrics,
            "invariant_failures": float(outcome.invariant_failures),
            "cases_run": float(sum(not c.skipped for c in outcome.cases)),
        }
        thresholds = merge(config.thresholds, overrides.get(config.name, []))
        verdicts = evaluate(thresholds, metrics, outcome.not_measured)
        reports.append(
            ScenarioReport(
                config, outcome, verdicts, started, elapsed, work, metrics,
                machine=at_start, load_avg_1m_end=load_avg_1m(),
            )
        )  # fmt: skip
        log(f"{config.name}: done in {elapsed:.1f} s")
    return reports


def load_avg_1m() -> float:
    """The machine's 1-minute load average now (0.0 where the OS has none)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return round(load[0], 2)


def machine() -> dict[str, Any]:
    """Where the figures were measured: cores, load, Python, platform, code version."""
    from ultrathink.engine.runner import code_version

    return {
        "cpus": os.cpu_count(),
        "load_avg_1m": load_avg_1m(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "code": code_version(),
        "user": "root" if hasattr(os, "geteuid") and os.geteuid() == 0 else "non-root",
    }


def _fresh(work: Path) -> None:
    # the previous run's files of this scenario go; nothing else in the report dir is touched
    try:
        if work.exists():
            release_mounts(work)  # a tmpfs or bind mount a killed run left behind
            shutil.rmtree(work)
        work.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot prepare the work directory {plain(work)}: {exc.strerror}; pass a writable "
            "--report DIR"
        ) from None
