"""``ultrathink profile [--out DIR] [--sample-every N] [--no-calls] -- COMMAND ...``.

Runs any ``ultrathink`` command in this process with every engine run it makes profiled
(:class:`ultrathink.perf.profiler.ProfileSession`: per-stage timing of 1 bar in N, process and
GC readings) and, unless ``--no-calls``, under pyinstrument's sampling call profiler (1 ms).
Writes ``profile.json``, ``metrics.prom`` (Prometheus text), ``calls.txt`` and ``calls.html``
to DIR (default ``.ultrathink/profile``) and prints the bottleneck table and the paths to
stderr (stdout stays the command's). Exit code: the command's; 2 for bad usage.

pyinstrument's hook runs on every Python call and return, so the stage times of a run with
the call profile on read high; ``--no-calls`` gives the undisturbed figures. The profiler
reaches the command's runs through ``CliContext.profiler`` (their ``RunSpec.profiler``).
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

DEFAULT_OUT = Path(".ultrathink") / "profile"
_EXAMPLE = "ultrathink profile -- backtest --data synthetic:n_bars=200000 --no-store"
_MAX_TABLES = 3


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", help=f"output directory (default {DEFAULT_OUT})")
    p.add_argument(
        "--sample-every",
        type=int,
        metavar="N",
        help="time 1 bar in N stage by stage, a power of two (default: the run's "
        "profile_sample_every, else 4096)",
    )
    p.add_argument(
        "--no-calls",
        action="store_true",
        help="no pyinstrument call profile (its hook slows every Python call)",
    )
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")


def _command(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        raise ConfigError(f"profile needs the command to run after `--`, e.g. `{_EXAMPLE}`")
    if args[0] == "profile":
        raise ConfigError("profile cannot run `profile`: give the command to profile after `--`")
    return args


def cmd_profile(args: argparse.Namespace, context: CliContext) -> int:
    """Handler of ``ultrathink profile``."""
    from ultrathink.perf.profiler import ProfileSession, check_sample_every

    command = _command(args.argv)
    if args.sample_every is not None:
        check_sample_every(args.sample_every)
    calls = None
    if not args.no_calls:
        from pyinstrument import Profiler as CallProfiler

        calls = CallProfiler(interval=0.001)
    with ProfileSession(args.sample_every) as session:
        if calls is not None:
            calls.start()
        try:
            code = _run(command, CliContext(profiler=session.profiler_for))
        finally:
            if calls is not None:
                calls.stop()
    out = Path(args.out) if args.out else DEFAULT_OUT
    paths = write_profile(out, session, calls)
    _print_report(session.to_json(), paths, calls_on=calls is not None)
    return code


def _run(command: list[str], context: CliContext) -> int:
    # the command in this process, as `ultrathink COMMAND` would run it, its runs profiled
    from ultrathink.cli import main

    try:
        return main(command, context)
    except SystemExit as exc:  # argparse: --help and usage errors of the command
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1


def write_profile(out: Path, session: Any, calls: Any) -> list[Path]:
    """Write the session's JSON and Prometheus text, and the call profile; return the paths."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the directory: {exc}") from None
    files = {
        "profile.json": json.dumps(session.to_json(), indent=1) + "\n",
        "metrics.prom": session.to_prometheus().decode(),
    }
    if calls is not None:
        files["calls.txt"] = calls.output_text(unicode=True, color=False)
        files["calls.html"] = calls.output_html()
    paths = []
    for name, text in files.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def _print_report(profile: dict[str, Any], paths: list[Path], *, calls_on: bool) -> None:
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)
    runs = profile["runs"]
    if not runs:
        console.print("profile: the command made no engine run (call profile only)")
    for run in runs[:_MAX_TABLES]:
        console.print(_bottleneck_table(run))
        console.print(_run_line(run))
    if len(runs) > _MAX_TABLES:
        console.print(f"... {len(runs) - _MAX_TABLES} more run(s) in profile.json")
    gc = profile["gc"]
    proc = profile["process"]
    console.print(
        f"command: {proc.get('wall_s', 0):.2f} s wall, "
        f"{proc.get('cpu_user_s', 0) + proc.get('cpu_system_s', 0):.2f} s CPU, "
        f"peak RSS {proc.get('rss_peak_mb', 0):,.0f} MB, {gc['n_collections']} GC "
        f"collection(s), {gc['pause']['total_s'] * 1e3:.1f} ms paused"
    )
    if calls_on:
        console.print("(call profile on: its hook inflates stage times; --no-calls for clean ones)")
    for path in paths:
        console.print(f"wrote {path}")


def _bottleneck_table(run: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"run {run['label']} ({run['strategy']}): {run['n_sampled_bars']:,} of "
        f"{run['n_bars']:,} bars timed (1 in {run['sample_every']})"
    )
    for i, column in enumerate(
        ("stage", "share", "est. time", "p50", "p90", "p99", "p99.9", "max", "n")
    ):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)
    summaries = {**run["stages"], "persistence_queue": run["calls"]["persistence_queue"]}
    for row in run["bottleneck"]:
        s = summaries[row["stage"]]
        if not s["count"]:  # e.g. no model, no order on a timed bar
            continue
        per = " /call" if row["stage"] == "persistence_queue" else ""
        table.add_row(
            row["stage"], f"{row['share']:.1%}", f"{row['estimated_s'] * 1e3:,.1f} ms",
            *(f"{s[k]:,.2f} µs" for k in ("p50_us", "p90_us", "p99_us", "p99.9_us", "max_us")),
            f"{s['count']:,.0f}{per}",
        )  # fmt: skip
    if not run["bottleneck"]:
        table.add_row("(no bar sampled: fewer bars than 1 in N)", *[""] * 8)
    return table


def _run_line(run: dict[str, Any]) -> str:
    t, gc, proc, bar = run["throughput"], run["gc"], run["process"], run["bar"]
    wait = run["calls"]["pacing_wait"]
    paced = f"; paced: {wait['total_s']:.2f} s waiting (not in the shares)" if wait["count"] else ""
    return (
        f"  {t['bars']:,.0f} bars ({t['bars_per_s']:,.0f}/s), {t['orders']:,.0f} orders, "
        f"{t['fills']:,.0f} fills in {t['wall_s']:.2f} s; timed bar p50 {bar['p50_us']:.2f} µs; "
        f"CPU {proc.get('cpu_pct_of_wall', 0):.0f} %, RSS {proc.get('rss_mb', 0):,.0f} MB "
        f"(peak {proc.get('rss_peak_mb', 0):,.0f}); GC in the loop: {gc['n_collections']} "
        f"collection(s) (collector {'on' if gc['enabled_at_start'] else 'paused'}){paced}"
    )


COMMAND = Command(
    name="profile",
    order=100,
    help="run an ultrathink command under the profiler (stages, process, GC, calls)",
    description="Run an ultrathink command with its engine runs profiled stage by stage "
    "and a sampling call profile; write JSON, Prometheus text and call reports.",
    examples=(_EXAMPLE, "ultrathink profile --no-calls --sample-every 256 -- run"),
    configure=_configure,
    handler=cmd_profile,
)
