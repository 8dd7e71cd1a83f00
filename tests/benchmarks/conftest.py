"""Shared by every benchmark: one place that records a result with its provenance."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ultrathink.perf.results import environment

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / ".bench" / "results.jsonl"

Recorder = Callable[[str, dict[str, Any]], None]


def record_result(name: str, payload: dict[str, Any]) -> None:
    """Append one result to ``.bench/results.jsonl`` with commit, machine and load; print it."""
    env = environment(ROOT)  # the same provenance as `ultrathink bench` records
    machine = env["machine"]
    row = {
        "name": name,
        "time": env["date_utc"],
        "commit": env["commit"][:10],
        "machine": f"{machine['arch']}, {machine['n_cores']} cpu, {machine['cpu_model']}",
        "python": env["python"],
        "load_avg_1m": env["load_avg_1m"],
        **payload,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=1))


@pytest.fixture
def record() -> Recorder:
    """The benchmark result recorder (see ``record_result``)."""
    return record_result


@pytest.fixture(scope="session")
def ml_bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The default ensemble trained on synthetic minute bars, once for every ML benchmark."""
    from ultrathink import services

    registry = tmp_path_factory.mktemp("models")
    data = services.load("synthetic:n_bars=20000,seed=1,freq=1min")
    result, _ = services.train_model(data, {}, registry)
    return services.load_model_bundle(registry, result.version)
