"""``ultrathink bench``: run the benchmark suite, or compare the working tree against a ref.

Exit codes: 0 ok;
1 when a benchmark failed or ``--compare`` found a regression; 2 for bad input (unknown
benchmark or ref, invalid option) or when a side of a comparison could not be measured.
Heavy modules (the benchmarks' libraries, scipy, matplotlib, rich) load only when used.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ultrathink.cli._registry import CliContext, Command
from ultrathink.errors import ConfigError


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--quick", action="store_true", help="small sizes (whole suite < 60 s)")
    p.add_argument("--filter", metavar="SUBSTR", help="only benchmarks whose name contains it")
    p.add_argument("--repeats", type=int, help="timed repeats (default: per benchmark)")
    p.add_argument("--warmup", type=int, help="untimed warm-up runs (default: per benchmark)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plots", metavar="DIR", help="write latency histograms and a throughput PNG")
    p.add_argument("--results", metavar="PATH", help="JSONL file (default .bench/results.jsonl)")
    p.add_argument("--no-save", action="store_true", help="do not append to the results file")
    g = p.add_argument_group("regression detection")
    g.add_argument("--compare", metavar="REF", help="judge the working tree against git REF")
    g.add_argument("--rounds", type=int, default=5, help="interleaved processes per side (5)")
    g.add_argument("--alpha", type=float, default=0.01, help="significance level (0.01)")
    g.add_argument("--min-effect", type=float, default=0.05, help="smallest slowdown (0.05)")
    g.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")


def _check_args(args: argparse.Namespace) -> None:
    if args.repeats is not None and args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, was {args.repeats}")
    if args.warmup is not None and args.warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, was {args.warmup}")
    if args.rounds < 1:
        raise ConfigError(f"--rounds must be >= 1, was {args.rounds}")
    if not 0.0 < args.alpha < 0.5:
        raise ConfigError(f"--alpha must be in (0, 0.5), was {args.alpha}")
    if args.min_effect < 0.0:
        raise ConfigError(f"--min-effect must be >= 0 (0.05 = 5 %), was {args.min_effect}")


def cmd_bench(args: argparse.Namespace, context: CliContext) -> int:
    """Handler of ``ultrathink bench``."""
    from ultrathink.perf.suite import select

    _check_args(args)
    benches = select(args.filter)
    if args.list:
        _print_list(benches, as_json=args.json)
        return 0
    if args.compare:
        return _cmd_compare(args, [b.name for b in benches])
    return _cmd_run(args, benches)


def _cmd_run(args: argparse.Namespace, benches: Sequence[Any]) -> int:
    from ultrathink.perf.suite import run_benchmark

    results, failed = [], []
    for i, bench in enumerate(benches, 1):
        print(f"[{i}/{len(benches)}] {bench.name}", file=sys.stderr, flush=True)
        try:
            results.append(
                run_benchmark(bench, quick=args.quick, repeats=args.repeats, warmup=args.warmup)
            )
        except Exception as exc:  # one broken benchmark must not hide the others' results
            failed.append((bench.name, f"{type(exc).__name__}: {exc}"))
    _save_and_plot(args, results)
    if args.json:
        out = {"results": [r.to_dict() for r in results], "failed": dict(failed)}
        print(json.dumps(out, indent=1))
    else:
        _print_results(results, failed)
    return 1 if failed else 0


def _save_and_plot(args: argparse.Namespace, results: Sequence[Any]) -> None:
    from ultrathink.perf.results import append_results, default_results_path

    if results and not args.no_save:
        path = append_results(
            results, Path(args.results) if args.results else default_results_path()
        )
        print(f"results appended to {path}", file=sys.stderr)
    if args.plots and results:
        from ultrathink.perf.plots import write_plots

        files = write_plots(results, args.plots)
        print(f"{len(files)} plot(s) written to {args.plots}", file=sys.stderr)


def _cmd_compare(args: argparse.Namespace, names: list[str]) -> int:
    from ultrathink.perf.compare import CompareOptions, compare_ref

    opts = CompareOptions(
        quick=args.quick, rounds=args.rounds, repeats=args.repeats, warmup=args.warmup,
        alpha=args.alpha, min_effect=args.min_effect, seed=args.seed,
    )  # fmt: skip

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    commit, comparisons = compare_ref(args.compare, names, opts, progress)
    if args.json:
        out = {"base": args.compare, "base_commit": commit,
               "comparisons": [c.to_dict() for c in comparisons]}  # fmt: skip
        print(json.dumps(out, indent=1))
    else:
        _print_comparisons(args.compare, commit, comparisons)
    if any(c.verdict is not None and c.verdict.is_regression for c in comparisons):
        return 1
    return 2 if any(c.error for c in comparisons) else 0


def fmt_value(value: float, unit: str) -> str:
    """``value`` in ``unit`` for a table: ops/s with separators, seconds as ms below 1 s."""
    if unit == "ops/s":
        return f"{value:,.0f}"
    if unit == "s":
        return f"{value * 1e3:,.2f} ms" if value < 1.0 else f"{value:,.3f} s"
    if unit == "us":
        return f"{value:,.2f} µs"
    if unit == "x":
        return f"{value:,.3f}x"
    return f"{value:,.1f} {unit}"


def _table(title: str, columns: Sequence[str], *, n_text: int = 1) -> Any:
    # the first ``n_text`` columns are text (left), the rest figures (right)
    from rich.table import Table

    table = Table(title=title)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i < n_text else "right", no_wrap=i == 0)
    return table


def _console() -> Any:
    from rich.console import Console

    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def _print_list(benches: Sequence[Any], *, as_json: bool) -> None:
    if as_json:
        rows = [{"name": b.name, "group": b.group, "unit": b.unit, "repeats": b.repeats,
                 "warmup": b.warmup, "description": b.description} for b in benches]  # fmt: skip
        print(json.dumps(rows, indent=1))
        return
    table = _table(f"{len(benches)} benchmarks", ["name", "group", "unit", "description"], n_text=4)
    for b in benches:
        table.add_row(b.name, b.group, b.unit, b.description)
    _console().print(table)


def _print_results(results: Sequence[Any], failed: Sequence[tuple[str, str]]) -> None:
    columns = ["benchmark", "median", "p99", "min – max", "n", "events p50", "events p99"]
    table = _table("ultrathink bench", columns)
    for r in results:
        ev = r.event_summary_us()
        lo, hi = fmt_value(min(r.values), r.unit), fmt_value(max(r.values), r.unit)
        table.add_row(
            r.name, fmt_value(r.median, r.unit), fmt_value(r.p99, r.unit), f"{lo} – {hi}",
            str(len(r.values)), f"{ev['p50']:,.2f} µs" if ev else "",
            f"{ev['p99']:,.2f} µs" if ev else "",
        )  # fmt: skip
    for name, error in failed:
        table.add_row(name, "[red]failed[/red]", error[:60], "", "", "", "")
    _console().print(table)


def _print_comparisons(ref: str, commit: str, comparisons: Sequence[Any]) -> None:
    columns = ["benchmark", "base median", "head median", "ratio", "p-value", "CI", "verdict"]
    table = _table(f"head (working tree) vs {ref} ({commit[:10]})", columns)
    styles = {"regression": "bold red", "improvement": "green", "no change": ""}
    for c in comparisons:
        v = c.verdict
        if v is None:
            table.add_row(c.name, "", "", "", "", "", f"[red]error[/red] {c.error}")
            continue
        style = styles[v.status]
        verdict = f"[{style}]{v.status}[/{style}]" if style else v.status
        table.add_row(
            c.name, fmt_value(v.base_median, c.unit), fmt_value(v.head_median, c.unit),
            f"{v.ratio:.3f}", f"{v.p_value:.2g}", f"{v.ci_low:.3f}–{v.ci_high:.3f}",
            f"{verdict} ({v.reason})",
        )  # fmt: skip
    _console().print(table)


COMMAND = Command(
    name="bench",
    order=90,
    help="run the benchmark suite, or detect regressions against a git ref",
    description="Benchmark every pipeline stage (medians, p99, ratios against a reference "
    "measured in the same run); --compare REF judges the working tree against REF with "
    "interleaved runs (exit 1 on a regression).",
    examples=(
        "ultrathink bench --quick",
        "ultrathink bench --filter engine. --repeats 5",
        "ultrathink bench --compare HEAD~1 --filter risk.check",
        "ultrathink bench --list",
    ),
    configure=_configure,
    handler=cmd_bench,
)
