"""A command that runs out of memory outside a strategy says so in one line, no traceback."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

EXE = str(Path(sys.executable).with_name("ultrathink"))


def _limit_address_space() -> None:
    limit = 700 * 1024 * 1024  # enough to start and import, far too little for the data
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_out_of_memory_is_one_error_line_and_exit_2() -> None:
    done = subprocess.run(
        [EXE, "data", "inspect", "synthetic:n_bars=50000000,seed=1"],
        capture_output=True, text=True, timeout=300, preexec_fn=_limit_address_space,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: out of memory"), lines
