"""Shared by every benchmark: one place that records a result with its provenance."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / ".bench" / "results.jsonl"

Recorder = Callable[[str, dict[str, Any]], None]


def _commit() -> str:
    # read, not run, git: the HEAD commit if the checkout has one
    try:
        head = (ROOT / ".git" / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            return (ROOT / ".git" / head[5:]).read_text().strip()[:10]
        return head[:10]
    except OSError:
        return "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def record_result(name: str, payload: dict[str, Any]) -> None:
    """Append one result to ``.bench/results.jsonl`` with commit, machine and load; print it."""
    row = {
        "name": name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpu, {_cpu_model()}",
        "python": platform.python_version(),
        "load_avg_1m": os.getloadavg()[0],
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
