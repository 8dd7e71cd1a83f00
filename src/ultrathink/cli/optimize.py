"""``ultrathink optimize strategy``: Optuna studies with overfitting statistics."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ultrathink.cli._registry import CliContext, Command, sub_parser
from ultrathink.cli._run_options import CONFIG_OPTIONS, overrides

_SAMPLERS = "tpe|gp|cmaes|random|grid|qmc|nsga2"


def _study_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("study (Optuna)")
    g.add_argument("--study", metavar="NAME", help="study name (default STRATEGY-DATA)")
    g.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage: any RDB URL (sqlite:///…, postgresql://…) or journal:PATH "
        "(default: studies.db next to the store)",
    )
    g.add_argument("--db", metavar="PATH", help="the store whose directory holds studies.db")
    g.add_argument("--sampler", default="tpe", metavar=_SAMPLERS, help="sampler (default tpe)")
    g.add_argument(
        "--pruner", default="median", metavar="median|hyperband|none", help="(default median)"
    )
    g.add_argument(
        "--n-trials",
        type=int,
        default=50,
        metavar="N",
        help="finish the study at N ended trials, counting those of an earlier run of it "
        "(default 50)",
    )
    g.add_argument("--timeout", type=float, metavar="S", help="stop starting trials after S s")
    g.add_argument("--seed", type=int, metavar="N", help="sampler seed: a rerun repeats exactly")
    g.add_argument("--json", action="store_true", help="print the outcome as JSON")


def _configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="optimize_cmd", required=True, metavar="TARGET")
    s = sub_parser(
        sub,
        "strategy",
        "tune a strategy's parameters on walk-forward windows, after costs",
        (
            "ultrathink optimize strategy --space fast=int:5:50 --space slow=int:20:200 "
            "--n-trials 100 --seed 1",
            "ultrathink optimize strategy --strategy my.py --space window=int:10:100 "
            "--objective sharpe,max_drawdown --sampler nsga2",
        ),
        description="Search a strategy's parameters with Optuna. Each trial is a backtest "
        "with the costs and limits of a paper session; walk-forward windows split it into "
        "in-sample (what the sampler optimises) and out-of-sample (reported beside it). "
        "Every study ends with the Deflated Sharpe Ratio of its winner and the Probability "
        "of Backtest Overfitting of its trials. The study lives in a storage, so running the "
        "same command again after Ctrl-C or a crash continues it.",
    )
    g = s.add_argument_group("what to search")
    g.add_argument(
        "--strategy",
        default="sma_cross",
        metavar="NAME|FILE.py[:Class]",
        help="built-in strategy or your own file (default sma_cross)",
    )
    g.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="NAME=KIND:SPEC",
        help="a searched parameter: int:LOW:HIGH[:STEP|:log], float:LOW:HIGH[:STEP|:log] or "
        "cat:A,B (repeatable; or a [space] table in --config)",
    )
    g.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter fixed at VALUE, not searched (repeatable)",
    )
    g.add_argument(
        "--objective",
        default="sharpe",
        metavar="METRIC[,METRIC]",
        help="sharpe, sortino, calmar, total_return, profit_factor or max_drawdown; several "
        "(comma-separated) run a multi-objective study and report the Pareto front "
        "(default sharpe)",
    )
    g.add_argument(
        "--min-trades",
        type=int,
        default=5,
        metavar="N",
        help="reject a trial with fewer in-sample round trips (default 5)",
    )
    g.add_argument(
        "--windows", type=int, default=4, metavar="N", help="walk-forward windows (default 4)"
    )
    g.add_argument(
        "--scheme",
        default="anchored",
        choices=("anchored", "rolling"),
        help="in-sample part of a window: everything before it, or the segment before it",
    )
    g = s.add_argument_group("data, costs and limits (defaults of paper)")
    g.add_argument("--data", default="sp500", metavar="SPEC", help="as for backtest (sp500)")
    g.add_argument("--start", metavar="DATE", help="first date to use (UTC)")
    g.add_argument("--end", metavar="DATE", help="last date to use (inclusive)")
    for opt in CONFIG_OPTIONS:
        g.add_argument(opt.flag, metavar=opt.metavar, help=opt.help)
    size = g.add_mutually_exclusive_group()
    size.add_argument("--quantity", metavar="QTY", help="trade a fixed number of units")
    size.add_argument("--all-in", action="store_true", help="all equity (default)")
    g.add_argument(
        "--config",
        metavar="FILE.toml",
        help='engine settings, and a [space] table (name = "int:5:50")',
    )
    _study_options(s)
    s.set_defaults(func=_handle_strategy)


def _space_table(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from pathlib import Path

    from ultrathink.config_files import read_toml
    from ultrathink.errors import ConfigError

    table = read_toml(Path(path)).get("space")
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f'{path}: [space] must be a table of NAME = "KIND:SPEC"')
    return table


def _handle_strategy(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink import services
    from ultrathink.optimization.space import SearchSpace
    from ultrathink.optimization.strategy_study import StrategyStudySpec, run_strategy_study
    from ultrathink.optimization.walkforward import parse_objectives

    spec = StrategyStudySpec(
        strategy=args.strategy,
        space=SearchSpace.parse(args.space, _space_table(args.config)),
        fixed=services.parse_params(args.param),
        data=args.data,
        start=args.start,
        end=args.end,
        config_path=args.config,
        overrides=overrides(args),
        objectives=parse_objectives(args.objective),
        min_trades=args.min_trades,
        n_windows=args.windows,
        scheme=args.scheme,
        sampler=args.sampler,
        pruner=args.pruner,
        n_trials=args.n_trials,
        timeout_s=args.timeout,
        seed=args.seed,
        study_name=args.study,
        storage=args.storage,
        db=args.db,
    )
    with _Progress(args.n_trials, enabled=not args.json) as hook:
        outcome = run_strategy_study(spec, hook)
    if args.json:
        print(json.dumps(outcome.to_dict(), indent=1, default=float))
    else:
        _print_outcome(outcome)
    return 0


class _Progress:
    """A rich progress bar on a terminal: trials ended, pruned, failed, best so far."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.total, self.enabled = total, enabled and sys.stderr.isatty()
        self.bar: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.bar = Progress(
            TextColumn("trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            console=Console(stderr=True),
            transient=True,
        )
        self.task = self.bar.add_task("study", total=self.total, status="")
        self.bar.start()
        return self.update

    def update(self, study: Any, trial: Any) -> None:
        from ultrathink.optimization.study import finished, trial_counts

        counts = trial_counts(study)
        status = f"pruned {counts.get('pruned', 0)}, failed {counts.get('rejected', 0)}"
        if len(study.directions) == 1 and counts.get("complete"):
            status += f", best {study.best_value:.4f} (trial {study.best_trial.number})"
        self.bar.update(self.task, completed=finished(study), status=status)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _print_outcome(outcome: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    counts = ", ".join(f"{k} {v}" for k, v in outcome.counts.items())
    verb = "continued" if outcome.resumed else "created"
    console.print(
        f"study {outcome.study_name} ({verb}; {outcome.storage}): {counts}; "
        f"{outcome.new_trials} new in {outcome.elapsed_s:.1f} s"
    )
    objectives = outcome.objectives
    title = "winner" if len(outcome.best) == 1 else f"Pareto front ({len(outcome.best)})"
    table = Table(title=f"{title}: in-sample (optimised) vs out-of-sample (reported)")
    for col in ("trial", "params", *(f"{o} IS" for o in objectives)):
        table.add_column(col, justify="right" if col != "params" else "left")
    for o in objectives:
        table.add_column(f"{o} OOS", justify="right")
    table.add_column("trades", justify="right")
    for row in outcome.best:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in row["params"].items())
        table.add_row(
            str(row["trial"]),
            params,
            *(_fmt(row["in_sample"].get(o)) for o in objectives),
            *(_fmt(row["out_of_sample"].get(o)) for o in objectives),
            str(row["n_trades"]),
        )
    console.print(table)
    if outcome.walk_forward:
        wf = Table(
            title=f"walk-forward: each window's in-sample best, scored out of sample "
            f"({objectives[0]})"
        )
        for col in ("window", "trial", "params", "in-sample", "out-of-sample"):
            wf.add_column(col, justify="left" if col == "params" else "right")
        for w in outcome.walk_forward:
            params = ", ".join(f"{k}={_fmt(v)}" for k, v in w["params"].items())
            wf.add_row(
                str(w["window"]), str(w["trial"]), params, _fmt(w["in_sample"]),
                _fmt(w["out_of_sample"]),
            )  # fmt: skip
        console.print(wf)
    if outcome.dsr is not None:
        d = outcome.dsr
        console.print(
            f"deflated Sharpe ratio {d['dsr']:.3f} (winner's per-period Sharpe "
            f"{d['sharpe']:.4f} vs {d['expected_max_sharpe']:.4f} expected from the best of "
            f"{d['n_trials']} worthless trials; skew {d['skewness']:.2f}, kurtosis "
            f"{d['kurtosis']:.2f}, {d['n_obs']:,} returns)"
        )
    if outcome.pbo is not None:
        p = outcome.pbo
        console.print(
            f"probability of backtest overfitting {p['pbo']:.3f} ({p['n_splits']:,} CSCV "
            f"splits of {p['n_blocks']} blocks; OOS vs IS slope {p['degradation_slope']:.2f}, "
            f"P(OOS loss) {p['prob_oos_loss']:.2f})"
        )
    for warning in outcome.warnings:
        console.print(f"[bold yellow]warning:[/] {warning}")


COMMAND = Command(
    name="optimize",
    order=45,
    help="tune a strategy with Optuna; every study reports its DSR and PBO",
    description="Optuna studies on walk-forward windows, stored so they survive a crash, "
    "with the Deflated Sharpe Ratio and the Probability of Backtest Overfitting of every "
    "study.",
    examples=(
        "ultrathink optimize strategy --space fast=int:5:50 --space slow=int:20:200 --seed 1",
    ),
    configure=_configure,
)
