"""``ultrathink train``: the ensemble with a purged walk-forward, into the registry."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ultrathink.cli._registry import CliContext, Command


def print_training(result: Any, paths: tuple[Path, Path], out: Any = None) -> None:
    """The walk-forward table and where the model and its report went."""
    from ultrathink.cli._output import print_walk_forward

    out = out or sys.stdout
    print_walk_forward(result, file=out)
    print(
        f"registered model {result.version} ({result.n_rows:,} rows, {result.seconds:.1f} s); "
        f"report: {paths[0]}",
        file=out,
    )


def _cmd_train(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink import services

    data = services.slice_data(services.load(args.data), args.start, args.end)
    if args.symbol:
        data = data.for_symbol(args.symbol)
    config: dict[str, Any] = {
        "horizon": args.horizon,
        "dead_zone_bps": args.dead_zone_bps,
        "n_folds": args.folds,
        "embargo": args.embargo,
        "model_params": _typed(services.parse_params(args.param)),
    }
    if args.features and args.features != "all":
        config["features"] = tuple(f.strip() for f in args.features.split(","))
    if args.members:
        config["members"] = tuple(m.strip() for m in args.members.split(","))
    registry = services.registry_root(args.registry)
    source = {"data": args.data, "start": args.start, "end": args.end, "symbol": args.symbol}
    result, paths = services.train_model(data, config, registry, source=source)
    if args.promote:
        services.model_registry(registry).promote(result.version)
    if args.json:
        out = {
            "version": result.version,
            "report": result.report.to_dict(),
            "seconds": result.seconds,
            "html": str(paths[0]),
            "markdown": str(paths[1]),
        }
        print(json.dumps(out, indent=1, default=str))
    else:
        print_training(result, paths)
    return 0


def _typed(params: dict[str, str]) -> dict[str, Any]:
    # ensemble parameters from --param: JSON numbers/booleans where they parse, else text
    out: dict[str, Any] = {}
    for key, text in params.items():
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="sp500", help="sp500 | nasdaq | PATH | synthetic:...")
    p.add_argument("--symbol", help="symbol to train on when the data has several")
    p.add_argument("--start", help="first date of the training data")
    p.add_argument("--end", help="last date of the training data (inclusive)")
    p.add_argument("--horizon", type=int, default=5, help="label horizon in bars")
    p.add_argument("--dead-zone-bps", type=float, default=0.0, help="unlabelled |return| band")
    p.add_argument("--folds", type=int, default=5, help="walk-forward folds")
    p.add_argument("--embargo", type=int, default=0, help="rows embargoed after each test fold")
    p.add_argument("--features", default="all", help="'all' or a comma-separated subset")
    p.add_argument("--members", help="voting members, e.g. gbm,forest,linear (default: all)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="ensemble parameter, repeatable (e.g. --param gbm_n_estimators=300)",
    )
    p.add_argument("--registry", help="model registry directory (default .ultrathink/models)")
    p.add_argument("--promote", action="store_true", help="promote the new version")
    p.add_argument("--json", action="store_true", help="machine-readable output")


COMMAND = Command(
    name="train",
    order=40,
    help="train the ensemble with purged walk-forward validation",
    description="Build the 28 features and forward-return labels, evaluate the ensemble "
    "(LightGBM, ExtraTrees, logistic regression; soft vote) with a purged walk-forward, so "
    "every figure is out of sample, then register it with a SHA-256 manifest and a report.",
    examples=(
        "ultrathink train --end 2012-12-31",
        "ultrathink train --data nasdaq --members gbm,linear --param gbm_n_estimators=300",
    ),
    configure=_configure,
    handler=_cmd_train,
)
