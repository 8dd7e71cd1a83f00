"""``ultrathink`` command line: backtest, paper, run, data, runs, audit.

Every command prints a clear one-line error (exit code 2) for bad input instead of a
traceback; ``audit verify`` exits 1 when the chain is broken.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ultrathink import __version__
from ultrathink.cli_ctl import add_ctl_parser
from ultrathink.cli_ml import add_group_flags, add_models_parser, add_train_parser, cmd_run
from ultrathink.cli_perf import add_bench_parser
from ultrathink.cli_profile import add_profile_parser
from ultrathink.errors import UltrathinkError

Handler = Callable[[argparse.Namespace], int]


def _add_run_options(p: argparse.ArgumentParser, *, paper: bool = False) -> None:
    p.add_argument(
        "--strategy",
        help="built-in name (sma_cross (default), buy_and_hold, ml) or FILE.py[:Class]",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="strategy parameter, repeatable (e.g. --param fast=10 --param slow=30)",
    )
    p.add_argument(
        "--data",
        help="sp500 (default) | nasdaq | PATH.csv | PATH.parquet | synthetic[:k=v,...]",
    )
    p.add_argument("--start", help="first date to use (UTC, e.g. 2005-01-01)")
    p.add_argument("--end", help="last date to use (inclusive)")
    p.add_argument("--cash", type=float, help="starting cash (default 100000)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quantity", type=float, help="trade a fixed number of units")
    size.add_argument(
        "--all-in",
        action="store_true",
        help="size each position at all equity, split across symbols (default)",
    )
    p.add_argument("--commission-bps", type=float, help="fee in bps of notional")
    p.add_argument("--fee-per-order", type=float, help="fixed fee per order")
    p.add_argument("--slippage-bps", type=float, help="adverse slippage in bps")
    p.add_argument("--latency-ms", type=float, help="order latency before it can fill")
    p.add_argument("--max-volume-pct", type=float, help="cap fills at this %% of bar volume")
    p.add_argument("--max-drawdown-pct", type=float, help="risk: REDUCING beyond this drawdown")
    p.add_argument("--max-daily-loss-pct", type=float, help="risk: daily loss limit")
    p.add_argument("--max-position-qty", type=float, help="risk: largest |position| per symbol")
    p.add_argument("--max-order-notional", type=float, help="risk: largest order value")
    p.add_argument("--model", help="ml strategy: registry version (default: production/latest)")
    p.add_argument("--registry", help="model registry directory (default .ultrathink/models)")
    p.add_argument("--config", help="TOML file with engine/broker/risk/sizing settings")
    p.add_argument("--db", help="SQLite store (default .ultrathink/ultrathink.db)")
    p.add_argument("--no-store", action="store_true", help="do not persist this run")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--report", metavar="PATH.html", help="write an HTML report")
    if paper:
        p.add_argument(
            "--resume",
            type=int,
            metavar="RUN_ID",
            help="continue a paper run after a crash: reconcile with the venue, then trade on",
        )
        p.add_argument(
            "--no-control",
            action="store_true",
            help="no operator endpoint (default: `ultrathink ctl` can steer the session)",
        )
        p.add_argument(
            "--speed",
            help="replay pace: a multiple of real time (1, 60 (default), 86400) or 'max'",
        )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"broker": {}, "risk": {}}
    if args.cash is not None:
        out["starting_cash"] = args.cash
    if args.quantity is not None:
        out["sizing"] = {"mode": "fixed", "quantity": args.quantity}
    elif args.all_in:
        out["sizing"] = {"mode": "all_in"}
    for opt, key in (("commission_bps", "commission_bps"), ("fee_per_order", "fee_per_order"),
                     ("slippage_bps", "slippage_bps"), ("latency_ms", "latency_ms"),
                     ("max_volume_pct", "max_volume_pct")):  # fmt: skip
        if getattr(args, opt) is not None:
            out["broker"][key] = getattr(args, opt)
    for opt in ("max_drawdown_pct", "max_daily_loss_pct", "max_position_qty",
                "max_order_notional"):  # fmt: skip
        if getattr(args, opt) is not None:
            out["risk"][opt] = getattr(args, opt)
    speed = getattr(args, "speed", None)
    if speed is None and hasattr(args, "speed") and getattr(args, "resume", None) is None:
        speed = "60"  # paper's default pace; a resumed run keeps its own unless given
    if speed is not None:
        out["speed"] = None if str(speed).lower() == "max" else _positive(speed, "--speed")
    return out


def _positive(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise UltrathinkError(f"{name} must be a positive number or 'max', was {text!r}")
    return value


def run_command(args: argparse.Namespace, mode: str = "backtest") -> int:
    """Backtest, paper and run share this path: config, strategy, data, run, output."""
    from ultrathink import services
    from ultrathink.cli_output import progress_bar

    realistic = mode != "backtest"
    overrides = _overrides(args)
    if mode == "paper" and not args.no_control:
        overrides["control"] = {"enabled": True}
    resume = getattr(args, "resume", None)
    if resume is not None:  # the stored run's strategy, data and config, unless given again
        return _resume(args, resume, overrides)
    config = services.engine_config(
        realistic=realistic, config_path=args.config, overrides=overrides
    )
    params: dict[str, Any] = services.parse_params(args.param)
    if args.model:
        params["model"] = args.model
    strategy = services.make_strategy(args.strategy or "sma_cross", params)
    if services.attach_model_if_needed(strategy, args.registry, args.db):
        config = config.model_copy(update={"measure_latency": True})
    data = services.slice_data(services.load(args.data or "sp500"), args.start, args.end)
    db = None if args.no_store else services.resolve_db(args.db)
    _announce_pacing(data.end_ns - data.start_ns, len(data), config.speed)
    with progress_bar(len(data), enabled=not args.json) as progress:
        result = services.run_strategy(strategy, data, config, mode=mode, db_path=db,
                                       progress=progress)  # fmt: skip
    return _output(args, result)


def _resume(args: argparse.Namespace, run_id: int, overrides: dict[str, Any]) -> int:
    from ultrathink import services
    from ultrathink.cli_output import progress_bar

    if args.no_store:
        raise UltrathinkError("--resume needs the store the run was written to (drop --no-store)")
    db = services.resolve_db(args.db)
    strategy, data, config = services.resumable_run(
        db, run_id, strategy_spec=args.strategy, data_spec=args.data, start=args.start,
        end=args.end, control=overrides.get("control"), registry=args.registry,
        speed=(overrides["speed"] or 0) if "speed" in overrides else None,
    )  # fmt: skip
    with progress_bar(len(data), enabled=not args.json) as progress:
        result = services.run_strategy(strategy, data, config, mode="paper", db_path=db,
                                       progress=progress, resume_run_id=run_id)  # fmt: skip
    return _output(args, result)


def _output(args: argparse.Namespace, result: Any) -> int:
    from ultrathink.cli_output import print_summary

    report = None
    if args.report:
        from ultrathink.engine.report import write_report

        report = write_report(result, args.report)
    if args.json:
        out = result.summary()
        out["report"] = str(report) if report else None
        json.dump(out, sys.stdout, indent=1)  # streamed: no second copy of a large summary
        print()
    else:
        print_summary(result, report)
    return 0


def _announce_pacing(span_ns: int, n_bars: int, speed: float | None) -> None:
    # a paced replay of years of daily bars takes a long time: say so up front (stderr)
    if speed is None or n_bars < 2:
        return
    seconds = span_ns / 1e9 / speed
    if seconds >= 60:
        print(
            f"paper: replaying {n_bars:,} bars at {speed:g}x real time takes about "
            f"{seconds / 3600:,.1f} h; Ctrl-C stops and keeps everything so far "
            "(--speed max replays as fast as possible)",
            file=sys.stderr,
        )


def _cmd_paper(args: argparse.Namespace) -> int:
    return run_command(args, mode="paper")


def _cmd_data(args: argparse.Namespace) -> int:
    from ultrathink import services
    from ultrathink.cli_output import print_frame

    if args.data_cmd == "generate":
        data = services.generate_data(args.spec, Path(args.out))
        print(f"wrote {len(data):,} bars of {len(data.symbols)} symbol(s) to {args.out}")
        return 0
    data = services.load(args.spec)
    if args.data_cmd == "validate":
        print(f"OK: {args.spec}: {len(data):,} bars, {len(data.symbols)} symbol(s), "
              "all validation rules pass")  # fmt: skip
        return 0
    frame = services.inspect_data(data)
    if args.json:
        print(frame.to_json(orient="records", indent=1))
    else:
        print_frame(frame, title=f"{data.name}: {len(data):,} bars, sha256 {data.sha256()[:12]}")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from ultrathink import services
    from ultrathink.cli_output import print_run, print_runs

    db = services.resolve_db(args.db)
    if args.runs_cmd == "show":
        info = services.show_run(db, args.run_id)
        print_run(info, as_json=args.json)
        return 0
    runs = services.list_runs(db, args.limit)
    print_runs(runs, as_json=args.json)
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from ultrathink import services

    report = services.audit_verify(services.resolve_db(args.db))
    if args.json:
        print(json.dumps({"ok": report.ok, "n_rows": report.n_rows, "problems": report.problems,
                          "head_seq": report.last_seq, "head_hash": report.last_hash}))  # fmt: skip
    elif report.ok:
        print(f"OK: {report.n_rows:,} audit rows, chain intact; head #{report.last_seq} "
              f"{report.last_hash}")  # fmt: skip
    else:
        print(f"BROKEN: {len(report.problems)} problem(s) in {report.n_rows:,} rows:")
        for problem in report.problems:
            print(f"  - {problem}")
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="ultrathink", description="ULTRATHINK: event-driven ML trading platform."
    )
    parser.add_argument("--version", action="version", version=f"ultrathink {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("backtest", help="run a strategy over historical data, as fast as possible")
    _add_run_options(p)
    p.set_defaults(func=run_command)
    p = sub.add_parser("paper", help="paper-trade a replay paced by the live clock")
    _add_run_options(p, paper=True)
    p.set_defaults(func=_cmd_paper)
    p = sub.add_parser("run", help="main job: train if needed, trade the ML ensemble on sp500")
    p.add_argument("--db", help="SQLite store (default .ultrathink/ultrathink.db)")
    p.add_argument("--registry", help="model registry directory (default .ultrathink/models)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--report", metavar="PATH.html", help="HTML report path")
    p.set_defaults(func=cmd_run)
    _add_data_parser(sub)
    _add_runs_parser(sub)
    add_train_parser(sub)
    add_models_parser(sub)
    add_ctl_parser(sub)
    add_bench_parser(sub)
    add_profile_parser(sub)
    p = sub.add_parser("audit", help="audit log tools")
    asub = p.add_subparsers(dest="audit_cmd", required=True, metavar="ACTION")
    v = asub.add_parser("verify", help="verify the hash chain; exit 1 if any row was tampered")
    v.add_argument("--db", help="SQLite store (default .ultrathink/ultrathink.db)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_cmd_audit)
    return parser


def _add_data_parser(sub: Any) -> None:
    p = sub.add_parser("data", help="inspect, validate or generate market data")
    dsub = p.add_subparsers(dest="data_cmd", required=True, metavar="ACTION")
    i = dsub.add_parser("inspect", help="summarise a dataset, file or synthetic spec")
    i.add_argument("spec", help="sp500 | nasdaq | PATH | synthetic:...")
    i.add_argument("--json", action="store_true")
    v = dsub.add_parser("validate", help="check a file against every validation rule")
    v.add_argument("spec", help="PATH.csv | PATH.parquet (or any data spec)")
    g = dsub.add_parser("generate", help="write seeded synthetic data to a file")
    g.add_argument("spec", help="e.g. 'synthetic:n_bars=10000,seed=7,crash=20@5000/50'")
    g.add_argument("--out", required=True, help="PATH.csv, PATH.csv.gz or PATH.parquet")
    for q in (i, v, g):
        q.set_defaults(func=_cmd_data)


_DB_HELP = "SQLite store (default .ultrathink/ultrathink.db)"


def _add_runs_parser(sub: Any) -> None:
    p = sub.add_parser("runs", help="past runs from the store")
    add_group_flags(p, "--db", _DB_HELP)
    rsub = p.add_subparsers(dest="runs_cmd", metavar="ACTION")
    lst = rsub.add_parser("list", help="newest runs first (default)")
    lst.add_argument("--limit", type=int, default=20)
    show = rsub.add_parser("show", help="one run in detail")
    show.add_argument("run_id", type=int)
    for leaf in (lst, show):
        add_group_flags(leaf, "--db", _DB_HELP)
    p.set_defaults(func=_cmd_runs, runs_cmd="list", limit=20, db=None, json=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ultrathink`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except UltrathinkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
