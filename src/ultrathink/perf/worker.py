"""One benchmark in a fresh process: ``python -m ultrathink.perf.worker --bench NAME --out F``.

``ultrathink bench --compare`` starts this module with ``PYTHONPATH`` set to one side's
``src`` directory, so the benchmark runs against that side's code. The result (the repeat
values, the unit and the file ``ultrathink`` was imported from) is written as JSON to
``--out``; stdout stays free for whatever the benchmarked code prints. Exit code 2 for an
unknown benchmark, 1 when the benchmark raises.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import ultrathink
from ultrathink.perf.suite import UnknownBenchmarkError, get, run_benchmark


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ultrathink.perf.worker")
    p.add_argument("--bench", required=True, help="exact benchmark name")
    p.add_argument("--out", required=True, help="JSON result file to write")
    p.add_argument("--quick", action="store_true", help="small sizes")
    p.add_argument("--repeats", type=int, help="timed repeats (default: the benchmark's)")
    p.add_argument("--warmup", type=int, help="untimed warm-up runs (default: the benchmark's)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one benchmark and write its result; return the process exit code."""
    args = _parser().parse_args(argv)
    try:
        bench = get(args.bench)
    except UnknownBenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = run_benchmark(bench, quick=args.quick, repeats=args.repeats, warmup=args.warmup)
    payload = {**result.to_dict(), "ultrathink_file": str(Path(ultrathink.__file__).resolve())}
    Path(args.out).write_text(json.dumps(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
