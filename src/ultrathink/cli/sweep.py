"""``ultrathink sweep``: a parameter grid x datasets x windows on a process pool or Ray."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from ultrathink.cli._common import DB_HELP
from ultrathink.cli._registry import CliContext, Command


def _configure(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to sweep")
    g.add_argument("--strategy", default="sma_cross", metavar="NAME|FILE.py[:Class]",
                   help="built-in strategy or your own file (default sma_cross)")  # fmt: skip
    g.add_argument("--grid", action="append", default=[], metavar="NAME=LO:HI:STEP|A,B,C",
                   help="a parameter's values: an inclusive range or a list (repeat per "
                   "parameter)")  # fmt: skip
    g.add_argument("--where", metavar="EXPR",
                   help='constraint over the grid names, e.g. "fast < slow"')  # fmt: skip
    g.add_argument(
        "--random",
        type=int,
        metavar="N",
        help="N points drawn at random from the constrained grid (with --seed)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    g.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a fixed strategy parameter (repeatable)")  # fmt: skip
    g.add_argument("--data", default="sp500", metavar="SPEC[,SPEC…]",
                   help="datasets, symbols files or synthetic specs, comma-separated "
                   "(default sp500)")  # fmt: skip
    g.add_argument("--windows", default="all", metavar="all|rolling:LEN:STEP|START:END,…",
                   help="date windows: the whole data (default), rolling (e.g. "
                   "rolling:3y:1y) or explicit ranges")  # fmt: skip
    g.add_argument(
        "--config",
        metavar="FILE.toml",
        help="engine configuration (costs, limits); default: backtest's zero costs",
    )
    g.add_argument("--max-points", type=int, default=None, metavar="N",
                   help="refuse a sweep of more points (default 100,000)")  # fmt: skip
    r = p.add_argument_group("where it runs")
    r.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local worker processes (default: all cores)")  # fmt: skip
    r.add_argument("--ray", metavar="auto|ADDRESS|local",
                   help="run on a Ray cluster: auto (the one `ray start` runs here), "
                   "HOST:PORT, or local (start one in this process)")  # fmt: skip
    r.add_argument("--resume", type=int, metavar="SWEEP_ID",
                   help="continue a stopped sweep, skipping its finished points")  # fmt: skip
    r.add_argument(
        "--keep-runs",
        action="store_true",
        help="also store every point's full run (orders, fills, equity)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--metric", default=None,
                   help="metric to rank points by (default sharpe)")  # fmt: skip
    o.add_argument("--top", type=int, default=5, help="best points shown (default 5)")
    o.add_argument(
        "--report",
        metavar="PATH.html",
        help="HTML report: heatmap, distribution, best points and robustness",
    )
    o.add_argument("--x", help="heatmap x parameter (default: the first --grid)")
    o.add_argument("--y", help="heatmap y parameter (default: the second --grid)")
    o.add_argument("--json", action="store_true", help="JSON output")
    o.add_argument("--list", action="store_true", help="list the stored sweeps and exit")
    o.add_argument(
        "--show",
        type=int,
        metavar="SWEEP_ID",
        help="show a stored sweep (with --report, --metric, --json) and exit",
    )
    p.add_argument("--db", help=DB_HELP)


def _handle(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink import services
    from ultrathink.errors import ConfigError
    from ultrathink.sweep.store import SweepStore

    db = services.resolve_db(args.db)
    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, was {args.top}")
    if args.list or args.show is not None:
        if not db.exists():
            raise ConfigError(f"store {db} does not exist; pass the --db the sweep used")
        with SweepStore(db) as store:
            if args.list:
                return _print_list(store, args.json)
            return _print_sweep(store, args.show, args, outcome=None)
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, was {args.workers}")
    workers = args.workers or os.cpu_count() or 1
    with SweepStore(db) as store:
        spec, sweep_id = _spec(args, store)
        from ultrathink.sweep.run import execute, plan

        planned = plan(spec, args.max_points or _max_points_default())
        if args.report:
            services.check_output_path(args.report, "--report")
        # stdout is the result's alone: what a backend prints while it runs (Ray reports a
        # worker it lost and the retry, even with log_to_driver off) goes to stderr
        with _Progress(enabled=not args.json) as progress, redirect_stdout(sys.stderr):
            try:
                outcome = execute(
                    planned, store, sweep_id=sweep_id, workers=workers, ray_address=args.ray,
                    keep_runs=args.keep_runs, on_progress=progress.update,
                )  # fmt: skip
            except KeyboardInterrupt:
                progress.stop()
                started = sweep_id if sweep_id is not None else store.last_created
                if started is None:
                    print("sweep interrupted before it started: nothing stored", file=sys.stderr)
                    return 130
                last = store.get(started)
                print(
                    f"sweep {last.sweep_id} interrupted: {last.done} of {last.n_points} points "
                    f"stored; continue with `ultrathink sweep --resume {last.sweep_id}`",
                    file=sys.stderr,
                )
                return 130
        return _print_sweep(store, outcome.sweep_id, args, outcome=outcome)


def _max_points_default() -> int:
    from ultrathink.sweep.spec import DEFAULT_MAX_POINTS

    return DEFAULT_MAX_POINTS


def _spec(args: argparse.Namespace, store: Any) -> tuple[Any, int | None]:
    from ultrathink import services
    from ultrathink.errors import ConfigError
    from ultrathink.sweep.spec import SweepSpec, parse_grid

    if args.resume is not None:
        if args.grid or args.where or args.random is not None or args.param:
            raise ConfigError(
                "--resume continues a stored sweep as it was asked; drop --grid, --where, "
                "--random and --param"
            )
        return store.get(args.resume).spec, args.resume
    data = tuple(d.strip() for d in args.data.split(",") if d.strip())
    if not data:
        raise ConfigError("--data names no dataset")
    spec = SweepSpec(
        strategy=args.strategy, grid=parse_grid(args.grid), where=args.where,
        random=args.random, seed=args.seed, data=data, windows=args.windows,
        fixed=services.parse_params(args.param), config_path=args.config,
        metric=args.metric or "sharpe",
    )  # fmt: skip
    return spec, None


def _print_list(store: Any, as_json: bool) -> int:
    records = store.recent(50)
    if as_json:
        json.dump([{"sweep_id": r.sweep_id, "created_utc": r.created_utc,
                    "strategy": r.spec.strategy, "points": r.n_points, "done": r.done,
                    "status": r.status, "backend": r.backend,
                    "elapsed_s": round(r.elapsed_s, 3)} for r in records],
                  sys.stdout, indent=1)  # fmt: skip
        print()
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table("sweep", "created, UTC", "strategy", "points", "done", "status", "backend",
              "elapsed")  # fmt: skip
    for r in records:
        created = r.created_utc[:16].replace("T", " ")
        t.add_row(str(r.sweep_id), created, r.spec.strategy, f"{r.n_points:,}", f"{r.done:,}",
                  r.status, r.backend, f"{r.elapsed_s:.1f} s")  # fmt: skip
    Console().print(t)
    return 0


def _print_sweep(store: Any, sweep_id: int, args: argparse.Namespace, outcome: Any) -> int:
    from ultrathink.sweep import report

    record = store.get(sweep_id)
    rows = store.points(sweep_id)
    metric = args.metric or record.spec.metric
    report.check_metric(rows, metric)
    top = report.best(rows, metric, record.spec.grid, n=args.top)
    path = report.write(Path(args.report), record, rows, metric, args.x, args.y) if args.report \
        else None  # fmt: skip
    failed = [r for r in rows if r.error is not None]
    out: dict[str, Any] = {
        "sweep_id": sweep_id, "status": record.status, "strategy": record.spec.strategy,
        "points": record.n_points, "stored": len(rows), "failed": len(failed),
        "backend": record.backend, "elapsed_s": round(record.elapsed_s, 3),
        "metric": metric, "best": top, "report": str(path) if path else None,
    }  # fmt: skip
    if outcome is not None:
        out.update(ran=outcome.ran, skipped=outcome.skipped,
                   backtests_per_s=round(outcome.points_per_s, 2))  # fmt: skip
    if failed:
        out["failures"] = [{"params": r.params, "data": r.data, "window": r.window,
                            "error": r.error} for r in failed[:20]]  # fmt: skip
    if args.json:
        json.dump(out, sys.stdout, indent=1)
        print()
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    line = (f"sweep {sweep_id} ({record.status}): {len(rows):,} of {record.n_points:,} points "
            f"stored, {len(failed)} failed, on {record.backend}")  # fmt: skip
    if outcome is not None:
        line += (
            f"; this run: {outcome.ran:,} points in {outcome.elapsed_s:.1f} s "
            f"({outcome.points_per_s:,.1f} backtests/s), {outcome.skipped:,} skipped"
        )
    console.print(line, highlight=False)
    names = list(record.spec.grid)
    # the data and window columns only when the sweep has more than one of them
    wide = len({(r.data, r.window) for r in rows}) > 1
    t = Table(*names, *(("data", "window") if wide else ()), metric, "trades", "nbrs mean",
              "nbrs worst", title=f"best {len(top)} by {metric}")  # fmt: skip
    for b in top:
        t.add_row(*(str(b["params"][n]) for n in names),
                  *((b["data"], b["window"]) if wide else ()),
                  *(report._fmt(b[k]) for k in ("value", "n_trades", "neighbours_mean",
                                                 "neighbours_worst")))  # fmt: skip
    console.print(t)
    for r in failed[:5]:
        console.print(f"failed: {r.params} on {r.data} {r.window}: {r.error}", highlight=False)
    if path:
        console.print(f"report: {path}", highlight=False)
    return 0


class _Progress:
    """A progress bar with the ETA on an interactive terminal (stderr); silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )  # fmt: skip

            self.bar = Progress(TextColumn("points"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True),
                                transient=True)  # fmt: skip
            self.bar.start()
        return self

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task("sweep", total=total)
        self.bar.update(self.task, completed=done)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __exit__(self, *exc: object) -> None:
        self.stop()


COMMAND = Command(
    name="sweep",
    order=36,
    help="run a parameter grid over datasets and windows, on all cores or a Ray cluster",
    description="Backtest every point of a parameter grid (or --random N of it) over one or "
    "more datasets and date windows. Each point runs exactly what `ultrathink backtest` runs, "
    "so its metrics equal a standalone backtest's, whatever the backend. Results go into the "
    "store (a sweep record and a row per point); a stopped sweep continues with --resume.",
    examples=(
        'ultrathink sweep --grid fast=5:50:5 --grid slow=20:200:5 --where "fast < slow"',
        "ultrathink sweep --grid fast=5:30:5 --grid slow=40:120:20 --data sp500 "
        "--windows rolling:5y:2y --report sweep.html",
        "ultrathink sweep --grid fast=5:50:1 --grid slow=20:200:5 --ray 127.0.0.1:6379",
        "ultrathink sweep --resume 3",
        "ultrathink sweep --show 3 --metric total_return --json",
    ),
    configure=_configure,
    handler=_handle,
)
