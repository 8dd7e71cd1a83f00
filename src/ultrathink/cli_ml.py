"""``ultrathink train``, ``ultrathink models`` and the main job ``ultrathink run``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: The main job trains on 1999-2012 and trades 2013-2018 out of sample.
RUN_TRAIN_END, RUN_TRADE_START = "2012-12-31", "2013-01-01"


def cmd_run(args: argparse.Namespace) -> int:
    """The main job: the ML ensemble on the embedded S&P 500, trained if none exists."""
    from ultrathink import services

    registry = services.registry_root(args.registry, args.db)
    if services.model_registry(registry).latest() is None:
        out = sys.stderr if args.json else sys.stdout  # --json keeps stdout for the summary
        print(
            f"no model in {registry}: training the default ensemble on sp500 "
            f"1999-01-04..{RUN_TRAIN_END} (purged walk-forward report first)",
            file=out,
        )
        data = services.slice_data(services.load("sp500"), None, RUN_TRAIN_END)
        result, paths = services.train_model(data, {}, registry)
        services.model_registry(registry).promote(result.version)
        _print_training(result, paths, out)
    # trade after the training period; by its end the model is up to 6 years old
    args.strategy, args.data, args.model = "ml", "sp500", None
    args.param = ["max_model_age_days=2300"]
    for name in _RUN_FIXED_OPTIONS:
        setattr(args, name, None)
    args.start, args.all_in, args.no_store = RUN_TRADE_START, True, False
    if args.report is None:
        args.report = str(services.resolve_db(args.db).parent / "reports" / "run.html")
    from ultrathink.cli import run_command  # the shared backtest/paper/run path

    return run_command(args, mode="run")


_RUN_FIXED_OPTIONS = (
    "end", "cash", "quantity", "commission_bps", "fee_per_order", "slippage_bps", "latency_ms",
    "max_volume_pct", "max_drawdown_pct", "max_daily_loss_pct", "max_position_qty",
    "max_order_notional", "config",
)  # fmt: skip


def _print_training(result: Any, paths: tuple[Path, Path], out: Any = None) -> None:
    from ultrathink.cli_output import print_walk_forward

    out = out or sys.stdout
    print_walk_forward(result, file=out)
    print(
        f"registered model {result.version} ({result.n_rows:,} rows, {result.seconds:.1f} s); "
        f"report: {paths[0]}",
        file=out,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from ultrathink import services

    data = services.slice_data(services.load(args.data), args.start, args.end)
    if args.symbol:
        data = data.for_symbol(args.symbol)
    config: dict[str, Any] = {
        "horizon": args.horizon, "dead_zone_bps": args.dead_zone_bps, "n_folds": args.folds,
        "embargo": args.embargo, "model_params": _typed(services.parse_params(args.param)),
    }  # fmt: skip
    if args.features and args.features != "all":
        config["features"] = tuple(f.strip() for f in args.features.split(","))
    if args.members:
        config["members"] = tuple(m.strip() for m in args.members.split(","))
    registry = services.registry_root(args.registry)
    result, paths = services.train_model(data, config, registry)
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
        _print_training(result, paths)
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


def _cmd_models(args: argparse.Namespace) -> int:
    from ultrathink import services
    from ultrathink.cli_output import print_model, print_models

    reg = services.model_registry(services.registry_root(args.registry))
    if args.models_cmd == "show":
        print_model(reg.verify(args.version), as_json=args.json)  # every file's hash checked
    elif args.models_cmd == "promote":
        reg.promote(args.version)
        print(f"promoted {args.version}; production is now {reg.production()}")
    elif args.models_cmd == "rollback":
        print(f"rolled back; production is now {reg.rollback()}")
    else:
        print_models(reg.list(), reg.production(), as_json=args.json)
    return 0


def add_train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train the ensemble with purged walk-forward validation")
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
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="ensemble parameter, repeatable (e.g. --param gbm_n_estimators=300)",
    )  # fmt: skip
    p.add_argument("--registry", help="model registry directory (default .ultrathink/models)")
    p.add_argument("--promote", action="store_true", help="promote the new version")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_train)


_REGISTRY_HELP = "model registry directory (default .ultrathink/models)"


def add_models_parser(sub: Any) -> None:
    p = sub.add_parser("models", help="the model registry: list, show, promote, rollback")
    add_group_flags(p, "--registry", _REGISTRY_HELP)
    msub = p.add_subparsers(dest="models_cmd", metavar="ACTION")
    leaves = [msub.add_parser("list", help="every version (default)")]
    show = msub.add_parser("show", help="one version's metadata and metrics")
    show.add_argument("version")
    promote = msub.add_parser("promote", help="make a version the production model")
    promote.add_argument("version")
    leaves += [show, promote, msub.add_parser("rollback", help="back to the previous production")]
    for leaf in leaves:
        add_group_flags(leaf, "--registry", _REGISTRY_HELP)
    p.set_defaults(func=_cmd_models, models_cmd="list", registry=None, json=False)


def add_group_flags(p: argparse.ArgumentParser, path_flag: str, path_help: str) -> None:
    """Add ``path_flag`` and ``--json`` so they work on a command group or on its action.

    ``models --json show v1`` and ``models show v1 --json`` (likewise ``runs``) both work:
    SUPPRESS keeps an action's parser from overwriting what the group already parsed.
    """
    p.add_argument(path_flag, default=argparse.SUPPRESS, help=path_help)
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")
