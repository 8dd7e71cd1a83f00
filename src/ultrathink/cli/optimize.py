"""``ultrathink optimize strategy|model``: Optuna studies with overfitting statistics."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import redirect_stdout
from typing import Any

from ultrathink.cli._registry import CliContext, Command, sub_parser
from ultrathink.cli._run_options import CONFIG_OPTIONS, overrides

_SAMPLERS = "tpe|gp|cmaes|random|grid|qmc|nsga2"


def _study_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("study (Optuna)")
    g.add_argument(
        "--study", metavar="NAME", help="study name (default STRATEGY-DATA or model-DATA)"
    )
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
    g.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        metavar="N",
        help="N worker processes sharing the study (default storage: studies.journal by the "
        "store); not reproducible",
    )
    g.add_argument(
        "--ray",
        metavar="ADDRESS|auto|local",
        help="run the workers on a Ray cluster (with --n-jobs N: N workers, this process "
        "included; default: one per CPU of the cluster). They share --storage, which every "
        "node must reach: postgresql://… for a cluster of machines",
    )
    g.add_argument(
        "--report",
        metavar="PATH",
        help="write the study's self-contained HTML report (a directory gets STUDY.html)",
    )
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
    _configure_model(sub)
    r = sub_parser(
        sub,
        "report",
        "write the HTML report of a stored study",
        ("ultrathink optimize report sma_cross-embedded:sp500 --out study.html",),
        description="Rebuild the self-contained HTML report (history, importances, parallel "
        "coordinates, slices, Pareto front, in/out of sample per window, DSR and PBO) of a "
        "study from its storage.",
    )
    r.add_argument("study", metavar="STUDY", help="the study's name")
    r.add_argument("--out", required=True, metavar="PATH", help="file or directory to write")
    r.add_argument("--storage", metavar="URL", help="(default: studies.db next to the store)")
    r.add_argument("--db", metavar="PATH", help="the store whose directory holds studies.db")
    r.set_defaults(func=_handle_report)


def _handle_report(args: argparse.Namespace, context: CliContext) -> int:
    from pathlib import Path

    from ultrathink import services
    from ultrathink.optimization.report import write_report
    from ultrathink.optimization.study import default_storage, load_existing
    from ultrathink.optimization.trials import outcome_of

    url = args.storage or default_storage(services.resolve_db(args.db))
    study = load_existing(url, args.study)
    path = write_report(study, outcome_of(study, url), Path(args.out))
    print(f"report: {path}")
    return 0


def _finish(args: argparse.Namespace, outcome: Any) -> None:
    """Print the outcome, write the report if asked, name the dashboard command."""
    from pathlib import Path

    from ultrathink.optimization.report import write_report
    from ultrathink.optimization.study import load_existing
    from ultrathink.optimization.trials import dashboard_command

    report = None
    if args.report:
        study = load_existing(outcome.storage_url, outcome.study_name)
        report = write_report(study, outcome, Path(args.report))
    if args.json:
        out = outcome.to_dict()
        out["report"] = str(report) if report else None
        print(json.dumps(out, indent=1, default=float))
        return
    _print_outcome(outcome)
    if report:
        print(f"report: {report}")
    print(f"browse it: {dashboard_command(outcome.storage_url)}")


def _configure_model(sub: Any) -> None:
    m = sub_parser(
        sub,
        "model",
        "tune the ensemble on train's purged walk-forward folds; register the winner",
        (
            "ultrathink optimize model --n-trials 100 --seed 1",
            "ultrathink optimize model --objective auc --members gbm,linear --param "
            "gbm_n_estimators=200",
            "ultrathink optimize model --objective logloss,sharpe --sampler nsga2",
        ),
        description="Search the ensemble's hyperparameters (each member's main knobs, the "
        "voting weights, and the decision threshold when sharpe is an objective) with "
        "Optuna. Each trial is fitted and scored fold by fold on the purged walk-forward "
        "folds of `ultrathink train`; the running mean is reported after each fold so the "
        "pruner can stop a poor trial early. The winner is trained on the whole range and "
        "registered as a new version with its lineage (study, trial, parameters, parent, "
        "data hash); it is not promoted.",
    )
    g = m.add_argument_group("what to search")
    g.add_argument(
        "--objective",
        default="logloss",
        metavar="METRIC[,METRIC]",
        help="out-of-sample logloss (default), auc, accuracy or sharpe (the threshold "
        "strategy, no costs); several run a multi-objective study",
    )
    g.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="NAME=KIND:SPEC",
        help="replace or add a searched parameter (e.g. --space gbm_num_leaves=int:4:32); "
        "weight_gbm, weight_forest, weight_linear and long_threshold are searchable too",
    )
    g.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a parameter instead of searching it (repeatable)",
    )
    g.add_argument(
        "--long-threshold",
        type=float,
        default=0.55,
        metavar="P",
        help="decision threshold when it is not searched (default 0.55)",
    )
    g = m.add_argument_group("data and folds (as for train)")
    g.add_argument(
        "--data",
        help="sp500 | nasdaq | PATH | synthetic:... (default: the data the parent was "
        "trained on, else sp500)",
    )
    g.add_argument("--symbol", help="symbol to train on when the data has several")
    g.add_argument("--start", help="first date of the training data")
    g.add_argument("--end", help="last date of the training data (inclusive)")
    g.add_argument("--horizon", type=int, default=5, help="label horizon in bars (5)")
    g.add_argument("--dead-zone-bps", type=float, default=0.0, help="unlabelled |return| band")
    g.add_argument("--folds", type=int, default=5, help="walk-forward folds (5)")
    g.add_argument("--embargo", type=int, default=0, help="rows embargoed after each test fold")
    g.add_argument("--features", default="all", help="'all' or a comma-separated subset")
    g.add_argument("--members", default="gbm,forest,linear", help="voting members")
    g.add_argument(
        "--parallel-folds",
        type=int,
        default=1,
        metavar="N",
        help="fit each trial's folds at once on N local processes (Ray tasks with --ray), "
        "reported in fold order: the same results, but a pruned trial has paid for all its "
        "folds (default 1: in turn)",
    )
    g = m.add_argument_group("registry")
    g.add_argument("--registry", help="model registry directory (default .ultrathink/models)")
    g.add_argument(
        "--parent",
        metavar="VERSION|production",
        help="the version this tunes, recorded in the lineage (default: production, if any)",
    )
    g.add_argument(
        "--no-register", action="store_true", help="do not train and register the winner"
    )
    _study_options(m)
    m.set_defaults(func=_handle_model)


def _handle_model(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink import services
    from ultrathink.optimization.model_study import (
        ModelStudySpec,
        parse_model_objectives,
        run_model_study,
    )

    features = None
    if args.features and args.features != "all":
        features = tuple(f.strip() for f in args.features.split(",") if f.strip())
    spec = ModelStudySpec(
        data=args.data,
        symbol=args.symbol,
        start=args.start,
        end=args.end,
        horizon=args.horizon,
        dead_zone_bps=args.dead_zone_bps,
        n_folds=args.folds,
        embargo=args.embargo,
        features=features,
        members=tuple(m.strip() for m in args.members.split(",") if m.strip()),
        space_items=tuple(args.space),
        fixed=services.parse_params(args.param),
        objectives=parse_model_objectives(args.objective),
        long_threshold=args.long_threshold,
        parent=args.parent,
        registry=args.registry,
        register=not args.no_register,
        parallel_folds=args.parallel_folds,
        **_study_fields(args),
    )
    # stdout is the result's alone: Ray reports lost workers on stdout (see cli/sweep.py)
    with _Progress(args.n_trials, enabled=not args.json) as hook, redirect_stdout(sys.stderr):
        outcome = run_model_study(spec, hook)
    _finish(args, outcome)
    return 0


def _study_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The spec fields of the shared study options (``_study_options``)."""
    return {
        "sampler": args.sampler,
        "pruner": args.pruner,
        "n_trials": args.n_trials,
        "timeout_s": args.timeout,
        "seed": args.seed,
        "study_name": args.study,
        "storage": args.storage,
        "db": args.db,
        "n_jobs": args.n_jobs,
        "ray": args.ray,
    }


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
        **_study_fields(args),
    )
    # stdout is the result's alone: Ray reports lost workers on stdout (see cli/sweep.py)
    with _Progress(args.n_trials, enabled=not args.json) as hook, redirect_stdout(sys.stderr):
        outcome = run_strategy_study(spec, hook)
    _finish(args, outcome)
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

    console = Console()
    counts = ", ".join(f"{k} {v}" for k, v in outcome.counts.items())
    verb = "continued" if outcome.resumed else "created"
    console.print(
        f"study {outcome.study_name} ({verb}; {outcome.storage}): {counts}; "
        f"{outcome.new_trials} new in {outcome.elapsed_s:.1f} s"
    )
    if not outcome.reproducible:
        why = (
            f"{outcome.n_jobs} parallel workers decide the order of the trials"
            if outcome.n_jobs > 1
            else "no --seed"
        )
        console.print(f"not reproducible ({why}): a rerun may differ")
    console.print(_best_table(outcome))
    if outcome.walk_forward:
        console.print(_walk_table(outcome))
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
    reg = outcome.registered
    if reg:
        if reg["new"]:
            console.print(
                f"registered the winner (trial {reg['trial']}) as model {reg['version']}, "
                f"trained on the whole range; not promoted (`ultrathink models promote "
                f"{reg['version']}`)"
            )
        else:
            console.print(f"the winner (trial {reg['trial']}) is model {reg['version']}")


def _best_table(outcome: Any) -> Any:
    from rich.table import Table

    objectives = outcome.objectives
    model = outcome.kind == "model"
    title = "winner" if len(outcome.best) == 1 else f"Pareto front ({len(outcome.best)})"
    if model:
        title += ": mean over the out-of-sample folds (what the study optimised) ± s.e."
    else:
        title += ": in-sample (optimised) vs out-of-sample (reported)"
    table = Table(title=title)
    table.add_column("trial", justify="right")
    table.add_column("params")
    for o in objectives:
        table.add_column(f"{o} folds" if model else f"{o} IS", justify="right")
    for o in objectives:
        table.add_column(f"{o} ± s.e." if model else f"{o} OOS", justify="right")
    if not model:
        table.add_column("trades", justify="right")
    for row in outcome.best:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in row["params"].items())
        second = row["fold_se"] if model else row["out_of_sample"]
        cells = [
            str(row["trial"]),
            params,
            *(_fmt(row["in_sample"].get(o)) for o in objectives),
            *(_fmt((second or {}).get(o)) for o in objectives),
        ]
        if not model:
            cells.append(str(row["n_trades"]))
        table.add_row(*cells)
    return table


def _walk_table(outcome: Any) -> Any:
    from rich.table import Table

    metric = outcome.objectives[0]
    if outcome.kind == "model":
        title = (
            f"nested walk-forward ({metric}): per fold, the trial best on the earlier "
            "folds, scored on this one"
        )
        first = "fold"
    else:
        title = f"walk-forward ({metric}): each window's in-sample best, scored out of sample"
        first = "window"
    wf = Table(title=title)
    show_params = outcome.kind != "model"  # a model trial's dozen knobs: see --json
    cols = (first, "trial", "params", "in-sample", "out-of-sample")
    for col in cols if show_params else tuple(c for c in cols if c != "params"):
        wf.add_column(col, justify="left" if col == "params" else "right")
    for w in outcome.walk_forward:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in w["params"].items())
        cells = [str(w["window"]), str(w["trial"]), params, _fmt(w["in_sample"]),
                 _fmt(w["out_of_sample"])]  # fmt: skip
        wf.add_row(*(cells if show_params else cells[:2] + cells[3:]))
    return wf


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
