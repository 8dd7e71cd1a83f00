"""``ultrathink features list|select``: the feature set, and removing what a model does not need."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from ultrathink.cli._registry import CliContext, Command, sub_parser

_REGISTRY_HELP = "model registry directory (default .ultrathink/models)"


def _descriptions() -> dict[str, str]:
    # one line per feature from the definition table in features/spec.py's docstring (the
    # one place the definitions are written); a family row "logret_{w} ... for w in 1, 5"
    # becomes "... (w = 5)" for logret_5
    from ultrathink.features import spec

    parts = (spec.__doc__ or "").split("\n=")  # the table sits between its 2nd and 3rd rules
    rows: list[list[str]] = []
    for line in (parts[2] if len(parts) > 2 else "").splitlines()[1:]:
        if line.startswith(" ") and rows:
            rows[-1][1] += " " + line.strip()
        elif re.match(r"^\S+\s{2,}\S", line):
            rows.append(line.split(None, 1))
    out: dict[str, str] = {}
    for family, text in rows:
        pattern = re.escape(family).replace(r"\{w\}", r"(\d+)")
        for name in spec.FEATURE_NAMES:
            match = re.fullmatch(pattern, name)
            if match and name not in out:
                desc = re.sub(r",? (for )?w in [\d, ]*\d", "", text.replace("``", ""))
                out[name] = f"{desc} (w = {match.group(1)})" if match.groups() else desc
    return out


def _handle_list(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink.features.spec import FEATURE_NAMES

    described = _descriptions()
    if args.json:
        print(json.dumps([{"name": n, "description": described.get(n, "")}
                          for n in FEATURE_NAMES], indent=1))  # fmt: skip
        return 0
    width = max(len(n) for n in FEATURE_NAMES)
    for name in FEATURE_NAMES:
        print(f"{name:<{width}}  {described.get(name, '')}".rstrip())
    return 0


def _handle_select(args: argparse.Namespace, context: CliContext) -> int:
    from pydantic import ValidationError

    from ultrathink.errors import ConfigError
    from ultrathink.optimization.selection import SelectionConfig
    from ultrathink.optimization.selection_run import SelectRequest, run_selection

    try:
        config = SelectionConfig(
            method=args.method, scoring=args.scoring, n_repeats=args.n_repeats,
            seed=args.seed, min_t=args.min_t, max_cluster_distance=args.cluster_distance,
            max_loss_se=args.max_loss_se,
        )  # fmt: skip
    except ValidationError as exc:
        err = exc.errors()[0]
        option = "--" + str(err["loc"][0]).replace("_", "-")
        option = {"--max-cluster-distance": "--cluster-distance"}.get(option, option)
        raise ConfigError(f"{option}: {err['msg'].lower()}, was {err.get('input')!r}") from None
    request = SelectRequest(
        version=args.version, registry=args.registry, data=args.data, start=args.start,
        end=args.end, symbol=args.symbol, config=config, register=not args.no_register,
    )  # fmt: skip
    outcome = run_selection(request)
    if args.json:
        print(json.dumps(outcome.to_dict(), indent=1, default=float))
    else:
        _print_outcome(outcome)
    return 0


def _pm(mean: float, se: float, digits: int = 4) -> str:
    return f"{mean:+.{digits}f} ± {se:.{digits}f}"


def _importance_table(sel: Any) -> Any:
    from rich.table import Table

    cfg = sel.config
    table = Table(
        title=f"out-of-sample importance: mean decrease in {cfg.scoring} over "
        f"{len(sel.before)} purged folds × {cfg.n_repeats} shuffles, ± fold s.e."
    )
    for col in ("cluster", "feature", "alone", "cluster (shuffled together)", "kept"):
        table.add_column(col, justify="left" if col in ("cluster", "feature") else "right")
    by_name = {imp.label: imp for imp in sel.features}
    for cluster in sorted(sel.clusters, key=lambda c: -c.mean):
        for i, name in enumerate(cluster.members):
            imp = by_name[name]
            table.add_row(
                cluster.label if i == 0 else "",
                name,
                _pm(imp.mean, imp.se),
                _pm(cluster.mean, cluster.se) if i == 0 else "",
                "kept" if name in sel.kept else "[dim]dropped[/]",
            )
        table.add_section()
    return table


def _steps_table(sel: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"sequential elimination (loss in {sel.config.scoring}, all folds refit)")
    for col in ("step", "dropped", "features left", "loss", "accepted"):
        table.add_column(col, justify="right")
    for k, step in enumerate(sel.steps, start=1):
        table.add_row(str(k), step["drop"], str(step["n_features"]), f"{step['loss']:+.4f}",
                      "no: stop" if step["stopped"] else "yes")  # fmt: skip
    return table


def _before_after_table(outcome: Any) -> Any:
    from rich.table import Table

    sel, lat = outcome.selection, outcome.latency_us
    new = outcome.version or "not registered"
    table = Table(title=f"before ({outcome.parent}) and after ({new}): same folds and rows, "
                  "mean ± fold s.e.")  # fmt: skip
    for col in ("", "before", "after"):
        table.add_column(col, justify="right")
    table.add_row("features", str(len(sel.names)), str(len(sel.kept)))
    for metric, label in (("auc", "AUC"), ("log_loss", "log loss"), ("accuracy", "accuracy")):
        s = sel.summary(metric)
        table.add_row(label, f"{s['before']:.4f} ± {s['before_se']:.4f}",
                      f"{s['after']:.4f} ± {s['after_se']:.4f}")  # fmt: skip
    for key, label in (("p50_us", "single-row p50 µs"), ("p99_us", "single-row p99 µs")):
        table.add_row(label, f"{lat['before'][key]:.2f}", f"{lat['after'][key]:.2f}")
    return table


def _print_outcome(outcome: Any) -> None:
    from rich.console import Console

    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)
    sel = outcome.selection
    cfg = sel.config
    console.print(_importance_table(sel))
    if sel.steps:
        console.print(_steps_table(sel))
    if sel.fallback:
        console.print(
            f"[bold yellow]note:[/] no {'cluster' if cfg.method == 'clustered' else 'feature'}"
            f"'s importance is positive beyond {cfg.min_t:g} fold s.e.: this model shows no "
            "out-of-sample signal; the best-ranked feature is kept so a model can be registered"
        )
    console.print(_before_after_table(outcome))
    held = "held" if sel.target_met else "NOT held"
    console.print(
        f"target (≥ {cfg.target_reduction_pct:g} % fewer features, {cfg.scoring} loss ≤ "
        f"{cfg.max_loss_se:g} fold s.e.): {held} — {sel.reduction_pct:.0f} % fewer, loss "
        f"{sel.loss:+.4f} = {sel.loss_se:+.2f} s.e. (negative: better after)"
    )
    console.print(
        "latency is model inference only (CompiledEnsemble.predict_row); the ml strategy "
        "computes all 28 features anyway. The kept features were chosen on these folds, so "
        "'after' is mildly optimistic; the new version's own report is the independent check."
    )
    if outcome.version:
        own = outcome.registered
        figures = ", ".join(
            f"{label} {own[m]['mean']:.4f} ± {own[m]['se']:.4f}"
            for m, label in (("auc", "AUC"), ("log_loss", "log loss"), ("accuracy", "accuracy"))
        )
        n = len(sel.kept)
        console.print(
            f"registered {outcome.version} on {n} feature{'s' if n > 1 else ''} (lineage: "
            f"select from {outcome.parent}); its own walk-forward on {own['n_rows']:,} rows: "
            f"{figures}; not promoted (`ultrathink models promote {outcome.version}`); report: "
            f"{outcome.report}"
        )
    console.print(f"done in {outcome.seconds:.1f} s")


def _configure_select(sub: Any) -> None:
    s = sub_parser(
        sub,
        "select",
        "drop the features a model does not need (out-of-sample permutation importance)",
        (
            "ultrathink features select v0001",
            "ultrathink features select v0001 --method sequential --scoring logloss",
            "ultrathink features select v0003 --no-register --json",
        ),
        description="Measure each feature's out-of-sample permutation importance (mean "
        "decrease in accuracy, MDA) on the version's purged walk-forward folds, and that of "
        "each cluster of correlated features shuffled together, so a feature is not dropped "
        "only because its twin carries the signal. Register a version trained on the kept "
        "features (not promoted) and report the out-of-sample metrics and the single-row "
        "inference latency before and after.",
    )
    s.add_argument("version", metavar="VERSION", help="the model version (or 'production')")
    s.add_argument("--registry", help=_REGISTRY_HELP)
    g = s.add_argument_group("data (only when the version recorded no source)")
    g.add_argument("--data", help="sp500 | nasdaq | PATH | synthetic:... as it was trained")
    g.add_argument("--start", help="first date of the training data")
    g.add_argument("--end", help="last date of the training data (inclusive)")
    g.add_argument("--symbol", help="symbol it was trained on")
    g = s.add_argument_group("selection")
    g.add_argument(
        "--method",
        default="clustered",
        choices=("clustered", "mda", "sequential"),
        help="clustered MDA (default), plain MDA, or sequential elimination "
        "(refits every fold per dropped feature: slow)",
    )
    g.add_argument(
        "--scoring",
        default="accuracy",
        choices=("accuracy", "logloss"),
        help="score whose mean decrease is the importance (default accuracy)",
    )
    g.add_argument(
        "--n-repeats",
        type=int,
        default=10,
        metavar="N",
        help="shuffles per feature and fold (default 10)",
    )
    g.add_argument("--seed", type=int, default=0, metavar="N", help="shuffle seed (default 0)")
    g.add_argument(
        "--min-t",
        type=float,
        default=2.0,
        metavar="T",
        help="keep when the mean importance exceeds T fold s.e. (default 2)",
    )
    g.add_argument(
        "--cluster-distance",
        type=float,
        default=0.5,
        metavar="D",
        help="cluster features while average 1-|Spearman rho| <= D (default 0.5)",
    )
    g.add_argument(
        "--max-loss-se",
        type=float,
        default=1.0,
        metavar="K",
        help="allowed loss in fold s.e. (the target; sequential's stop) (default 1)",
    )
    g = s.add_argument_group("output")
    g.add_argument("--no-register", action="store_true", help="report only; register nothing")
    g.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_handle_select)


def _configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="features_cmd", required=True, metavar="ACTION")
    listing = sub_parser(
        sub, "list", "the 28 feature names with their definitions", ("ultrathink features list",)
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=_handle_list)
    _configure_select(sub)


COMMAND = Command(
    name="features",
    order=55,
    help="the 28 features; select the ones a model needs",
    description="List the features the models use, and remove the ones a registered model "
    "does not need (clustered permutation importance on its purged walk-forward folds).",
    examples=("ultrathink features list", "ultrathink features select v0001"),
    configure=_configure,
)
